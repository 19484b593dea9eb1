//! How a caller waits on a thread pool's tasks without losing its ability to be cancelled.

use super::preprocess::Cancel;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// A pool `run` can use: a task that panics is reported by `run` as missing, where rayon's
/// default handler would abort the process.
pub use vs_pool::builder as pool_builder;

/// How often a waiting backend asks `cancel`.
const POLL: Duration = Duration::from_millis(10);

/// Runs `tasks` on `pool` and returns their results in order, asking `cancel` every 10 ms while
/// it waits; None once `cancel` says so. Then the call returns at once and the tasks still
/// running are left to finish in the background, told to stop at their next look at the flag
/// they are given: they own everything they touch, so nothing of the caller's (PostgreSQL
/// memory freed by the ERROR that follows) is used after the return.
pub fn run<R: Send + 'static>(pool: &rayon::ThreadPool, tasks: Vec<impl FnOnce(Cancel) -> R + Send + 'static>, cancel: Cancel) -> Option<Vec<R>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel();
    let n = tasks.len();
    for (i, task) in tasks.into_iter().enumerate() {
        let (tx, stop) = (tx.clone(), stop.clone());
        pool.spawn(move || {
            let stopped = || stop.load(Ordering::Relaxed);
            if !stopped() {
                let _ = tx.send((i, task(&stopped)));
            }
        });
    }
    drop(tx);
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let mut left = n;
    while left > 0 {
        if cancel() {
            stop.store(true, Ordering::Relaxed);
            return None;
        }
        match rx.recv_timeout(POLL) {
            Ok((i, r)) => {
                out[i] = Some(r);
                left -= 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // A task that panicked sent nothing: its slot stays empty.
    Some(out.into_iter().map(|r| r.expect("a pool task panicked")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_come_back_in_order() {
        let p = pool_builder(2).build().unwrap();
        let tasks: Vec<_> = (0..50u64).map(|i| move |_: Cancel| i * i).collect();
        assert_eq!(run(&p, tasks, &|| false).unwrap(), (0..50u64).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn a_cancel_returns_at_once_and_tells_the_tasks_to_stop() {
        let p = pool_builder(2).build().unwrap();
        let finished = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let finished = finished.clone();
                move |stop: Cancel| {
                    let t = std::time::Instant::now();
                    while !stop() && t.elapsed() < Duration::from_secs(5) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    finished.fetch_add(1, Ordering::Relaxed);
                }
            })
            .collect();
        let asked = std::time::Instant::now() + Duration::from_millis(100);
        let t = std::time::Instant::now();
        assert!(run(&p, tasks, &|| std::time::Instant::now() > asked).is_none());
        assert!(t.elapsed() < Duration::from_secs(2), "returned after {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
        assert!(finished.load(Ordering::Relaxed) <= 2, "queued tasks did not start after the cancel");
    }
}
