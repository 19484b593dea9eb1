//! Starting the service on first use: a dynamic background worker, unless the library was
//! preloaded (then the postmaster started one with the server and restarts it).

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use vs_engine_api::abi::Status;

use crate::embed::engine::Failure;

/// Set in the postmaster by `_PG_init` under shared_preload_libraries; backends inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

const NAME: &str = "visual_search embedding service";

fn builder() -> BackgroundWorkerBuilder {
    BackgroundWorkerBuilder::new(NAME)
        .set_type(NAME)
        .set_library("visual_search")
        .set_function("visual_search_service_main")
        .enable_spi_access()
        // It reads no database; a standby's queries embed images too.
        .set_start_time(BgWorkerStartTime::ConsistentState)
}

/// Registers the worker with the postmaster when the library is preloaded (from `_PG_init`).
pub fn register_at_server_start() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        PRELOADED.store(true, Ordering::Relaxed);
        builder().set_restart_time(Some(Duration::from_secs(5))).load();
    }
}

/// True while a worker holds the service's lock: it is running, and asking for another would
/// only take a worker slot for a moment (many waiting backends could take them all).
fn worker_alive() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(super::LOCK) else { return false };
    // A shared lock conflicts with the worker's exclusive one; it is dropped with the file.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// Asks for a worker unless the postmaster keeps one or one runs. A second worker finds the
/// first one's lock and exits at once.
pub fn ensure() -> Result<(), Failure> {
    if PRELOADED.load(Ordering::Relaxed) || worker_alive() {
        return Ok(());
    }
    let worker = builder().set_restart_time(None);
    match worker.load_dynamic() {
        Ok(_) => Ok(()),
        Err(_) => Err(Failure {
            status: Status::ServiceUnavailable,
            image: None,
            message: "could not start the embedding service: no background worker slot is free (max_worker_processes)".into(),
        }),
    }
}

/// The worker's reason when it could not start the service process after `since`.
pub fn failed_since(since: SystemTime) -> Option<String> {
    let meta = std::fs::metadata(super::FAILED).ok()?;
    if meta.modified().ok()? < since {
        return None;
    }
    std::fs::read_to_string(super::FAILED).ok().filter(|s| !s.is_empty())
}
