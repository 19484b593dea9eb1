//! The SQL functions of auto-embedding in the background (`enable_auto_embed(..., mode =>
//! 'async')`): registering a table and queueing its rows that have no vector yet, removing it with
//! its queue, re-queueing failed rows, waiting until a table's queue is empty, and asking for the
//! database's drainer.
//!
//! Ordinary roles may neither read nor write the extension's tables. These functions are the way
//! in: each checks what the caller may do (own the table, read it), then works on the tables as
//! the bootstrap superuser, as a SECURITY DEFINER function would, except that it knows who called
//! (a SECURITY DEFINER function sees only its owner).

use super::drain_start;
use crate::glue::error::error;
use pgrx::datum::{DatumWithOid, Interval};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode::*;
use std::panic::UnwindSafe;
use std::time::{Duration, Instant};

fn caller() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

fn table_name(tbl: pg_sys::Oid) -> String {
    // regclass's text: schema-qualified under the pinned search_path, quoted as needed.
    Spi::get_one_with_args::<String>("SELECT $1::regclass::text", &[tbl.into()]).ok().flatten().unwrap_or_else(|| tbl.to_u32().to_string())
}

fn must_own(tbl: pg_sys::Oid) {
    if !unsafe { pg_sys::pg_class_ownercheck(tbl, caller()) } {
        error(ERRCODE_INSUFFICIENT_PRIVILEGE, format!("must be owner of table {}", table_name(tbl)));
    }
}

/// Runs `f` as the bootstrap superuser; the caller's identity is back afterwards, and on an
/// ERROR the transaction's abort restores it as it does for SECURITY DEFINER.
fn as_superuser<R>(f: impl FnOnce() -> R + UnwindSafe) -> R {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0i32);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID), context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    PgTryBuilder::new(f).finally(move || unsafe { pg_sys::SetUserIdAndSecContext(user, context) }).execute()
}

fn required<T>(value: Option<T>, what: &str) -> T {
    value.unwrap_or_else(|| error(ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{what} must not be NULL")))
}

/// Asks for the drainer of this database once the transaction commits.
#[pg_extern(sql = false)]
fn ensure_drainer() {
    drain_start::at_commit();
}

/// Sets up (or updates) `tbl`'s entry in auto_embed_tables, with the caller as the role the
/// drainer writes as, and queues the rows that have an image and no vector. Returns the rows
/// queued. Only the table's owner may.
#[pg_extern(sql = false)]
fn auto_embed_register(
    tbl: Option<pg_sys::Oid>,
    embedding_col: Option<&str>,
    image_col: Option<&str>,
    model: Option<&str>,
    key_cols: Option<Vec<String>>,
) -> i64 {
    let tbl = required(tbl, "tbl");
    let (embedding_col, image_col) = (required(embedding_col, "embedding_col").to_string(), required(image_col, "image_col").to_string());
    let key_cols = required(key_cols, "key_cols");
    if key_cols.is_empty() {
        error(ERRCODE_INVALID_PARAMETER_VALUE, "key_cols must name the primary key's columns");
    }
    must_own(tbl);
    // The model is fixed now: a later change of default_model does not change what the
    // table's vectors mean.
    let model = model.map(str::to_string).unwrap_or_else(|| crate::guc::string(&crate::guc::DEFAULT_MODEL, "fashion-vgg16"));
    let owner = caller();
    let name = table_name(tbl);
    let from = name.clone();
    let queued = as_superuser(move || {
        Spi::connect_mut(|c| {
            c.update(
                "INSERT INTO visual_search.auto_embed_tables (tbl, embedding_col, image_col, model, key_cols, owner)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tbl, embedding_col) DO UPDATE
                 SET image_col = excluded.image_col, model = excluded.model, key_cols = excluded.key_cols, owner = excluded.owner",
                None,
                &[tbl.into(), embedding_col.as_str().into(), image_col.as_str().into(), model.as_str().into(), key_cols.clone().into(), unsafe {
                    DatumWithOid::new(owner, pg_sys::REGROLEOID)
                }],
            )?;
            // Reading the table as superuser runs no code of its owner: no policies, no
            // triggers, only the key columns' output functions (built in: base types are
            // created by superusers).
            let key = key_cols.iter().map(|k| format!("t.{}::text", quote_identifier(k))).collect::<Vec<_>>().join(", ");
            let q = format!(
                "INSERT INTO visual_search.embedding_queue (tbl, embedding_col, key)
                 SELECT $1, $2, ARRAY[{key}] FROM {from} t WHERE t.{emb} IS NULL AND t.{img} IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM visual_search.embedding_queue q
                                 WHERE q.tbl = $1 AND q.embedding_col = $2 AND q.key = ARRAY[{key}] AND q.failed_at IS NULL)",
                emb = quote_identifier(&embedding_col),
                img = quote_identifier(&image_col),
            );
            let r = c.update(q.as_str(), None, &[tbl.into(), embedding_col.as_str().into()])?;
            Ok::<_, pgrx::spi::Error>(r.len() as i64)
        })
    })
    .unwrap_or_else(|e| error(ERRCODE_INTERNAL_ERROR, format!("could not register {name} for auto-embedding: {e}")));
    drain_start::at_commit();
    queued
}

/// Removes `tbl`'s set-up with its queue; returns the rows that were still waiting (their
/// embedding stays as it is). Nothing to remove: 0, whoever asks.
#[pg_extern(sql = false)]
fn auto_embed_unregister(tbl: pg_sys::Oid, embedding_col: &str) -> i64 {
    let col = embedding_col.to_string();
    let registered = as_superuser(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM visual_search.auto_embed_tables WHERE tbl = $1 AND embedding_col = $2)",
            &[tbl.into(), col.as_str().into()],
        )
    });
    if !matches!(registered, Ok(Some(true))) {
        return 0;
    }
    must_own(tbl);
    as_superuser(move || {
        Spi::connect_mut(|c| {
            let args = [tbl.into(), col.as_str().into()];
            // The row lock on the set-up waits for a drainer's write of this table to commit,
            // and makes the next one skip it: nothing is written after this commits.
            c.update("DELETE FROM visual_search.auto_embed_tables WHERE tbl = $1 AND embedding_col = $2", None, &args)?;
            c.update("DELETE FROM visual_search.embedding_log WHERE tbl = $1 AND embedding_col = $2", None, &args)?;
            let r = c.update(
                "WITH gone AS (DELETE FROM visual_search.embedding_queue WHERE tbl = $1 AND embedding_col = $2 RETURNING failed_at)
                 SELECT count(*) FILTER (WHERE failed_at IS NULL) FROM gone",
                None,
                &args,
            )?;
            r.first().get_one::<i64>().map(Option::unwrap_or_default)
        })
    })
    .unwrap_or_else(|e| error(ERRCODE_INTERNAL_ERROR, format!("could not remove the auto-embedding set-up: {e}")))
}

