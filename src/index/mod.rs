//! The vs_hnsw index access method, one file per phase as pgvector does, over the graph
//! algorithm of `vs_hnsw` (crates/hnsw), which knows nothing of PostgreSQL:
//! - `am`: handler, costs, opclass support functions; `options`: m and ef_construction;
//!   `opclass`: metric and element type, decoded once.
//! - `codec`: a column value into the graph and back (normalise, encode, distances).
//! - `page`: meta page, buffer locks, generic WAL; `pages`: the graph's elements and lists on
//!   pages, and the walk a search takes over them.
//! - `quant`: a quantized index's quantizer (RaBitQ codes, `vs_rabitq`).
//! - `build`, `insert`, `scan`, `vacuum`: the phases; `parallel`: a build's batches on
//!   PostgreSQL's parallel workers, over `vs_hnsw::mirror`; `parallel_insert`: a quantized
//!   build's inserts on them; `check`: SQL functions that check
//!   an index.

pub mod am;
pub mod build;
pub mod check;
pub mod codec;
pub mod insert;
pub mod opclass;
pub mod options;
pub mod page;
pub mod pages;
pub mod parallel;
pub mod parallel_insert;
pub mod quant;
pub mod scan;
pub mod vacuum;
