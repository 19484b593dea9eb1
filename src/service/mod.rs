//! The embedding service: one process per server that owns each model once, on the CPU or one
//! CUDA context, and batches the images of every connection into shared forward passes.
//!
//! A background worker of this library (`worker`) supervises the service process
//! (`visual_search_service`, crates/service), which opens the engine library and listens on a
//! Unix socket in the data directory. libtorch never runs in a process attached to shared
//! memory: when it aborts, or the process is killed, the waiting backends get an ERROR, the
//! worker starts another, and the postmaster restarts nothing. Backends talk to it through
//! `client`; the worker is registered at server start when the library is preloaded, else by
//! the first backend that needs it (`start`).
//!
//! Auto-embedding in the background uses it too: a drainer per database (`drain`, one batch at
//! a time in `batch`, started by `drain_start`) empties the queue that the triggers of
//! `enable_auto_embed(..., mode => 'async')` fill; `queue_sql` holds its SQL functions.

pub mod batch;
pub mod client;
pub mod drain;
pub mod drain_start;
pub mod queue_sql;
pub mod sql;
pub mod start;
pub mod worker;

/// The service's folder in the data directory (every server process runs there), and what is
/// in it: relative paths keep the socket's name under the 108 bytes a Unix socket may have.
pub const DIR: &str = "pg_visual_search";
pub const SOCKET: &str = "pg_visual_search/service.sock";
/// Held (flock) by the one worker that supervises the service.
pub const LOCK: &str = "pg_visual_search/service.lock";
/// Why the worker could not start the service process, for the backends waiting on it.
pub const FAILED: &str = "pg_visual_search/service.error";
