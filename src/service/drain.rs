//! The auto-embed drainer of one database: a dynamic background worker ("visual_search auto-embed
//! <dbname>" in pg_stat_activity) that empties visual_search.embedding_queue through the embedding
//! service, one batch of the service at a time.
//!
//! A round claims up to `service_max_batch` entries in a short transaction of its own (oldest
//! first; FOR UPDATE SKIP LOCKED passes over what another drainer is claiming, and the claims of a
//! drainer that died are taken again), then for each table of the claim reads the rows' current
//! images by key (`batch`), embeds them outside any transaction (a bad image is recorded with its
//! SQLSTATE and the rest are embedded again) and writes the vectors in a second transaction
//! (`batch::write`). A crash anywhere loses nothing: entries go only in the transaction that
//! writes their vectors.

use super::batch::{self, Group, Outcome, VectorTypes};
use super::drain_start;
use crate::glue::xact;
use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::ffi::CString;
use std::fs::File;
use std::time::{Duration, Instant};
use vs_engine_api::abi::Status;

/// How often an idle drainer looks at the queue: the most a new row waits before its batch.
const POLL: Duration = Duration::from_millis(100);
/// An idle drainer ends after this long, freeing its worker slot and its database (DROP DATABASE
/// waits for no connection); the next commit that queues a row starts another (a few ms).
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// A claim is this many of the service's batches: its own SQL (a claim, a read and a write,
/// ≈ 6 ms a round here) then weighs half as much a row. With claims of one batch (64) the queue
/// drained at 0.80× embed_column's rate on fashion-vgg16 (1,561 against 1,940 rows/s).
const CLAIM_BATCHES: i64 = 2;
/// How long the log behind embedding_queues' rows/s is kept.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

fn wait(d: Duration) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            d.as_millis() as i64,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

/// What pg_stat_activity shows for this worker.
fn report(state: pg_sys::BackendState::Type, what: &str) {
    let c = CString::new(what).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(state, c.as_ptr()) };
}

/// The extension's types this worker needs, or None where it is not installed (at 0.4.0). The
/// search path stays pinned for the worker's life.
fn prepare() -> Option<VectorTypes> {
    Spi::run("SET search_path = pg_catalog, pg_temp").ok()?;
    let (elem, array) = Spi::get_two::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT t.oid, t.typarray FROM pg_extension e JOIN pg_type t ON t.typnamespace = e.extnamespace AND t.typname = 'embedding'
         WHERE e.extname = 'visual_search' AND to_regclass('visual_search.embedding_queue') IS NOT NULL",
    )
    .ok()?;
    Some(VectorTypes { elem: elem?, array: array? })
}

struct Drainer {
    /// `embedding` and its array, for the vectors a write passes as one array.
    types: VectorTypes,
    pruned: Instant,
    /// After a failure that is nobody's row (the service down, a lock held), when to try again.
    backoff: Option<Duration>,
}

impl Drainer {
    fn back_off(&mut self, start: Duration) {
        self.backoff = Some(self.backoff.map_or(start, |b| (b * 2).min(Duration::from_secs(30))));
    }

    /// One round: claim, then each table's rows. Returns the entries claimed.
    fn round(&mut self) -> usize {
        let prune = self.pruned.elapsed() >= PRUNE_EVERY;
        let claimed = match xact::run(|| batch::claim(CLAIM_BATCHES * guc::SERVICE_MAX_BATCH.get() as i64, prune)) {
            Ok(c) => c,
            Err(e) => {
                warning!("visual_search: auto-embed drainer could not claim queue entries: {}", e.message);
                self.back_off(Duration::from_secs(1));
                return 0;
            }
        };
        if prune {
            self.pruned = Instant::now();
        }
        let n = claimed.len();
        let mut transient = false;
        for group in batch::by_table(claimed) {
            pg_sys::check_for_interrupts!();
            report(pg_sys::BackendState::STATE_RUNNING, &format!("embedding {} rows of table {}", group.rows.len(), group.tbl.to_u32()));
            transient |= self.process(group);
        }
        if transient {
            self.back_off(Duration::from_millis(200));
        } else if n > 0 {
            self.backoff = None;
        }
        n
    }

