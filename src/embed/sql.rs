//! SQL entry points of the image → vector path: `image_embed` (one image or an array), the list
//! of installed models. The work is the engine library's (`engine`), opened on the first call;
//! it loads each model once per backend and caches it. Listing models reads only manifests.

use super::engine::{self, Call};
use crate::glue::error;
use crate::guc;
use crate::types::datum::Vector;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::cell::Cell;
use std::path::PathBuf;
use vs_engine_api::manifest::Manifest;

thread_local! {
    /// Images that went through the network in this backend.
    static IMAGES_EMBEDDED: Cell<i64> = const { Cell::new(0) };
}

/// `visual_search.model_dir`, or `<sharedir>/visual_search/models`.
pub fn model_dir() -> PathBuf {
    let set = guc::string(&guc::MODEL_DIR, "");
    if !set.is_empty() {
        return PathBuf::from(set);
    }
    let share = crate::glue::paths::share();
    PathBuf::from(share).join("visual_search").join("models")
}

fn model_name(model: Option<&str>) -> String {
    model.map(str::to_string).unwrap_or_else(|| guc::string(&guc::DEFAULT_MODEL, "fashion-vgg16"))
}

/// This backend's settings for a call of the engine with `model` (or the default model).
pub fn call(model: Option<&str>) -> Call {
    Call::new(model_dir().to_string_lossy().into_owned(), model_name(model))
}

fn embed(images: &[&[u8]], model_name: Option<&str>, in_array: bool) -> Vec<Vec<f32>> {
    embed_timed(images, model_name, in_array).0
}

/// Vectors and the milliseconds of decode, preprocess and forward (model loading not counted).
fn embed_timed(images: &[&[u8]], model_name: Option<&str>, in_array: bool) -> (Vec<Vec<f32>>, [f64; 3]) {
    let call = call(model_name);
    let done = match guc::EMBED_IN.get() {
        guc::EmbedIn::Service => crate::service::client::embed(&call, images),
        guc::EmbedIn::Backend => engine::embed(&call, images),
    };
    match done {
        Ok(e) => {
            if let Some(note) = e.note {
                debug1!("visual_search: {note}");
            }
            IMAGES_EMBEDDED.with(|n| n.set(n.get() + images.len() as i64));
            (e.vectors, e.timings)
        }
        Err(f) => error::engine(f.status, f.image, &f.message, in_array),
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
    let name = model_name(model);
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
/// An array of more than `max_images_per_call` images is refused before anything is collected.
fn check_count(n: usize) {
    let max = guc::MAX_IMAGES_PER_CALL.get() as usize;
    if n > max {
        error::error(
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("an array of {n} images is more than visual_search.max_images_per_call ({max})"),
        );
    }
}

fn embed_array(images: Array<&[u8]>, model: Option<&str>) -> crate::types::datum::VectorArray<f32> {
    check_count(images.len());
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
    check_count(images.len());
    let all: Vec<&[u8]> = images.iter().flatten().collect();
    let (_, t) = embed_timed(&all, Some(model_name), true);
    TableIterator::new(vec![("decode".to_string(), t[0]), ("preprocess".to_string(), t[1]), ("forward".to_string(), t[2])])
}

/// What this backend has done: images embedded, models loaded and cached.
#[pg_extern(sql = false)]
fn backend_stats() -> TableIterator<'static, (name!(images_embedded, i64), name!(models_loaded, i32))> {
    let models = engine::models_loaded() as i32;
    TableIterator::once((IMAGES_EMBEDDED.with(|n| n.get()), models))
}

type ModelRow = (String, Option<String>, Option<i32>, Option<i32>, Option<String>, Option<String>, Option<String>, bool, Option<String>);

/// Installed models: one row per folder of the model directory that holds a manifest. A folder
/// whose manifest cannot be used has only its name and the problem.
fn model_rows() -> Vec<ModelRow> {
    let dir = model_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().filter(|e| e.path().join("manifest.json").is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    let known = |s: String| (!s.is_empty()).then_some(s);
    names
        .into_iter()
        .map(|n| match Manifest::load(&dir, &n) {
            Ok((m, w)) => {
                let present = w.is_file();
                let pooling = format!("{:?}", m.output.pooling).to_lowercase();
                let side = m.input.crop.or(m.input.resize).map(|s| s as i32);
                (n, Some(m.architecture), side, Some(m.dims as i32), Some(pooling), known(m.licence), known(m.source), present, None)
            }
            Err(e) => (n, None, None, None, None, None, None, false, Some(e.to_string())),
        })
        .collect()
}

/// visual_search.models() since 0.5.0.
// pgrx names a table function's columns in its return type: the tuple cannot be an alias.
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn list_models_v5() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(architecture, Option<String>),
        name!(input_size, Option<i32>),
        name!(dims, Option<i32>),
        name!(pooling, Option<String>),
        name!(licence, Option<String>),
        name!(source, Option<String>),
        name!(weights_present, bool),
        name!(problem, Option<String>),
    ),
> {
    TableIterator::new(model_rows())
}

/// visual_search.models() as 0.4.0 and earlier declare it (six columns): a database whose
/// extension is not updated yet still calls this symbol, and a row of another shape would be
/// read as the wrong types (a crash).
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
    TableIterator::new(model_rows().into_iter().map(|(n, a, _, d, p, _, _, w, e)| (n, a, d, p, w, e)))
}
