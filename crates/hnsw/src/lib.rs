//! The HNSW graph (Malkov & Yashunin) that the vs_hnsw access method keeps on index pages,
//! free of PostgreSQL so that `cargo test -p vs_hnsw` checks it against brute force:
//! - `store`: the one storage trait the algorithm runs over (the build graph, its mirror, the
//!   pages), and the updates written once over it: a new node's lists, an added edge, a link;
//! - `beam`: the search over any storage that can be walked;
//! - `select`: the selection heuristic and the rule neighbour lists grow by;
//! - `repair`: the lists after deletes (VACUUM);
//! - `graph`: the in-memory graph a build fills, and its batch insert over threads or workers;
//! - `mirror`: the build graph copied into shared memory for parallel workers;
//! - `tuple`: the bytes of an element tuple and its neighbour lists;
//! - `metric`: the distances, and their codes on the meta page.

pub mod beam;
pub mod graph;
pub mod metric;
pub mod mirror;
pub mod repair;
pub mod select;
pub mod store;
pub mod tuple;
