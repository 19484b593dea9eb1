//! The queue of waiting requests and the batcher, the one thread that calls the engine (the
//! engine caches its models per thread).

use crate::serve::{Conn, Shared};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vs_engine_api::abi::{self, Bytes, Engine, Request, Settings, Status};
use vs_engine_api::wire::{EmbedReply, EmbedRequest, Message};

/// Arrivals remembered, and how recent another connection's must be for a batch to wait for it.
const ARRIVALS: usize = 16;
const RECENT: Duration = Duration::from_millis(50);

/// Set by SIGTERM: answer what is queued, then exit (the supervisor has started the next
/// service, which new connections reach).
static RETIRING: AtomicBool = AtomicBool::new(false);

pub extern "C" fn retire(_: libc::c_int) {
    RETIRING.store(true, Ordering::Release);
}

pub fn retiring() -> bool {
    RETIRING.load(Ordering::Acquire)
}

pub struct Job {
    pub request: EmbedRequest,
    pub arrived: Instant,
    pub conn: Arc<Conn>,
}

pub struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    /// The last arrivals: which connection, when (see `company_likely`).
    arrivals: Mutex<VecDeque<(usize, Instant)>>,
    /// Batches taken and not yet answered; a retiring service exits at none.
    busy: std::sync::atomic::AtomicUsize,
    changed: Condvar,
    max_batch: usize,
    max_wait: Duration,
}

impl Queue {
    pub fn new(max_batch: usize, max_wait: Duration) -> Queue {
        Queue { jobs: Mutex::default(), arrivals: Mutex::default(), busy: Default::default(), changed: Condvar::new(), max_batch, max_wait }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, job: Job) {
        {
            let mut a = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            a.push_back((Arc::as_ptr(&job.conn) as usize, job.arrived));
            if a.len() > ARRIVALS {
                a.pop_front();
            }
        }
        self.lock().push_back(job);
        self.changed.notify_one();
    }

    /// Whether waiting for company can pay: another connection sent a request lately. A lone
    /// client's every call waited `max_wait` for nobody (2 ms of its 6.5).
    fn company_likely(&self, oldest: &Job) -> bool {
        let me = Arc::as_ptr(&oldest.conn) as usize;
        let a = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        a.iter().any(|(c, t)| *c != me && t.elapsed() < RECENT)
    }

    /// A connection went away: the batch being gathered may have lost its oldest job.
    pub fn wake(&self) {
        let _q = self.lock();
        self.changed.notify_one();
    }

