//! The background worker that supervises the service process: it starts it, starts another when
//! it dies (killed, or libtorch aborted), restarts it when its settings change on reload, and
//! stops it with the server. It shows in pg_stat_activity as "visual_search embedding service".

use super::{DIR, FAILED, LOCK, SOCKET};
use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The one worker of the server holds this lock; a second one (two backends asked at once)
/// returns at once.
fn lock() -> Option<File> {
    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(DIR).ok()?;
    let f = File::options().create(true).truncate(false).write(true).open(LOCK).ok()?;
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}

/// The service's command line, from this worker's settings (the server's configuration).
fn args() -> Vec<String> {
    let threads = match guc::SERVICE_THREADS.get() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let wait_us = guc::SERVICE_MAX_WAIT.get() as u64 * 1000;
    vec![
        "--socket".into(),
        SOCKET.into(),
        "--engine".into(),
        crate::embed::engine::path(),
        "--threads".into(),
        threads.to_string(),
        "--max-batch".into(),
        guc::SERVICE_MAX_BATCH.get().to_string(),
        "--max-wait-us".into(),
        wait_us.to_string(),
        // A bytea[] holds at most 1 GB; the frame adds 8 bytes an image.
        "--max-request-bytes".into(),
        (3u64 << 30).to_string(),
        "--parent".into(),
        std::process::id().to_string(),
    ]
}

fn executable() -> String {
    format!("{}/visual_search_service", crate::glue::paths::pkglib())
}

struct Supervisor {
    args: Vec<String>,
    child: Option<(Child, Instant)>,
    /// When to try again after the process died young or could not be started.
    not_before: Instant,
    /// Successive deaths within a second of starting: the wait before the next start doubles.
    quick_deaths: u32,
}

impl Supervisor {
    fn spawn(&mut self) {
        let exe = executable();
        match Command::new(&exe).args(&self.args).spawn() {
            Ok(c) => {
                let _ = std::fs::remove_file(FAILED);
                log!("visual_search: embedding service started (pid {})", c.id());
                self.child = Some((c, Instant::now()));
            }
            Err(e) => {
                let why = format!("could not start the embedding service \"{exe}\": {e}");
                warning!("visual_search: {why}");
                let _ = std::fs::write(FAILED, &why);
                self.not_before = Instant::now() + Duration::from_secs(1);
            }
        }
    }

    /// Starts the process when none runs and it is time; notes a death.
    fn check(&mut self) {
        if let Some((c, since)) = &mut self.child {
            match c.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => {
                    log!("visual_search: embedding service process {} exited ({status}); starting another", c.id());
                    self.quick_deaths = if since.elapsed() < Duration::from_secs(1) { self.quick_deaths + 1 } else { 0 };
                    let wait = Duration::from_millis(100 << self.quick_deaths.min(7));
                    self.not_before = Instant::now() + wait;
                    self.child = None;
                }
                Err(e) => warning!("visual_search: could not check the embedding service process: {e}"),
            }
        }
        if self.child.is_none() && Instant::now() >= self.not_before {
            self.spawn();
        }
    }

    /// SIGTERM, a second to finish, then SIGKILL.
    fn stop(&mut self) {
        if let Some((mut c, _)) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(SOCKET);
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn visual_search_service_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let Some(_lock) = lock() else {
        debug1!("visual_search: an embedding service is already running");
        return;
    };
    let _ = std::fs::remove_file(FAILED);
    let mut s = Supervisor { args: args(), child: None, not_before: Instant::now(), quick_deaths: 0 };
    s.check();
    // What a crash left in the auto-embed queues is drained without waiting for a writer; on a
    // standby, once it is promoted.
    let mut drainers_started = false;
    while BackgroundWorker::wait_latch(Some(Duration::from_millis(100))) {
        if !drainers_started && !unsafe { pg_sys::RecoveryInProgress() } {
            super::drain_start::start_recorded();
            drainers_started = true;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            let now = args();
            if now != s.args {
                log!("visual_search: the embedding service's settings changed; restarting it");
                s.stop();
                s.args = now;
                s.not_before = Instant::now();
            }
        }
        s.check();
    }
    s.stop();
}
