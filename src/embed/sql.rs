//! SQL entry points of the image → vector path: `image_embed` (one image or an array), the list
//! of installed models. Models are loaded lazily, once per backend, and cached.

use crate::glue::error::error;
use crate::guc;
use crate::types::datum::Vector;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use pgrx::PgSqlErrorCode::{self, *};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;
use vs_embed::decode::{DecodeError, DecodeLimits};
use vs_embed::manifest::{Manifest, ModelError};
use vs_embed::model::{parse_device, Cache, Model};
use vs_embed::preprocess::PrepError;
use vs_embed::{embed_images_timed, EmbedError, Timings};

thread_local! {
    static MODELS: RefCell<Cache> = RefCell::new(Cache::new());
    /// Images that went through the network in this backend.
    static IMAGES_EMBEDDED: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// `visual_search.model_dir`, or `<sharedir>/visual_search/models`.
pub fn model_dir() -> PathBuf {
    let set = guc::string(&guc::MODEL_DIR, "");
    if !set.is_empty() {
        return PathBuf::from(set);
    }
    let mut buf = [0 as std::ffi::c_char; pg_sys::MAXPGPATH as usize];
    unsafe { pg_sys::get_share_path(std::ptr::addr_of!(pg_sys::my_exec_path).cast(), buf.as_mut_ptr()) };
    let share = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    PathBuf::from(share).join("visual_search").join("models")
}

fn model_error(e: ModelError) -> ! {
    let code: PgSqlErrorCode = match &e {
        ModelError::BadName(_) => ERRCODE_INVALID_NAME,
        ModelError::Unknown { .. } => ERRCODE_UNDEFINED_OBJECT,
        ModelError::Manifest { .. } => ERRCODE_CONFIG_FILE_ERROR,
        ModelError::WeightsMissing(_) => ERRCODE_UNDEFINED_FILE,
        ModelError::WeightsCorrupt { .. } | ModelError::ShaMismatch { .. } => ERRCODE_DATA_CORRUPTED,
        ModelError::Device(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        ModelError::Torch(_) => ERRCODE_INTERNAL_ERROR,
        ModelError::Cancelled => cancelled(),
    };
    error(code, e.to_string())
}

fn image_error(index: Option<usize>, code: PgSqlErrorCode, msg: String) -> ! {
    match index {
        Some(i) => error(code, format!("image {} of the array: {msg}", i + 1)),
        None => error(code, msg),
    }
}

/// Where a limit applies only because a superuser's ceiling is below the role's own setting,
/// the message says so.
fn capped(setting: &pgrx::guc::GucSetting<i32>, ceiling: &pgrx::guc::GucSetting<i32>, name: &str) -> String {
    if setting.get() > ceiling.get() {
        format!(", capped by visual_search.{name}_ceiling")
    } else {
        String::new()
    }
}

fn decode_error(index: Option<usize>, e: DecodeError) -> ! {
    let (code, note) = match e {
        DecodeError::TooManyBytes { .. } => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, capped(&guc::MAX_IMAGE_BYTES, &guc::MAX_IMAGE_BYTES_CEILING, "max_image_bytes")),
        DecodeError::TooManyPixels { .. } => {
            (ERRCODE_PROGRAM_LIMIT_EXCEEDED, capped(&guc::MAX_IMAGE_PIXELS, &guc::MAX_IMAGE_PIXELS_CEILING, "max_image_pixels"))
        }
        _ => (ERRCODE_INVALID_BINARY_REPRESENTATION, String::new()),
    };
    image_error(index, code, format!("{e}{note}"))
}

fn prepare_error(index: Option<usize>, e: PrepError) -> ! {
    match e {
        PrepError::TooManyPixels { width, height, max } => image_error(
            index,
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("image resizes to {width}x{height} pixels for the model, more than visual_search.max_image_pixels ({max})"),
        ),
        PrepError::OutOfMemory { bytes } => image_error(index, ERRCODE_OUT_OF_MEMORY, format!("out of memory: {bytes} bytes for a resized image")),
        PrepError::Cancelled => cancelled(),
    }
}

/// True once a cancel, a statement timeout or a termination is pending (PostgreSQL's signal
/// handlers set these flags): asked while the pool decodes and before every layer.
fn interrupt_pending() -> bool {
    unsafe {
        std::ptr::read_volatile(std::ptr::addr_of!(pg_sys::QueryCancelPending)) != 0 || std::ptr::read_volatile(std::ptr::addr_of!(pg_sys::ProcDiePending)) != 0
    }
}

/// Work stopped for a pending interrupt: PostgreSQL raises its own error for it (57014 with the
/// cancel's or the timeout's message, or FATAL for a termination).
fn cancelled() -> ! {
    pg_sys::check_for_interrupts!();
    // Interrupts held off here: the work is abandoned all the same.
    error(ERRCODE_QUERY_CANCELED, "canceling statement due to user request")
}

/// The model `name` (or the default model) for the current device settings, loaded on first use.
pub fn model(name: Option<&str>) -> Rc<Model> {
    let name = name.map(str::to_string).unwrap_or_else(|| guc::string(&guc::DEFAULT_MODEL, "fashion-vgg16"));
    let dir = model_dir();
    let device_setting = guc::string(&guc::DEVICE, "auto");
    let device = parse_device(&device_setting).unwrap_or_else(|e| model_error(e));
    let half = guc::HALF_PRECISION.get() && device != tch::Device::Cpu;
    let key = (dir.to_string_lossy().into_owned(), name.clone(), format!("{device:?}"), half);
    if let Some(m) = MODELS.with(|c| c.borrow().get(&key).cloned()) {
        return m;
    }
    super::torch::configure_threads();
    let t = Instant::now();
    let (manifest, weights) = Manifest::load(&dir, &name).unwrap_or_else(|e| model_error(e));
    let m = Rc::new(Model::load(manifest, &weights, device, half).unwrap_or_else(|e| model_error(e)));
    debug1!(
        "visual_search: loaded model \"{name}\" from {} in {} ms: {} parameters, {:.1} MB on {device:?}{}",
        weights.display(),
        t.elapsed().as_millis(),
        m.parameters,
        m.bytes as f64 / 1e6,
        if half { " (half precision)" } else { "" }
    );
    MODELS.with(|c| c.borrow_mut().insert(key, m.clone()));
    m
}

fn limits() -> DecodeLimits {
    let (max_bytes, max_pixels) = guc::image_limits();
    DecodeLimits { max_bytes, max_pixels }
}

fn embed(images: &[&[u8]], model_name: Option<&str>, in_array: bool) -> Vec<Vec<f32>> {
    embed_timed(images, model_name, in_array).0
}

fn embed_timed(images: &[&[u8]], model_name: Option<&str>, in_array: bool) -> (Vec<Vec<f32>>, Timings) {
    let m = model(model_name);
    super::torch::configure_threads();
    match embed_images_timed(&m, images, &limits(), &crate::glue::pool(guc::threads()), &interrupt_pending) {
        Ok(v) => {
            IMAGES_EMBEDDED.with(|n| n.set(n.get() + images.len() as i64));
            v
        }
        Err(EmbedError::Decode(i, e)) => decode_error(in_array.then_some(i), e),
        Err(EmbedError::Prepare(i, e)) => prepare_error(in_array.then_some(i), e),
        Err(EmbedError::Model(e)) => model_error(e),
        Err(EmbedError::Cancelled) => cancelled(),
    }
}

/// The last image a call site embedded, and its vector.
struct LastCall {
    model: Option<String>,
    image: Vec<u8>,
    vector: Vec<f32>,
}

/// One image → one vector, remembering the last input of this call site. In
/// `ORDER BY embedding <-> image_embed($1)` under a generic plan, or with a volatile argument
/// such as pg_read_binary_file(), PostgreSQL evaluates the call once per row with the same
/// bytes; comparing bytes is microseconds where running the network is milliseconds.
fn embed_one(fcinfo: pg_sys::FunctionCallInfo, image: &[u8], model: Option<&str>) -> Vector<f32> {
    let name = model.map(str::to_string).unwrap_or_else(|| guc::string(&guc::DEFAULT_MODEL, "fashion-vgg16"));
    let model = Some(name.as_str());
    unsafe {
        let flinfo = (*fcinfo).flinfo;
        let last = (*flinfo).fn_extra as *mut LastCall;
        if let Some(l) = last.as_ref() {
            if l.image == image && l.model.as_deref() == model {
                return Vector(l.vector.clone());
            }
        }
        let vector = embed(&[image], model, false).remove(0);
        let entry = LastCall { model: model.map(str::to_string), image: image.to_vec(), vector: vector.clone() };
        match last.as_mut() {
            Some(l) => *l = entry,
            None => {
                (*flinfo).fn_extra = PgMemoryContexts::For((*flinfo).fn_mcxt).leak_and_drop_on_delete(entry).cast();
            }
        }
        Vector(vector)
    }
}

#[pg_extern(sql = false)]
fn image_embed(image: &[u8], fcinfo: pg_sys::FunctionCallInfo) -> Vector<f32> {
    embed_one(fcinfo, image, None)
}

#[pg_extern(sql = false)]
fn image_embed_model(image: &[u8], model: &str, fcinfo: pg_sys::FunctionCallInfo) -> Vector<f32> {
    embed_one(fcinfo, image, Some(model))
}

/// One forward pass for the whole array; NULL images give NULL vectors.
fn embed_array(images: Array<&[u8]>, model: Option<&str>) -> crate::types::datum::VectorArray<f32> {
    let all: Vec<Option<&[u8]>> = images.iter().collect();
    let present: Vec<&[u8]> = all.iter().flatten().copied().collect();
    let mut vecs = embed(&present, model, true).into_iter();
    crate::types::datum::VectorArray(all.iter().map(|x| x.map(|_| vecs.next().expect("one vector per image"))).collect())
}

#[pg_extern(sql = false)]
fn image_embed_array(images: Array<&[u8]>) -> crate::types::datum::VectorArray<f32> {
    embed_array(images, None)
}

#[pg_extern(sql = false)]
fn image_embed_array_model(images: Array<&[u8]>, model: &str) -> crate::types::datum::VectorArray<f32> {
    embed_array(images, Some(model))
}

/// Where the time of one batch goes: decode, preprocess, forward (milliseconds, wall clock).
/// The model is loaded first, so loading is not counted.
#[pg_extern(sql = false)]
fn embed_profile(images: Array<&[u8]>, model_name: &str) -> TableIterator<'static, (name!(stage, String), name!(ms, f64))> {
    let all: Vec<&[u8]> = images.iter().flatten().collect();
    model(Some(model_name));
    let (_, t) = embed_timed(&all, Some(model_name), true);
    TableIterator::new(vec![("decode".to_string(), t.decode_ms), ("preprocess".to_string(), t.preprocess_ms), ("forward".to_string(), t.forward_ms)])
}

/// What this backend has done: images embedded, models loaded and cached.
#[pg_extern(sql = false)]
fn backend_stats() -> TableIterator<'static, (name!(images_embedded, i64), name!(models_loaded, i32))> {
    let models = MODELS.with(|c| c.borrow().len() as i32);
    TableIterator::once((IMAGES_EMBEDDED.with(|n| n.get()), models))
}

/// Installed models: one row per folder of the model directory that holds a manifest.
// pgrx names a table function's columns in its return type: the tuple cannot be an alias.
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn list_models() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(architecture, Option<String>),
        name!(dims, Option<i32>),
        name!(pooling, Option<String>),
        name!(weights_present, bool),
        name!(problem, Option<String>),
    ),
> {
    let dir = model_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().filter(|e| e.path().join("manifest.json").is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    let rows: Vec<_> = names
        .into_iter()
        .map(|n| match Manifest::load(&dir, &n) {
            Ok((m, w)) => {
                let present = w.is_file();
                let pooling = format!("{:?}", m.output.pooling).to_lowercase();
                (n, Some(m.architecture), Some(m.dims as i32), Some(pooling), present, None)
            }
            Err(e) => (n, None, None, None, false, Some(e.to_string())),
        })
        .collect();
    TableIterator::new(rows)
}
