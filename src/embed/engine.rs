//! The engine library (`visual_search_engine.so`, crates/engine) seen from a backend: opened
//! with dlopen the first time this backend embeds an image, never before, so that a backend or a
//! parallel worker that only handles vectors does not map libtorch (431 MB; a new connection
//! that parsed one literal took 26× pgvector's time while this library linked it).
//!
//! Settings are read here and passed with each call; the engine's statuses become PostgreSQL
//! errors in `glue::error`. Nothing in the engine calls PostgreSQL: the cancel callback only
//! reads the interrupt flags, and the caller turns `Cancelled` into CHECK_FOR_INTERRUPTS.

use crate::glue::error::error;
use crate::guc;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode::*;
use std::cell::Cell;
use std::ffi::c_void;
use vs_engine_api::abi::{Bytes, Engine, Reply, Request, Settings, Status};

thread_local! {
    static ENGINE: Cell<Option<&'static Engine>> = const { Cell::new(None) };
}

/// `visual_search.engine_library` with `$libdir` expanded to PostgreSQL's pkglibdir.
pub fn path() -> String {
    crate::glue::paths::expand_libdir(&guc::string(&guc::ENGINE_LIBRARY, "$libdir/visual_search_engine.so"))
}

/// The engine, opened on first use in this backend; a clear ERROR if it cannot be.
pub fn engine() -> &'static Engine {
    if let Some(e) = ENGINE.with(Cell::get) {
        return e;
    }
    let path = path();
    match vs_engine_api::load::open(&path) {
        Ok(e) => {
            ENGINE.with(|c| c.set(Some(e)));
            e
        }
        Err(why) => {
            let code = if std::path::Path::new(&path).exists() { ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE } else { ERRCODE_UNDEFINED_FILE };
            error(code, format!("could not load the embedding engine \"{path}\": {why}"))
        }
    }
}

/// The engine if this backend has opened it already.
pub fn loaded() -> Option<&'static Engine> {
    ENGINE.with(Cell::get)
}

/// The settings of a call, as the engine receives them.
pub struct Call {
    pub model_dir: String,
    pub model: String,
    pub device: String,
    pub half_precision: bool,
    pub threads: u32,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
}

impl Call {
    /// This backend's settings, for `model`.
    pub fn new(model_dir: String, model: String) -> Call {
        let (max_bytes, max_pixels) = guc::image_limits();
        Call {
            model_dir,
            model,
            device: guc::string(&guc::DEVICE, "auto"),
            half_precision: guc::HALF_PRECISION.get(),
            threads: guc::threads() as u32,
            max_image_bytes: max_bytes as u64,
            max_image_pixels: max_pixels,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            model_dir: Bytes::of(self.model_dir.as_bytes()),
            model: Bytes::of(self.model.as_bytes()),
            device: Bytes::of(self.device.as_bytes()),
            half_precision: self.half_precision,
            threads: self.threads,
            max_image_bytes: self.max_image_bytes,
            max_image_pixels: self.max_image_pixels,
        }
    }
}

/// A failed call: the status, the image it is about, the engine's message.
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    pub image: Option<usize>,
    pub message: String,
}

/// What `embed` gave back.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// decode, preprocess, forward (ms).
    pub timings: [f64; 3],
    /// Set when this call loaded the model.
    pub note: Option<String>,
}

/// True once a cancel, a statement timeout or a termination is pending (PostgreSQL's signal
/// handlers set these flags). Only reads memory: it may not raise or longjmp.
fn interrupt_requested() -> bool {
    unsafe {
        std::ptr::read_volatile(std::ptr::addr_of!(pg_sys::QueryCancelPending)) != 0 || std::ptr::read_volatile(std::ptr::addr_of!(pg_sys::ProcDiePending)) != 0
    }
}

/// `interrupt_requested` as the engine's cancel callback.
unsafe extern "C" fn interrupt_pending(_: *mut c_void) -> bool {
    interrupt_requested()
}

/// A reply's contents, copied out of the engine's memory.
struct Answer {
    message: String,
    note: String,
    vectors: Vec<Vec<f32>>,
    timings: [f64; 3],
    value: f64,
}

/// Copies what the engine answered and hands the reply back to it.
unsafe fn take(e: &Engine, mut reply: Reply) -> Result<Answer, Failure> {
    let flat = if reply.vectors.is_null() || reply.n == 0 { &[][..] } else { std::slice::from_raw_parts(reply.vectors, reply.n * reply.dims) };
    let a = Answer {
        message: reply.message.to_string_lossy(),
        note: reply.note.to_string_lossy(),
        vectors: flat.chunks(reply.dims.max(1)).map(<[f32]>::to_vec).collect(),
        timings: reply.timings,
        value: reply.value,
    };
    let (code, image) = (reply.status, usize::try_from(reply.image).ok());
    (e.release)(&mut reply);
    match Status::from_code(code) {
        Status::Ok => Ok(a),
        status if a.message.is_empty() => Err(Failure { status, image, message: format!("the embedding engine failed with status {code}") }),
        status => Err(Failure { status, image, message: a.message }),
    }
}

/// Images → vectors, one per image, in order.
pub fn embed(call: &Call, images: &[&[u8]]) -> Result<Embedded, Failure> {
    let e = engine();
    let bytes: Vec<Bytes> = images.iter().map(|b| Bytes::of(b)).collect();
    let req =
        Request { settings: call.settings(), images: bytes.as_ptr(), n_images: bytes.len(), cancel: Some(interrupt_pending), cancel_ctx: std::ptr::null_mut() };
    let mut reply = Reply::empty();
    unsafe { (e.embed)(&req, &mut reply) };
    let a = unsafe { take(e, reply) }?;
    Ok(Embedded { vectors: a.vectors, timings: a.timings, note: (!a.note.is_empty()).then_some(a.note) })
}

/// The engine's libtorch smoke test (270.0 when libtorch computes).
pub fn smoke(call: &Call) -> Result<f64, Failure> {
    let e = engine();
    let mut reply = Reply::empty();
    unsafe { (e.smoke)(&call.settings(), &mut reply) };
    unsafe { take(e, reply) }.map(|a| a.value)
}

/// libtorch's threads and CUDA, as text.
pub fn info(call: &Call) -> Result<String, Failure> {
    let e = engine();
    let mut reply = Reply::empty();
    unsafe { (e.info)(&call.settings(), &mut reply) };
    unsafe { take(e, reply) }.map(|a| a.message)
}

/// Models the engine holds in this backend; 0 when it was never opened (opening it to ask would
/// map libtorch).
pub fn models_loaded() -> u32 {
    loaded().map_or(0, |e| unsafe { (e.models_loaded)() })
}
