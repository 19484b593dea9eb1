//! Transactions of a background worker (the auto-embed drainer, the service's supervisor): a
//! closure run in a transaction of its own and committed, or rolled back with the error it raised
//! handed back, so that one bad table or row does not end the worker.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgSqlErrorCode;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;

/// What a rolled-back transaction raised.
#[derive(Debug, Clone)]
pub struct Failed {
    pub code: PgSqlErrorCode,
    pub message: String,
}

impl Failed {
    /// The code and message of a caught ERROR or panic.
    pub fn of(e: &CaughtError) -> Failed {
        let r = match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => r,
        };
        Failed { code: r.sql_error_code(), message: r.message().to_string() }
    }
}

/// Runs `f` in a new transaction (now() and statement_timestamp() are the time of the call) and
/// commits it; on an ERROR (commit's own included) the transaction is aborted and the error
/// returned. Must not be called inside a transaction. What `f` changed before it raised is the
/// caller's to judge (the drainer records the rows' outcome as it goes).
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, Failed> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    PgTryBuilder::new(AssertUnwindSafe(move || {
        let r = f();
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(r)
    }))
    .catch_others(|e| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(Failed::of(&e))
    })
    .execute()
}
