//! Starting the auto-embed drainers: one dynamic background worker per database, which holds
//! (flock) `pg_visual_search/drain.<dboid>.lock` while it runs. Trying that lock is all a
//! writer pays: microseconds, no shared memory, so nothing needs the library preloaded.
//!
//! A writer asks once its transaction has committed, not while it runs: its queue entries are
//! invisible before, and a drainer that has just found the queue empty may be on its way out.
//! The drainer leaves by releasing its lock and then looking at the queue once more, so either
//! it sees the writer's entries or the writer, committing before, finds the lock free and
//! starts another one.

use super::DIR;
use crate::glue::xact;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;

/// The drainers' backend_type in pg_stat_activity; their name adds the database's.
pub const TYPE: &str = "visual_search auto-embed";

fn lock_path(db: pg_sys::Oid) -> String {
    format!("{DIR}/drain.{}.lock", db.to_u32())
}

/// The database of a lock file's name.
fn database_of(file_name: &str) -> Option<pg_sys::Oid> {
    let oid = file_name.strip_prefix("drain.")?.strip_suffix(".lock")?.parse::<u32>().ok()?;
    Some(pg_sys::Oid::from(oid))
}

/// The drainer's lock on `db`, or None while another process holds it.
pub fn lock(db: pg_sys::Oid) -> Option<File> {
    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(DIR).ok()?;
    let f = File::options().create(true).truncate(false).write(true).open(lock_path(db)).ok()?;
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}

/// True when no drainer of `db` runs. Probing holds the lock for an instant, so a drainer
/// starting at that moment may give up: the caller then starts one itself.
fn nobody_drains(db: pg_sys::Oid) -> bool {
    match File::options().write(true).open(lock_path(db)) {
        Ok(f) => unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 },
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Registers a drainer for `db`; false when no background worker slot is free. Raises nothing
/// (it runs after commit, where an ERROR would be a PANIC).
fn register(db: pg_sys::Oid, dbname: &str) -> bool {
    // bgw_name holds 96 bytes with its terminating zero.
    let mut name = format!("{TYPE} {dbname}");
    while name.len() > 95 {
        name.pop();
    }
    BackgroundWorkerBuilder::new(&name)
        .set_type(TYPE)
        .set_library("visual_search")
        .set_function("visual_search_drain_main")
        .enable_spi_access()
        // It writes: a standby's drainers would wait for promotion in a worker slot.
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_argument(Some(pg_sys::Datum::from(db.to_u32() as usize)))
        .load_dynamic()
        .is_ok()
}

/// Starts the drainer of `db` unless one runs; false when none runs and none could be started.
pub fn ensure(db: pg_sys::Oid, dbname: &str) -> bool {
    !nobody_drains(db) || register(db, dbname)
}

thread_local! {
    static AT_COMMIT: Cell<bool> = const { Cell::new(false) };
    static HOOKED: Cell<bool> = const { Cell::new(false) };
    static DBNAME: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// This backend's database name, read once (inside a transaction: catalog access).
pub fn database_name() -> String {
    if let Some(n) = DBNAME.with(|d| d.borrow().clone()) {
        return n;
    }
    let n = unsafe {
        let p = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    DBNAME.with(|d| *d.borrow_mut() = Some(n.clone()));
    n
}

/// Starts this database's drainer once the current transaction commits (nothing on abort).
pub fn at_commit() {
    database_name();
    if !HOOKED.with(Cell::get) {
        unsafe { pg_sys::RegisterXactCallback(Some(after_transaction), std::ptr::null_mut()) };
        HOOKED.with(|h| h.set(true));
    }
    AT_COMMIT.with(|a| a.set(true));
}

/// True once this transaction queued rows (they are invisible to the drainer until it commits).
pub fn queued_in_this_transaction() -> bool {
    AT_COMMIT.with(Cell::get)
}

unsafe extern "C-unwind" fn after_transaction(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    // After the commit record nothing may raise or unwind into PostgreSQL: probing is libc,
    // registering takes a lightweight lock, and a panic is dropped here.
    let _ = std::panic::catch_unwind(|| match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT if AT_COMMIT.with(|a| a.replace(false)) => {
            let name = DBNAME.with(|d| d.borrow().clone()).unwrap_or_default();
            let db = unsafe { pg_sys::MyDatabaseId };
            if !ensure(db, &name) {
                // No worker slot: the entries wait for the next commit that finds one.
                pgrx::log!("visual_search: could not start the auto-embed drainer: no background worker slot is free");
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => AT_COMMIT.with(|a| a.set(false)),
        _ => {}
    });
}

/// At server start (from the service's supervisor): a drainer for every database that has a
/// lock file, so that what a crash left queued is drained without waiting for a writer. A lock
/// file of a database that is gone is removed.
pub fn start_recorded() {
    let Ok(dir) = std::fs::read_dir(DIR) else { return };
    for entry in dir.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(db) = database_of(&file) else { continue };
        let name = xact::run(|| unsafe {
            let p = pg_sys::get_database_name(db);
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        });
        match name {
            Ok(Some(name)) => {
                if !ensure(db, &name) {
                    pgrx::warning!("visual_search: could not start the auto-embed drainer of database \"{name}\": no background worker slot is free");
                }
            }
            Ok(None) => {
                let _ = std::fs::remove_file(entry.path());
            }
            Err(e) => pgrx::warning!("visual_search: could not look up database {}: {}", db.to_u32(), e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_file_names() {
        assert_eq!(super::database_of("drain.16384.lock").map(|o| o.to_u32()), Some(16384));
        assert_eq!(super::database_of("drain.x.lock"), None);
        assert_eq!(super::database_of("service.lock"), None);
    }
}
