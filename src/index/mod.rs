//! The vs_hnsw index access method, one file per phase as pgvector does, over a graph algorithm
//! that knows nothing of PostgreSQL (VectorChord's split):
//! - `graph`: HNSW in memory and the beam search over any storage (`Walk`), tested with
//!   `cargo test` against brute force; `tuple`: the element tuple's bytes, also pgrx-free.
//! - `page`: meta page, buffer locks, generic WAL; `search`: the graph walked on pages.
//! - `am`: handler, options, costs, opclass support; `build`, `insert`, `scan`, `vacuum`.
//! - `mirror`: the in-memory graph copied into shared memory (pgrx-free), and `parallel`: the
//!   build's batches run on PostgreSQL's parallel workers over it.

pub mod am;
pub mod build;
pub mod check;
pub mod graph;
pub mod insert;
pub mod mirror;
pub mod page;
pub mod parallel;
pub mod scan;
pub mod search;
pub mod tuple;
pub mod vacuum;
