//! The engine's thread pool for decoding images: `vs_pool`'s, which the main library links too,
//! each library keeping its own.

pub use vs_pool::pool;
