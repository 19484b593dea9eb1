//! The embedding engine library, `visual_search_engine.so`: `vs_embed` (decode → preprocess →
//! model) behind the C ABI of `vs_engine_api::abi`. It is the only artefact that links libtorch
//! and the image decoders; a backend opens it with dlopen the first time it embeds, so that
//! parsing a literal, a scan or a parallel worker never maps libtorch (431 MB).
//!
//! No panic leaves this library: every entry point catches it and answers `Status::Internal`.

mod pool;
mod run;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use vs_engine_api::abi::{self, Bytes, Engine, Reply, Request, Settings, Status};

static ENGINE: Engine = Engine { version: abi::VERSION, embed, smoke, info, models_loaded, release };

/// The entry point (`abi::ENTRY`): the table of this library's functions.
#[no_mangle]
pub extern "C" fn visual_search_engine_v1() -> *const Engine {
    &ENGINE
}

/// What a call computed, before it is written into a `Reply`.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: Option<Status>,
    pub image: Option<usize>,
    pub message: String,
    pub note: String,
    pub vectors: Vec<f32>,
    pub dims: usize,
    pub timings: [f64; 3],
    pub value: f64,
}

impl Answer {
    pub fn error(status: Status, image: Option<usize>, message: impl Into<String>) -> Answer {
        Answer { status: Some(status), image, message: message.into(), ..Default::default() }
    }
}

/// What a `Reply` points into until `release`.
struct Owned {
    _message: String,
    _note: String,
    _vectors: Vec<f32>,
}

fn panic_text(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("a panic")
}

/// Runs `f` with its panics caught and writes its answer into `reply`.
unsafe fn answer(reply: *mut Reply, f: impl FnOnce() -> Answer) {
    let Some(reply) = reply.as_mut() else { return };
    let a = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Answer::error(Status::Internal, None, format!("the embedding engine failed: {}", panic_text(&*p))));
    let n = a.vectors.len().checked_div(a.dims).unwrap_or(0);
    *reply = Reply {
        status: a.status.unwrap_or(Status::Ok) as i32,
        image: a.image.map_or(-1, |i| i as i64),
        message: Bytes::of(a.message.as_bytes()),
        note: Bytes::of(a.note.as_bytes()),
        vectors: a.vectors.as_ptr(),
        n,
        dims: a.dims,
        timings: a.timings,
        value: a.value,
        owner: std::ptr::null_mut(),
    };
    // The strings' and the vector's heap buffers do not move with them.
    reply.owner = Box::into_raw(Box::new(Owned { _message: a.message, _note: a.note, _vectors: a.vectors })).cast();
}

unsafe extern "C" fn embed(request: *const Request, reply: *mut Reply) {
    answer(reply, || match request.as_ref() {
        Some(r) => run::embed(r),
        None => Answer::error(Status::Internal, None, "no request"),
    })
}

unsafe extern "C" fn smoke(settings: *const Settings, reply: *mut Reply) {
    answer(reply, || match settings.as_ref() {
        Some(s) => Answer { value: run::smoke(s), ..Default::default() },
        None => Answer::error(Status::Internal, None, "no settings"),
    })
}

unsafe extern "C" fn info(settings: *const Settings, reply: *mut Reply) {
    answer(reply, || match settings.as_ref() {
        Some(s) => Answer { message: run::info(s), ..Default::default() },
        None => Answer::error(Status::Internal, None, "no settings"),
    })
}

unsafe extern "C" fn models_loaded() -> u32 {
    catch_unwind(run::models_loaded).unwrap_or(0)
}

unsafe extern "C" fn release(reply: *mut Reply) {
    let Some(reply) = reply.as_mut() else { return };
    if !reply.owner.is_null() {
        let owned = Box::from_raw(reply.owner.cast::<Owned>());
        let _ = catch_unwind(AssertUnwindSafe(move || drop(owned)));
    }
    *reply = Reply::empty();
}

#[cfg(test)]
mod tests;
