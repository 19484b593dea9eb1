//! A backend's side of the embedding service: one connection to its socket, kept for the life of
//! the backend, one request at a time. Waits go through the backend's latch, so a cancel or a
//! statement timeout ends them at once; the connection is then closed, which tells the service
//! to drop the request.

use super::{start, SOCKET};
use crate::embed::engine::{Call, Embedded, Failure};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime};
use vs_engine_api::abi::{self, Status};
use vs_engine_api::wire::{self, Message, ServiceStats, Wanted};

thread_local! {
    static CONNECTION: RefCell<Option<UnixStream>> = const { RefCell::new(None) };
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// How long a first call waits for the service to start: opening libtorch takes a second or
/// two, a busy machine more.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Replies are vectors: 65,535 floats for each of at most a million images is far below this.
const MAX_REPLY: u64 = 1 << 34;

fn failure(status: Status, message: impl Into<String>) -> Failure {
    Failure { status, image: None, message: message.into() }
}

fn lost(why: &io::Error) -> Failure {
    failure(Status::ServiceLost, format!("the embedding service ended while it held this request ({why}); see the server log"))
}

/// Sleeps on the latch until `fd` is ready for `events`, `timeout` passes or an interrupt
/// arrives. A pending cancel or termination raises here, after the caller's connection was
/// dropped by the unwind.
fn wait(fd: Option<i32>, events: u32, timeout: Duration) {
    let mut flags = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
    if fd.is_some() {
        flags |= events;
    }
    unsafe {
        pg_sys::WaitLatchOrSocket(pg_sys::MyLatch, flags as i32, fd.unwrap_or(-1), timeout.as_millis() as i64, pg_sys::PG_WAIT_EXTENSION);
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    // Every interrupt, not only a cancel: barriers and parallel workers' messages wait on it.
    pg_sys::check_for_interrupts!();
}

fn send(s: &mut UnixStream, frame: &[u8]) -> io::Result<()> {
    let mut at = 0;
    while at < frame.len() {
        match s.write(&frame[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(Some(s.as_raw_fd()), pg_sys::WL_SOCKET_WRITEABLE, Duration::from_secs(1)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn receive(s: &mut UnixStream, id: u64) -> io::Result<Message> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        while let Some((m, used)) = wire::parse(&buf, MAX_REPLY)? {
            buf.drain(..used);
            let of = match &m {
                Message::Embedded(r) => r.id,
                Message::StatsReply { id, .. } => *id,
                _ => 0,
            };
            if of == id {
                return Ok(m);
            }
        }
        match s.read(&mut chunk) {
            // Nothing of a reply came: the service ended before it answered (see `exchange`).
            Ok(0) if buf.is_empty() => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::InvalidData, "the connection ended inside a reply")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(Some(s.as_raw_fd()), pg_sys::WL_SOCKET_READABLE, Duration::from_secs(1)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if buf.is_empty() => return Err(e),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("the connection broke inside a reply: {e}"))),
        }
    }
}

/// A connection, or an error at once: the socket is non-blocking before it connects, because a
/// blocking connect to a service whose backlog is full sleeps in the kernel, past any cancel.
fn connect_now() -> io::Result<UnixStream> {
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Owned from here: closed on every return.
    let s = unsafe { UnixStream::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, b) in addr.sun_path.iter_mut().zip(SOCKET.as_bytes()) {
        *d = *b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + SOCKET.len() + 1) as libc::socklen_t;
    if unsafe { libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// A connection to the service, started first if it is not running.
fn connect() -> Result<UnixStream, Failure> {
    if let Ok(s) = connect_now() {
        return Ok(s);
    }
    let since = SystemTime::now();
    let begin = Instant::now();
    let mut asked = None::<Instant>;
    loop {
        // A worker that found another one running exits; ask again now and then, in case the
        // running one was on its way out.
        if asked.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            start::ensure()?;
            asked = Some(Instant::now());
        }
        wait(None, 0, Duration::from_millis(10));
        if let Ok(s) = connect_now() {
            return Ok(s);
        }
        if let Some(why) = start::failed_since(since) {
            return Err(failure(Status::ServiceUnavailable, why));
        }
        if begin.elapsed() > START_TIMEOUT {
            return Err(failure(
                Status::ServiceUnavailable,
                format!("the embedding service did not start within {} s; see the server log", START_TIMEOUT.as_secs()),
            ));
        }
    }
}

/// Sends `frame` and waits for the reply `id`. The connection is held outside the thread-local
/// while it is used: an ERROR unwinding from a wait drops, and so closes, it.
///
/// A kept connection may lead to a service that has since ended (killed, or restarted for new
/// settings: it answers what it holds, then closes): when it fails before any byte of a reply
/// came, the request goes once more on a fresh connection, to the next service. Embedding is
/// pure, so a second try is safe; one that fails too is the backend's ERROR. `open` makes the
/// fresh connection: `connect` starts the service if it must, statistics start nothing.
fn exchange(frame: &[u8], id: u64, open: fn() -> Result<UnixStream, Failure>) -> Result<Message, Failure> {
    if let Some(mut s) = CONNECTION.with(|c| c.borrow_mut().take()) {
        match send(&mut s, frame).and_then(|()| receive(&mut s, id)) {
            Ok(m) => {
                CONNECTION.with(|c| *c.borrow_mut() = Some(s));
                return Ok(m);
            }
            Err(e) if !retryable(&e) => return Err(lost(&e)),
            Err(_) => {}
        }
    }
    let mut s = open()?;
    send(&mut s, frame).map_err(|e| lost(&e))?;
    let m = receive(&mut s, id).map_err(|e| lost(&e))?;
    CONNECTION.with(|c| *c.borrow_mut() = Some(s));
    Ok(m)
}

/// A kept connection's failure that means only "that service is gone": nothing of a reply came.
fn retryable(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected)
}

fn next_id() -> u64 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

fn wanted(call: &Call) -> Wanted {
    Wanted {
        model_dir: call.model_dir.clone(),
        model: call.model.clone(),
        device: call.device.clone(),
        half_precision: call.half_precision,
        max_image_bytes: call.max_image_bytes,
        max_image_pixels: call.max_image_pixels,
    }
}

/// Images → vectors through the service. An image over the byte limit is refused here, before
/// anything is queued. An array goes in requests of at most `service_max_batch` images, so
/// that one large call takes turns with the other connections' instead of holding the service
/// (one of 5,000 images kept a single image waiting 239 s).
pub fn embed(call: &Call, images: &[&[u8]]) -> Result<Embedded, Failure> {
    let max = call.max_image_bytes as usize;
    if let Some((i, b)) = images.iter().enumerate().find(|(_, b)| b.len() > max) {
        return Err(Failure { status: Status::ImageTooManyBytes, image: Some(i), message: abi::too_many_bytes(b.len(), max) });
    }
    let per = (crate::guc::SERVICE_MAX_BATCH.get().max(1) as usize).min(wire::MAX_IMAGES as usize);
    let mut out = Embedded { vectors: Vec::new(), timings: [0.0; 3], note: None };
    out.vectors.try_reserve_exact(images.len()).map_err(|_| failure(Status::OutOfMemory, "out of memory for the vectors"))?;
    for (c, part) in images.chunks(per).enumerate() {
        let e = embed_part(call, part).map_err(|f| Failure { image: f.image.map(|i| i + c * per), ..f })?;
        out.vectors.extend(e.vectors);
        out.timings.iter_mut().zip(e.timings).for_each(|(t, x)| *t += x);
        out.note = out.note.or(e.note);
    }
    Ok(out)
}

fn embed_part(call: &Call, images: &[&[u8]]) -> Result<Embedded, Failure> {
    let id = next_id();
    let frame = wire::encode_embed(id, &wanted(call), images).map_err(|e| failure(Status::OutOfMemory, e.to_string()))?;
    let Message::Embedded(r) = exchange(&frame, id, connect)? else {
        return Err(failure(Status::Internal, "the embedding service answered with another kind of message"));
    };
    match Status::from_code(r.status) {
        Status::Ok => {
            let dims = (r.dims as usize).max(1);
            if r.vectors.len() != images.len() * r.dims as usize {
                return Err(failure(Status::Internal, format!("the embedding service sent {} floats for {} images", r.vectors.len(), images.len())));
            }
            Ok(Embedded { vectors: r.vectors.chunks(dims).map(<[f32]>::to_vec).collect(), timings: r.timings, note: (!r.note.is_empty()).then_some(r.note) })
        }
        status => Err(Failure { status, image: usize::try_from(r.image).ok(), message: r.message }),
    }
}

/// The service's statistics, or None when it is not running (asking does not start it).
pub fn stats() -> Option<ServiceStats> {
    let id = next_id();
    let running = || connect_now().map_err(|e| lost(&e));
    match exchange(&wire::encode(&Message::Stats { id }), id, running) {
        Ok(Message::StatsReply { stats, .. }) => Some(stats),
        _ => None,
    }
}