    /// Reads, embeds and writes one table's share of the claim; true when it had to give the
    /// entries back for a reason that is nobody's row (they are claimed again after a back-off).
    fn process(&mut self, mut g: Group) -> bool {
        let ids = g.all_ids();
        let types = self.types;
        let give_back = |why: &str, blame: bool| {
            if let Err(e) = xact::run(|| batch::release(&ids, blame)) {
                warning!("visual_search: auto-embed drainer could not release its claims: {}", e.message);
            }
            log!("visual_search: auto-embed of {} rows put back in the queue: {why}", ids.len());
        };
        // An ERROR this code did not expect (a cancel while the service works, say) ends the
        // round for this table only: the entries go back to the queue.
        // Err: why the entries go back, and whether their attempt counts.
        let began = Instant::now();
        let mut times = [Duration::ZERO; 3];
        let outcome: Result<(), (String, bool)> = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
            let setup = match xact::run(|| batch::read(&mut g)) {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(()),
                Err(e) if batch::transient(&e) => return Err((e.message, false)),
                Err(e) => {
                    batch::fail_all(&mut g, &e, "could not read the row");
                    return batch::finish_only(&g).map_err(|e| (e.message, true));
                }
            };
            times[0] = began.elapsed();
            if let Err(f) = batch::embed(&setup, &mut g) {
                return Err((f.message, f.status == Status::ServiceLost));
            }
            times[1] = began.elapsed();
            let written = xact::run(|| batch::write(&setup, &g, types));
            times[2] = began.elapsed();
            match written {
                Ok(_) => Ok(()),
                Err(e) if batch::transient(&e) => Err((e.message, false)),
                Err(e) => {
                    batch::fail_all(&mut g, &e, "could not write the vector");
                    batch::finish_only(&g).map_err(|e| (e.message, true))
                }
            }
        }))
        .catch_others(|e| Err((xact::Failed::of(&e).message, true)))
        .execute();
        match outcome {
            Ok(()) => {
                let failed = g.rows.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).count();
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                debug1!(
                    "visual_search: auto-embed of {} rows of table {} ({failed} failed): read {:.1} ms, embedded {:.1} ms, written {:.1} ms",
                    g.rows.len(),
                    g.tbl.to_u32(),
                    ms(times[0]),
                    ms(times[1] - times[0]),
                    ms(times[2] - times[1]),
                );
                false
            }
            Err((why, blame)) => {
                give_back(&why, blame);
                true
            }
        }
    }
}

fn has_work() -> bool {
    Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM visual_search.embedding_queue WHERE failed_at IS NULL)").ok().flatten().unwrap_or(true)
}

extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler of backends (pg_sys::die is a wrapper, not the handler).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn visual_search_drain_main(arg: pg_sys::Datum) {
    let db = pg_sys::Oid::from(arg.value() as u32);
    // SIGTERM (shutdown, pg_terminate_backend) as in a backend: the process ends at its next
    // CHECK_FOR_INTERRUPTS, a wait for the service included; its claims are taken again.
    unsafe { pg_sys::pqsignal(libc::SIGTERM, Some(postgres_die)) };
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    let Some(lock) = drain_start::lock(db) else {
        debug1!("visual_search: database {} has an auto-embed drainer already", db.to_u32());
        return;
    };
    let mut lock: Option<File> = Some(lock);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    let types = match xact::run(prepare) {
        Ok(Some(t)) => t,
        Ok(None) => {
            debug1!("visual_search: no auto-embed queue in database {}", db.to_u32());
            return;
        }
        Err(e) => {
            warning!("visual_search: auto-embed drainer could not start: {}", e.message);
            return;
        }
    };
    log!("visual_search: auto-embed drainer started");
    let mut d = Drainer { types, pruned: Instant::now().checked_sub(PRUNE_EVERY).unwrap_or_else(Instant::now), backoff: None };
    let mut idle_since = Instant::now();
    loop {
        pg_sys::check_for_interrupts!();
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if d.round() > 0 {
            idle_since = Instant::now();
            if let Some(b) = d.backoff {
                wait(b);
            }
            continue;
        }
        report(pg_sys::BackendState::STATE_IDLE, "");
        if idle_since.elapsed() >= IDLE_EXIT {
            // Unlock first, look last: a writer that commits after the look finds the lock free
            // and starts another drainer; one that committed before it is seen here.
            drop(lock.take());
            if !xact::run(has_work).unwrap_or(true) {
                break;
            }
            match drain_start::lock(db) {
                Some(l) => {
                    lock.replace(l);
                }
                None => break,
            }
            idle_since = Instant::now();
        }
        wait(d.backoff.unwrap_or(POLL));
    }
    drop(lock);
    log!("visual_search: auto-embed drainer exits: the queue has been empty for {} s", IDLE_EXIT.as_secs());
}
