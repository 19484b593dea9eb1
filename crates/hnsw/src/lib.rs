//! The HNSW graph (Malkov & Yashunin) that the vs_hnsw access method keeps on index pages,
//! free of PostgreSQL so that `cargo test -p vs_hnsw` checks it against brute force:
//! - `graph`: the beam search over any storage (`Walk`), the selection heuristic, the repair
//!   after deletes over any storage (`Mend`), and the in-memory graph a build fills;
//! - `tuple`: the bytes of an element tuple and its neighbour lists;
//! - `mirror`: the build graph copied into shared memory for parallel workers.

pub mod graph;
pub mod mirror;
pub mod tuple;
