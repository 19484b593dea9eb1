//! Vectors as the extension stores them, without PostgreSQL or libtorch: the text form
//! (`text`) and the distance kernels for f32 and f16 (`kernels`).

pub mod kernels;
pub mod text;
