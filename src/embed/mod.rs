//! Image → vector on libtorch. For now: the proof that libtorch runs inside a backend.

pub mod torch;
