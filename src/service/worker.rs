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
        "--batchers".into(),
        match guc::SERVICE_BATCHERS.get() {
            0 => threads,
            n => n as usize,
        }
        .to_string(),
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
    /// Services told to finish what they hold and exit (their settings changed), with when.
    retiring: Vec<(Child, Instant)>,
    /// Spawn failures in a row: the wait before the next try doubles, up to a minute.
    failures: u32,
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
                self.failures = 0;
            }
            Err(e) => {
                let why = format!("could not start the embedding service \"{exe}\": {e}");
                if self.failures == 0 || self.failures.is_power_of_two() {
                    warning!("visual_search: {why}");
                }
                let _ = std::fs::write(FAILED, &why);
                self.failures += 1;
                self.not_before = Instant::now() + Duration::from_secs(1 << self.failures.min(6));
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
                    let young = since.elapsed() < Duration::from_secs(1);
                    if young {
                        // It could not start (its reason is in the server log): the backends
                        // waiting for it are told now rather than at their timeout.
                        let why = format!("the embedding service exited at start ({status}); see the server log");
                        let _ = std::fs::write(FAILED, why);
                    }
                    self.quick_deaths = if young { self.quick_deaths + 1 } else { 0 };
                    let wait = Duration::from_millis(100 << self.quick_deaths.min(7));
                    self.not_before = Instant::now() + wait;
                    self.child = None;
                }
                Err(e) => warning!("visual_search: could not check the embedding service process: {e}"),
            }
        }
        self.retiring.retain_mut(|(c, since)| match c.try_wait() {
            Ok(None) if since.elapsed() > RETIRE_TIMEOUT => {
                let _ = c.kill();
                let _ = c.wait();
                false
            }
            Ok(None) => true,
            _ => false,
        });
        if self.child.is_none() && Instant::now() >= self.not_before {
            self.spawn();
        }
    }

    /// New settings: the running service answers what it holds and exits (SIGTERM) while the
    /// next one, started at once, takes the socket for new connections.
    fn retire(&mut self) {
        if let Some((c, _)) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            self.retiring.push((c, Instant::now()));
        }
        self.not_before = Instant::now();
    }

    /// With the server: SIGTERM, a second to finish, then SIGKILL.
    fn stop(&mut self) {
        let children: Vec<Child> = self.child.take().into_iter().chain(self.retiring.drain(..)).map(|(c, _)| c).collect();
        for c in &children {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let until = Instant::now() + Duration::from_secs(1);
        for mut c in children {
            while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(SOCKET);
    }
}

/// How long a retiring service may take to answer what it holds.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(60);

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
    let mut s = Supervisor { args: args(), child: None, retiring: Vec::new(), failures: 0, not_before: Instant::now(), quick_deaths: 0 };
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
                s.retire();
                s.args = now;
            }
        }
        s.check();
    }
    s.stop();
    // Not 0, which would unregister a preloaded worker for good: a pg_terminate_backend of it
    // (an administrator's "terminate every other backend") must not end embedding until the
    // server restarts. At shutdown the postmaster restarts nothing.
    unsafe { pg_sys::proc_exit(1) };
}
