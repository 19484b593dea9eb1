//! Vectors as the extension stores them, without PostgreSQL or libtorch: the text form
//! (`text`), the distance kernels for f32 and f16 (`kernels`) and `subvector`'s ranges (`slice`).

pub mod kernels;
pub mod slice;
pub mod text;
