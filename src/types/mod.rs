//! Vector types: `embedding` (f32) and `halfembedding` (f16), their I/O, casts, operators and
//! the SIMD distance kernels they share.

pub mod bits;
pub mod datum;
pub mod embedding;
pub mod error;
pub mod halfembedding;
pub mod kernels;
pub mod ops;
pub mod text;
