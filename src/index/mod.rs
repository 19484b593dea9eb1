//! The vs_hnsw index. Built so far: the graph algorithm (`graph`), free of pgrx and tested with
//! `cargo test` against brute force (insert, search, deletion, VACUUM-style repair).
//!
//! Still to come, on top of it (issue "vs_hnsw"), one file per phase as pgvector does:
//! - `am.rs`: the `IndexAmRoutine` (amcanorderbyop, amoptions for m / ef_construction, amcostestimate
//!   that wins only for `ORDER BY col <op> const LIMIT k` with the opclass's operator), opclasses
//!   `embedding_l2_ops`, `embedding_ip_ops`, `embedding_cosine_ops` and the halfembedding ones.
//! - pages (`page.rs`): a meta page (dims, m, ef_construction, metric, entry node and level, free
//!   list head); element tuples (heap TIDs, level, deleted flag, the vector); neighbour tuples
//!   (per layer, fixed capacity m or 2m, as item pointers to element tuples). Every change through
//!   GenericXLog in one critical section per page group, so crash recovery and replicas work.
//! - `build.rs`: `graph::Graph` in memory while it fits in maintenance_work_mem, then written out
//!   page by page; beyond that, on-disk inserts; parallel build through PostgreSQL's parallel
//!   workers sharing the graph in DSM; progress in pg_stat_progress_create_index.
//! - `insert.rs`: the graph insert on pages with buffer locks taken in a fixed order (element page,
//!   then neighbour pages by block number), entry-point updates under the meta page's lock.
//! - `scan.rs`: search with ef_search (GUC `vs_hnsw.ef_search`), then an iterative continuation
//!   while the executor asks for more rows (filters), bounded by a GUC.
//! - `vacuum.rs`: mark deleted from the heap TIDs callback, then `repair` the neighbours as
//!   `graph::Graph::repair` does, then free the elements' space.

pub mod graph;
