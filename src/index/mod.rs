//! The vs_hnsw index. For now the graph algorithm itself (`graph`), free of pgrx; the access
//! method (build / insert / scan / vacuum on pages and WAL) is to come on top of it.

pub mod graph;
