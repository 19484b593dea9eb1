//! RaBitQ (Gao & Long, SIGMOD 2024) for the quantized vs_hnsw index: a vector is kept as the
//! signs of its randomly rotated residual from a centroid, one bit per dimension, plus three
//! factors; a query's distance to it is estimated from the bits with an error bound that holds
//! with high probability whatever the data (the rotation is random). The index walks its graph
//! on the estimates and reranks candidates with their full vectors; nothing here knows
//! PostgreSQL, so `cargo test -p vs_rabitq` checks the bound against exact distances.
//! - `rotation`: the random orthogonal transform, fast enough for 65,535 dimensions;
//! - `code`: a vector's code, and the quantizer that makes codes and queries;
//! - `estimate`: a prepared query, and its distance estimates with their bounds.

pub mod code;
pub mod estimate;
pub mod rotation;
