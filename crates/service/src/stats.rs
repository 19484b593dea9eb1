//! What the service has done since it started, as `wire::ServiceStats` reports it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vs_engine_api::wire::ServiceStats;

/// `images_per_s` is over this window: long enough to smooth a burst, short enough to show load.
const WINDOW: Duration = Duration::from_secs(60);

/// What does not change after start.
pub struct Fixed {
    pub engine: String,
    pub engine_error: Option<String>,
    pub threads: u32,
    pub batchers: u32,
    pub max_batch: u32,
    pub max_wait: Duration,
    pub info: String,
}

#[derive(Default)]
struct Counts {
    requests: u64,
    images: u64,
    batches: u64,
    dropped: u64,
    queue_wait_ms_total: f64,
    /// (end of an engine call, images it embedded), oldest first, within `WINDOW`.
    recent: VecDeque<(Instant, u64)>,
    batch_sizes: BTreeMap<u32, u64>,
    models: BTreeSet<(String, String)>,
}

pub struct Stats {
    fixed: Fixed,
    started: Instant,
    counts: Mutex<Counts>,
}

impl Stats {
    pub fn new(fixed: Fixed) -> Stats {
        Stats { fixed, started: Instant::now(), counts: Mutex::default() }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic elsewhere must not silence the statistics: the counters stay consistent.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request as it arrives, whatever becomes of it.
    pub fn request(&self, images: usize) {
        let mut c = self.counts();
        c.requests += 1;
        c.images += images as u64;
    }

    /// Requests withdrawn before they were answered.
    pub fn dropped(&self, n: usize) {
        if n > 0 {
            self.counts().dropped += n as u64;
        }
    }

    pub fn answered(&self, queue_ms: f64) {
        self.counts().queue_wait_ms_total += queue_ms;
    }

    /// One engine call of `images`; `model` is its (model, device) when it succeeded.
    pub fn batch(&self, images: usize, model: Option<(&str, &str)>) {
        let now = Instant::now();
        let mut c = self.counts();
        c.batches += 1;
        *c.batch_sizes.entry(u32::try_from(images).unwrap_or(u32::MAX)).or_default() += 1;
        if let Some((m, d)) = model {
            c.recent.push_back((now, images as u64));
            // Bounded: a role may name its device with a megabyte of spaces.
            let (m, d) = (clip(m), clip(d));
            if c.models.len() < MAX_MODELS && !c.models.iter().any(|(cm, cd)| *cm == m && *cd == d) {
                c.models.insert((m, d));
            }
        }
        prune(&mut c.recent, now);
    }

    pub fn snapshot(&self) -> ServiceStats {
        let now = Instant::now();
        let uptime = now.duration_since(self.started);
        let mut c = self.counts();
        prune(&mut c.recent, now);
        let recent: u64 = c.recent.iter().map(|(_, n)| n).sum();
        let f = &self.fixed;
        ServiceStats {
            pid: std::process::id(),
            engine: f.engine.clone(),
            engine_error: f.engine_error.clone(),
            threads: f.threads,
            batchers: f.batchers,
            max_batch: f.max_batch,
            max_wait_ms: f.max_wait.as_secs_f64() * 1e3,
            uptime_s: uptime.as_secs_f64(),
            requests: c.requests,
            images: c.images,
            batches: c.batches,
            dropped: c.dropped,
            queue_wait_ms_total: c.queue_wait_ms_total,
            images_per_s: recent as f64 / uptime.min(WINDOW).as_secs_f64().max(1e-3),
            batch_sizes: c.batch_sizes.iter().map(|(s, n)| (*s, *n)).collect(),
            models: c.models.iter().cloned().collect(),
            info: f.info.clone(),
        }
    }
}

fn prune(recent: &mut VecDeque<(Instant, u64)>, now: Instant) {
    while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
        recent.pop_front();
    }
}

/// (model, device) pairs remembered, and the characters kept of each name.
const MAX_MODELS: usize = 32;
const NAME_CHARS: usize = 64;

fn clip(s: &str) -> String {
    s.trim().chars().take(NAME_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        Stats::new(Fixed {
            engine: "e".into(),
            engine_error: None,
            threads: 1,
            batchers: 1,
            max_batch: 8,
            max_wait: Duration::from_millis(2),
            info: String::new(),
        })
    }

    #[test]
    fn batches_are_counted_by_size_and_models_once() {
        let s = stats();
        s.request(3);
        s.request(1);
        s.batch(4, Some(("m", "cpu")));
        s.batch(1, Some(("m", "cpu")));
        s.batch(4, None);
        s.dropped(2);
        let r = s.snapshot();
        assert_eq!((r.requests, r.images, r.batches, r.dropped), (2, 4, 3, 2));
        assert_eq!(r.batch_sizes, vec![(1, 1), (4, 2)]);
        assert_eq!(r.models, vec![("m".to_string(), "cpu".to_string())]);
        assert!(r.images_per_s > 0.0);
        assert_eq!(r.max_wait_ms, 2.0);
    }

    #[test]
    fn the_models_remembered_are_bounded() {
        let s = stats();
        let long = format!("cpu{}", " ".repeat(1_000_000));
        for i in 0..100 {
            s.batch(1, Some((&format!("m{i}"), &long)));
        }
        let r = s.snapshot();
        assert_eq!(r.models.len(), MAX_MODELS);
        assert!(r.models.iter().all(|(m, d)| m.len() <= NAME_CHARS && d == "cpu"));
    }
}
