//! image_embed and the model functions: `vs_embed` glued to SQL (`sql`), and libtorch's
//! threads in a backend (`torch`).

pub mod sql;
pub mod torch;
