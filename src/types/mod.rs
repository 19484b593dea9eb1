//! Vector types: `embedding` (f32) and `halfembedding` (f16), their I/O, casts and operators,
//! over `vs_vector`'s text form and kernels.

pub mod bits;
pub mod datum;
pub mod embedding;
pub mod halfembedding;
pub mod ops;
