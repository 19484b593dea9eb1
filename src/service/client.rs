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
    if crate::embed::engine::interrupt_requested() {
        crate::glue::error::cancelled();
    }
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
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(Some(s.as_raw_fd()), pg_sys::WL_SOCKET_READABLE, Duration::from_secs(1)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn connect_now() -> io::Result<UnixStream> {
    let s = UnixStream::connect(SOCKET)?;
    s.set_nonblocking(true)?;
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
fn exchange(frame: &[u8], id: u64) -> Result<Message, Failure> {
    let kept = CONNECTION.with(|c| c.borrow_mut().take());
    let mut s = match kept {
        Some(mut s) => match send(&mut s, frame) {
            Ok(()) => s,
            // The service restarted since this backend's last call: its old connection is dead.
            Err(_) => {
                let mut s = connect()?;
                send(&mut s, frame).map_err(|e| lost(&e))?;
                s
            }
        },
        None => {
            let mut s = connect()?;
            send(&mut s, frame).map_err(|e| lost(&e))?;
            s
        }
    };
    let m = receive(&mut s, id).map_err(|e| lost(&e))?;
    CONNECTION.with(|c| *c.borrow_mut() = Some(s));
    Ok(m)
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
/// anything is queued.
pub fn embed(call: &Call, images: &[&[u8]]) -> Result<Embedded, Failure> {
    let max = call.max_image_bytes as usize;
    if let Some((i, b)) = images.iter().enumerate().find(|(_, b)| b.len() > max) {
        return Err(Failure { status: Status::ImageTooManyBytes, image: Some(i), message: abi::too_many_bytes(b.len(), max) });
    }
    let id = next_id();
    let Message::Embedded(r) = exchange(&wire::encode_embed(id, &wanted(call), images), id)? else {
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
    let kept = CONNECTION.with(|c| c.borrow_mut().take());
    let mut s = match kept {
        Some(s) => s,
        None => connect_now().ok()?,
    };
    let id = next_id();
    let frame = wire::encode(&Message::Stats { id });
    if send(&mut s, &frame).is_err() {
        s = connect_now().ok()?;
        send(&mut s, &frame).ok()?;
    }
    match receive(&mut s, id) {
        Ok(Message::StatsReply { stats, .. }) => {
            CONNECTION.with(|c| *c.borrow_mut() = Some(s));
            Some(stats)
        }
        _ => None,
    }
}
