//! `visual_search.service_stats()`: what the embedding service has done since it started.

use pgrx::prelude::*;

/// One row; `running` false (and the rest NULL) when no service answers. Asking starts nothing.
// pgrx names a table function's columns in its return type: the tuple cannot be an alias.
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn service_stats() -> TableIterator<
    'static,
    (
        name!(running, bool),
        name!(pid, Option<i32>),
        name!(engine, Option<String>),
        name!(engine_error, Option<String>),
        name!(threads, Option<i32>),
        name!(batchers, Option<i32>),
        name!(max_batch, Option<i32>),
        name!(max_wait_ms, Option<f64>),
        name!(uptime_s, Option<f64>),
        name!(requests, Option<i64>),
        name!(images, Option<i64>),
        name!(batches, Option<i64>),
        name!(mean_batch, Option<f64>),
        name!(dropped, Option<i64>),
        name!(mean_queue_wait_ms, Option<f64>),
        name!(images_per_s, Option<f64>),
        name!(batch_sizes, Option<String>),
        name!(models, Option<Vec<String>>),
        name!(info, Option<String>),
    ),
> {
    let Some(s) = super::client::stats() else {
        return TableIterator::once((false, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None));
    };
    let per = |total: f64, n: u64| (n > 0).then(|| total / n as f64);
    let sizes = s.batch_sizes.iter().map(|(size, n)| format!("{size}:{n}")).collect::<Vec<_>>().join(" ");
    let models = s.models.iter().map(|(m, d)| format!("{m} on {d}")).collect();
    TableIterator::once((
        true,
        Some(s.pid as i32),
        Some(s.engine),
        s.engine_error,
        Some(s.threads as i32),
        Some(s.batchers as i32),
        Some(s.max_batch as i32),
        Some(s.max_wait_ms),
        Some(s.uptime_s),
        Some(s.requests as i64),
        Some(s.images as i64),
        Some(s.batches as i64),
        per(s.images as f64, s.batches),
        Some(s.dropped as i64),
        per(s.queue_wait_ms_total, s.requests),
        Some(s.images_per_s),
        Some(sizes),
        Some(models),
        Some(s.info),
    ))
}