    /// The next batch, in arrival order: the oldest live job and the later ones of equal
    /// settings that fit beside it, once it is full or the oldest has waited `max_wait`.
    fn next(&self, shared: &Shared) -> Vec<Job> {
        let mut q = self.lock();
        loop {
            let before = q.len();
            q.retain(|j| !j.conn.gone());
            shared.stats.dropped(before - q.len());
            let Some(oldest) = q.front() else {
                if retiring() && self.busy.load(Ordering::Acquire) == 0 {
                    crate::log(format_args!("retired: every request answered"));
                    std::process::exit(0);
                }
                // Timed, so that a SIGTERM is seen without a request to wake the batcher.
                q = self.changed.wait_timeout(q, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            };
            let waited = oldest.arrived.elapsed();
            let (picked, full) = choose(&q, self.max_batch);
            if full || waited >= self.max_wait || !self.company_likely(oldest) {
                // From the back, so that the indices still hold; then back in arrival order.
                let mut jobs: Vec<Job> = picked.iter().rev().filter_map(|&i| q.remove(i)).collect();
                jobs.reverse();
                self.busy.fetch_add(1, Ordering::AcqRel);
                return jobs;
            }
            q = self.changed.wait_timeout(q, self.max_wait - waited).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Indices of the jobs a batch led by `q[0]` takes, and whether it can take no more. The first
/// job of equal settings that does not fit closes the batch, so a large request is not passed
/// over for ever by small ones.
fn choose(q: &VecDeque<Job>, max_batch: usize) -> (Vec<usize>, bool) {
    let lead = &q[0].request;
    let mut total = lead.images.len();
    let mut picked = vec![0];
    for (i, j) in q.iter().enumerate().skip(1) {
        if total >= max_batch {
            break;
        }
        if j.request.wanted != lead.wanted {
            continue;
        }
        if total + j.request.images.len() > max_batch {
            return (picked, true);
        }
        total += j.request.images.len();
        picked.push(i);
    }
    (picked, total >= max_batch)
}

pub fn run(engine: &'static Engine, shared: &Shared, threads: u32) -> ! {
    loop {
        let jobs = shared.queue.next(shared);
        embed(engine, shared, threads, jobs);
        shared.queue.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An engine's reply, released when it goes.
struct Reply<'e> {
    engine: &'e Engine,
    r: abi::Reply,
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        unsafe { (self.engine.release)(&mut self.r) }
    }
}

impl Reply<'_> {
    fn text(b: &Bytes) -> String {
        unsafe { b.to_string_lossy() }
    }

    fn vectors(&self) -> &[f32] {
        if self.r.vectors.is_null() {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(self.r.vectors, self.r.n * self.r.dims) }
    }
}

/// A batch whose backends have all gone stops early.
unsafe extern "C" fn abandoned(ctx: *mut c_void) -> bool {
    let jobs = *ctx.cast_const().cast::<&[Job]>();
    jobs.iter().all(|j| j.conn.gone())
}

fn call<'e>(engine: &'e Engine, threads: u32, jobs: &[Job]) -> Reply<'e> {
    let w = &jobs[0].request.wanted;
    let settings = Settings {
        model_dir: Bytes::of(w.model_dir.as_bytes()),
        model: Bytes::of(w.model.as_bytes()),
        device: Bytes::of(w.device.as_bytes()),
        half_precision: w.half_precision,
        threads,
        max_image_bytes: w.max_image_bytes,
        max_image_pixels: w.max_image_pixels,
    };
    let images: Vec<Bytes> = jobs.iter().flat_map(|j| j.request.images.iter().map(|i| Bytes::of(i))).collect();
    let request =
        Request { settings, images: images.as_ptr(), n_images: images.len(), cancel: Some(abandoned), cancel_ctx: (&jobs as *const &[Job]).cast_mut().cast() };
    let mut reply = Reply { engine, r: abi::Reply::empty() };
    unsafe { (engine.embed)(&request, &mut reply.r) };
    reply
}

/// Answers every job of a batch. An image's error is its request's alone: the others run again
/// without it, until each has its answer.
fn embed(engine: &Engine, shared: &Shared, threads: u32, mut jobs: Vec<Job>) {
    let stats = &shared.stats;
    let mut note = String::new();
    loop {
        let before = jobs.len();
        jobs.retain(|j| !j.conn.gone());
        stats.dropped(before - jobs.len());
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let reply = call(engine, threads, &jobs);
        let r = &reply.r;
        let total: usize = jobs.iter().map(|j| j.request.images.len()).sum();
        let n_note = Reply::text(&r.note);
        if !n_note.is_empty() {
            crate::log(format_args!("{n_note}"));
            note = n_note;
        }
        let base = |j: &Job| EmbedReply {
            id: j.request.id,
            image: -1,
            note: note.clone(),
            timings: r.timings,
            batch_images: u32::try_from(total).unwrap_or(u32::MAX),
            queue_ms: started.saturating_duration_since(j.arrived).as_secs_f64() * 1e3,
            ..Default::default()
        };
        let answer = |j: &Job, reply: EmbedReply| {
            let queue_ms = reply.queue_ms;
            if j.conn.send(&Message::Embedded(reply)) {
                stats.answered(queue_ms);
            } else {
                stats.dropped(1);
            }
            // Its backend's next request goes to the next service (it reconnects when a kept
            // connection fails).
            if retiring() {
                j.conn.close();
            }
        };
        let (mut status, mut message) = (r.status, Reply::text(&r.message));
        if status == Status::Ok as i32 && (r.n != total || reply.vectors().len() != total * r.dims || (total > 0 && r.dims == 0)) {
            status = Status::Internal as i32;
            message = format!("the embedding engine returned {} vectors for {total} images", r.n);
        }
        if status == Status::Ok as i32 {
            let w = &jobs[0].request.wanted;
            stats.batch(total, Some((&w.model, &w.device)));
            let mut rest = reply.vectors();
            for j in &jobs {
                let (mine, after) = rest.split_at(j.request.images.len() * r.dims);
                rest = after;
                answer(j, EmbedReply { dims: r.dims as u32, vectors: mine.to_vec(), ..base(j) });
            }
            return;
        }
        stats.batch(total, None);
        match owner(&jobs, r.image) {
            Some((k, i)) => {
                answer(&jobs[k], EmbedReply { status, image: i as i64, message, ..base(&jobs[k]) });
                jobs.remove(k);
            }
            // An error of no image (out of memory, libtorch, a panic) may be one request's doing:
            // each runs alone before anyone is told.
            None if jobs.len() > 1 => {
                drop(reply);
                for j in jobs {
                    embed(engine, shared, threads, vec![j]);
                }
                return;
            }
            None => {
                jobs.iter().for_each(|j| answer(j, EmbedReply { status, message: message.clone(), ..base(j) }));
                return;
            }
        }
    }
}

/// The job an image of the batch belongs to, and its index within that job's request.
fn owner(jobs: &[Job], image: i64) -> Option<(usize, usize)> {
    let mut i = usize::try_from(image).ok()?;
    for (k, j) in jobs.iter().enumerate() {
        let n = j.request.images.len();
        if i < n {
            return Some((k, i));
        }
        i -= n;
    }
    None
}
