//! The thread pool of a backend (vs_hnsw builds): `vs_pool`'s, which the engine library links
//! too, each library keeping its own.

pub use vs_pool::pool;
