//! `visual_search_service`: one process per PostgreSQL server, started and supervised by the
//! extension's background worker. It opens the engine library once and batches the images of
//! every backend's requests into shared engine calls (see `vs_engine_api::wire`).

mod args;
mod batch;
mod serve;
mod stats;

use args::Args;
use serve::Shared;
use stats::{Fixed, Stats};
use std::sync::Arc;
use vs_engine_api::abi::{Bytes, Engine, Reply, Settings, Status};
use vs_engine_api::load;

/// A line of the server log (our stderr).
pub fn log(what: std::fmt::Arguments) {
    eprintln!("visual_search service: {what}");
}

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("visual_search_service: {e}\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if let Some(parent) = args.parent {
        // The service must not outlive its supervisor; a parent that died before the prctl
        // is caught by the check after it.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        if unsafe { libc::getppid() } != parent {
            std::process::exit(1);
        }
    }
    raise_open_files();
    // Bound before the engine opens (seconds for libtorch): early connections wait in the
    // backlog instead of being refused.
    let listener = match serve::bind(&args.socket) {
        Ok(l) => l,
        Err(e) => {
            log(format_args!("cannot listen on \"{}\": {e}", args.socket));
            std::process::exit(1);
        }
    };
    let (engine, no_engine) = match load::open(&args.engine) {
        Ok(e) => (Some(e), None),
        Err(why) => {
            let status = if std::path::Path::new(&args.engine).exists() { Status::EngineUnusable } else { Status::EngineMissing };
            let message = format!("could not load the embedding engine \"{}\": {why}", args.engine);
            log(format_args!("{message}"));
            (None, Some((status, message)))
        }
    };
    let info = engine.map(|e| info(e, args.threads)).unwrap_or_default();
    log(format_args!(
        "listening on \"{}\", engine \"{}\" ({}), threads {} in {} batchers, max batch {}, max wait {} ms",
        args.socket,
        args.engine,
        if info.is_empty() { "not loaded" } else { &info },
        args.threads,
        args.batchers,
        args.max_batch,
        args.max_wait.as_secs_f64() * 1e3,
    ));
    let shared = Arc::new(Shared {
        queue: batch::Queue::new(args.max_batch as usize, args.max_wait),
        stats: Stats::new(Fixed {
            engine: args.engine.clone(),
            engine_error: no_engine.as_ref().map(|(_, m)| m.clone()),
            threads: args.threads,
            batchers: args.batchers,
            max_batch: args.max_batch,
            max_wait: args.max_wait,
            info,
        }),
        no_engine,
        max_request_bytes: args.max_request_bytes,
    });
    if let Some(engine) = engine {
        // A supervisor that restarts the service for new settings lets it finish what it holds
        // (without an engine it holds nothing: SIGTERM ends it at once).
        unsafe { libc::signal(libc::SIGTERM, batch::retire as *const () as libc::sighandler_t) };
        // Several batchers of few threads each: a forward pass on every core waits at each of
        // its ~40 parallel regions for the slowest thread, and on a server whose cores are
        // busy with queries that thread waits for a time slice: fashion-vgg16 calls took 350 ms
        // instead of 10 at the 90th percentile with 2 threads on 2 cores beside one busy
        // process; one thread each, as in the backends, never stalls.
        let threads = (args.threads / args.batchers).max(1);
        for b in 0..args.batchers {
            let s = shared.clone();
            let started = std::thread::Builder::new().name(format!("vs-batcher-{b}")).spawn(move || {
                // Without the batchers every request would wait for ever: better to die and be
                // restarted by the supervisor.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batch::run(engine, &s, threads)));
                log(format_args!("a batcher failed; exiting"));
                std::process::exit(1);
            });
            if let Err(e) = started {
                log(format_args!("cannot start a batcher: {e}"));
                std::process::exit(1);
            }
        }
    }
    serve::accept(listener, shared)
}

/// Every backend keeps a connection (one descriptor each): the soft limit of 1,024 stopped a
/// service at about 500 sessions, so it takes the hard limit.
fn raise_open_files() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The engine's own account of libtorch (threads, CUDA).
fn info(engine: &Engine, threads: u32) -> String {
    let s = Settings {
        model_dir: Bytes::EMPTY,
        model: Bytes::EMPTY,
        device: Bytes::EMPTY,
        half_precision: false,
        threads,
        max_image_bytes: 0,
        max_image_pixels: 0,
    };
    let mut reply = Reply::empty();
    unsafe {
        (engine.info)(&s, &mut reply);
        let text = reply.message.to_string_lossy();
        (engine.release)(&mut reply);
        text
    }
}
