//! image_embed and the model functions: the SQL functions (`sql`), the engine library that does
//! the work, opened on first use (`engine`), and libtorch's checks through it (`torch`).

pub mod engine;
pub mod sql;
pub mod torch;
