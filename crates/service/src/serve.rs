//! The service's connections: one reader thread each, answers written under a lock.

use crate::batch::{Job, Queue};
use crate::stats::Stats;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vs_engine_api::abi::Status;
use vs_engine_api::wire::{self, EmbedReply, Message};

/// A backend that stops reading its socket must not stall the batcher, which writes every
/// answer: after this long its connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the readers need, shared by all.
pub struct Shared {
    pub queue: Queue,
    pub stats: Stats,
    /// The status and message every request gets when the engine could not be opened.
    pub no_engine: Option<(Status, String)>,
    pub max_request_bytes: u64,
}

/// One backend's connection: one descriptor, read by its thread, written under the lock.
pub struct Conn {
    stream: UnixStream,
    writer: Mutex<()>,
    /// The backend closed it (its request withdrawn) or it broke.
    gone: AtomicBool,
}

impl Conn {
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub fn close(&self) {
        self.gone.store(true, Ordering::Release);
        // Also wakes its reader, which is blocked in a read.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Writes `m`; false (and the connection closed) when it could not.
    pub fn send(&self, m: &Message) -> bool {
        if self.gone() {
            return false;
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match wire::write(&mut &self.stream, m) {
            Ok(()) => true,
            Err(_) => {
                self.close();
                false
            }
        }
    }
}

pub fn accept(listener: UnixListener, shared: Arc<Shared>) -> ! {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                if let Err(e) = std::thread::Builder::new().name("vs-conn".into()).spawn(move || serve(stream, &shared)) {
                    crate::log(format_args!("cannot start a connection's thread: {e}"));
                }
            }
            Err(e) => {
                // Out of descriptors, most likely: give the others time to close theirs.
                crate::log(format_args!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve(stream: UnixStream, shared: &Shared) {
    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let conn = Arc::new(Conn { stream, writer: Mutex::new(()), gone: AtomicBool::new(false) });
    // EOF, a broken socket or a frame that is not ours all end the connection.
    while let Ok(m) = wire::read(&mut &conn.stream, shared.max_request_bytes) {
        let ok = match m {
            Message::Embed(request) => {
                shared.stats.request(request.images.len());
                match &shared.no_engine {
                    Some((status, message)) => conn.send(&Message::Embedded(EmbedReply {
                        id: request.id,
                        status: *status as i32,
                        image: -1,
                        message: message.clone(),
                        ..Default::default()
                    })),
                    None => {
                        shared.queue.push(Job { request, arrived: Instant::now(), conn: conn.clone() });
                        true
                    }
                }
            }
            Message::Stats { id } => conn.send(&Message::StatsReply { id, stats: shared.stats.snapshot() }),
            // Answers are the service's to send, not to receive.
            Message::Embedded(_) | Message::StatsReply { .. } => false,
        };
        if !ok {
            break;
        }
    }
    conn.close();
    shared.queue.wake();
}

/// The socket at `path`, for its owner only; a socket left by a dead service is replaced.
pub fn bind(path: &str) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "it exists and is not a socket")),
        Err(_) => {}
    }
    // No moment in which another user could connect: the umask covers bind, chmod the rest.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