/// Queues the failed rows of `tbl` again (all tables the caller owns when NULL); returns how many.
#[pg_extern(sql = false)]
fn retry_failed(tbl: Option<pg_sys::Oid>) -> i64 {
    if let Some(t) = tbl {
        must_own(t);
    }
    let who = caller();
    let n = as_superuser(move || {
        Spi::connect_mut(|c| {
            let r = c.update(
                "UPDATE visual_search.embedding_queue q
                 SET failed_at = NULL, sqlstate = NULL, message = NULL, claimed_by = NULL, claimed_at = NULL
                 WHERE q.failed_at IS NOT NULL AND CASE WHEN $1::oid IS NULL
                       THEN pg_has_role($2, (SELECT relowner FROM pg_class WHERE oid = q.tbl), 'USAGE')
                       ELSE q.tbl = $1::oid END",
                None,
                &[tbl.into(), unsafe { DatumWithOid::new(who, pg_sys::OIDOID) }],
            )?;
            Ok::<_, pgrx::spi::Error>(r.len() as i64)
        })
    })
    .unwrap_or_else(|e| error(ERRCODE_INTERNAL_ERROR, format!("could not queue the failed rows again: {e}")));
    if n > 0 {
        drain_start::at_commit();
    }
    n
}

/// Rows of `tbl` queued or being embedded, as the caller's view shows them.
fn outstanding(tbl: pg_sys::Oid) -> i64 {
    Spi::connect_mut(|c| {
        // update(), not select(): a statement of its own takes a new snapshot, and sees the
        // drainer's commits.
        let r = c.update("SELECT coalesce(sum(pending + in_progress), 0)::bigint FROM visual_search.embedding_queues WHERE tbl = $1", None, &[tbl.into()])?;
        r.first().get_one::<i64>().map(Option::unwrap_or_default)
    })
    .unwrap_or_else(|e| error(ERRCODE_INTERNAL_ERROR, format!("could not read the queue: {e}")))
}

/// Waits until nothing of `tbl` is queued or being embedded: true, or false once `timeout`
/// passed. Failed rows do not count. Interruptible: a cancel or statement_timeout ends it.
#[pg_extern(sql = false)]
fn wait_for_embeddings(tbl: pg_sys::Oid, timeout: Interval) -> bool {
    if unsafe { pg_sys::pg_class_aclcheck(tbl, caller(), pg_sys::ACL_SELECT as pg_sys::AclMode) } != pg_sys::AclResult::ACLCHECK_OK {
        error(ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied for table {}", table_name(tbl)));
    }
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        ErrorReport::new(
            ERRCODE_INVALID_TRANSACTION_STATE,
            "wait_for_embeddings needs READ COMMITTED: under one snapshot the drainer's work never shows",
            "visual_search",
        )
        .set_hint("Call it outside a REPEATABLE READ or SERIALIZABLE transaction.")
        .report(PgLogLevel::ERROR);
    }
    if drain_start::queued_in_this_transaction() {
        ErrorReport::new(
            ERRCODE_INVALID_TRANSACTION_STATE,
            "this transaction queued rows itself: the drainer sees them only after it commits",
            "visual_search",
        )
        .set_hint("COMMIT first, then call wait_for_embeddings.")
        .report(PgLogLevel::ERROR);
    }
    let limit = Duration::from_micros(timeout.as_micros().clamp(0, u64::MAX as i128) as u64);
    let begin = Instant::now();
    let mut asked = None::<Instant>;
    loop {
        if outstanding(tbl) == 0 {
            return true;
        }
        if begin.elapsed() >= limit {
            return false;
        }
        // Now, not at commit: the entries are others' and committed. Again now and then, in
        // case the drainer ended (killed, or a crash) while the queue was not empty.
        if asked.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            drain_start::ensure(unsafe { pg_sys::MyDatabaseId }, &drain_start::database_name());
            asked = Some(Instant::now());
        }
        let ms = (limit.saturating_sub(begin.elapsed())).min(Duration::from_millis(50)).as_millis().max(1) as i64;
        unsafe {
            pg_sys::WaitLatch(pg_sys::MyLatch, (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32, ms, pg_sys::PG_WAIT_EXTENSION);
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pg_sys::check_for_interrupts!();
    }
}
