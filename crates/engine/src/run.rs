//! The engine's calls over `vs_embed`: settings in, vectors or a status out. Models are loaded on
//! first use and cached for the life of the process (building the network costs ≈ 1.2 s).

use crate::Answer;
use std::cell::RefCell;
use std::ffi::c_void;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;
use tch::{nn, nn::Module, Device, Kind, Tensor};
use vs_embed::decode::{DecodeError, DecodeLimits};
use vs_embed::manifest::{Manifest, ModelError};
use vs_embed::model::{parse_device, Cache, Model};
use vs_embed::preprocess::PrepError;
use vs_embed::{embed_images_timed, EmbedError};
use vs_engine_api::abi::{CancelFn, Request, Settings, Status};

thread_local! {
    static MODELS: RefCell<Cache> = RefCell::new(Cache::new());
}

/// The settings of one call, read out of the caller's memory.
struct Call {
    dir: PathBuf,
    model: String,
    device: String,
    half: bool,
    threads: usize,
    limits: DecodeLimits,
}

unsafe fn call(s: &Settings) -> Call {
    Call {
        dir: PathBuf::from(s.model_dir.to_string_lossy()),
        model: s.model.to_string_lossy(),
        device: s.device.to_string_lossy(),
        half: s.half_precision,
        threads: s.threads.max(1) as usize,
        limits: DecodeLimits { max_bytes: usize::try_from(s.max_image_bytes).unwrap_or(usize::MAX), max_pixels: s.max_image_pixels },
    }
}

fn threads(c: &Call) {
    tch::set_num_threads(c.threads as i32);
}

/// The model of `c`, loaded on first use; `note` says so when this call loaded it.
fn model(c: &Call, note: &mut String) -> Result<Rc<Model>, ModelError> {
    let device = parse_device(&c.device)?;
    let half = c.half && device != Device::Cpu;
    let key = (c.dir.to_string_lossy().into_owned(), c.model.clone(), format!("{device:?}"), half);
    if let Some(m) = MODELS.with(|m| m.borrow().get(&key).cloned()) {
        return Ok(m);
    }
    threads(c);
    let t = Instant::now();
    let (manifest, weights) = Manifest::load(&c.dir, &c.model)?;
    let m = Rc::new(Model::load(manifest, &weights, device, half)?);
    *note = format!(
        "loaded model \"{}\" from {} in {} ms: {} parameters, {:.1} MB on {device:?}{}",
        c.model,
        weights.display(),
        t.elapsed().as_millis(),
        m.parameters,
        m.bytes as f64 / 1e6,
        if half { " (half precision)" } else { "" }
    );
    MODELS.with(|cache| cache.borrow_mut().insert(key, m.clone()));
    Ok(m)
}

fn model_error(e: ModelError) -> Answer {
    let status = match &e {
        ModelError::BadName(_) => Status::ModelBadName,
        ModelError::Unknown { .. } => Status::ModelUnknown,
        ModelError::Manifest { .. } => Status::ModelManifest,
        ModelError::WeightsMissing(_) => Status::WeightsMissing,
        ModelError::WeightsCorrupt { .. } | ModelError::ShaMismatch { .. } => Status::WeightsCorrupt,
        ModelError::Device(_) => Status::Device,
        ModelError::Torch(_) => Status::Torch,
        ModelError::Cancelled => Status::Cancelled,
    };
    Answer::error(status, None, e.to_string())
}

fn decode_error(i: usize, e: DecodeError) -> Answer {
    let status = match e {
        DecodeError::TooManyBytes { .. } => Status::ImageTooManyBytes,
        DecodeError::TooManyPixels { .. } => Status::ImageTooManyPixels,
        _ => Status::ImageInvalid,
    };
    Answer::error(status, Some(i), e.to_string())
}

fn prepare_error(i: usize, e: PrepError) -> Answer {
    match e {
        PrepError::TooManyPixels { width, height, max } => Answer::error(
            Status::ResizedTooLarge,
            Some(i),
            format!("image resizes to {width}x{height} pixels for the model, more than visual_search.max_image_pixels ({max})"),
        ),
        PrepError::OutOfMemory { bytes } => Answer::error(Status::OutOfMemory, Some(i), format!("out of memory: {bytes} bytes for a resized image")),
        PrepError::Cancelled => Answer::error(Status::Cancelled, None, "cancelled"),
    }
}

/// The caller's cancel callback as the `Cancel` vs_embed asks. vs_embed asks it on the calling
/// thread only (its pool tasks get a flag of their own).
struct Asker(Option<CancelFn>, *mut c_void);
unsafe impl Sync for Asker {}

impl Asker {
    fn ask(&self) -> bool {
        self.0.is_some_and(|f| unsafe { f(self.1) })
    }
}

pub unsafe fn embed(r: &Request) -> Answer {
    if r.images.is_null() && r.n_images > 0 {
        return Answer::error(Status::Internal, None, "no images");
    }
    let c = call(&r.settings);
    let images: Vec<&[u8]> = (0..r.n_images).map(|i| (*r.images.add(i)).as_slice()).collect();
    let asker = Asker(r.cancel, r.cancel_ctx);
    let cancel = || asker.ask();
    let mut note = String::new();
    let m = match model(&c, &mut note) {
        Ok(m) => m,
        Err(e) => return model_error(e),
    };
    threads(&c);
    let mut a = match embed_images_timed(&m, &images, &c.limits, &crate::pool::pool(c.threads), &cancel) {
        Ok((vectors, t)) => {
            Answer { vectors: vectors.concat(), dims: m.manifest.dims, timings: [t.decode_ms, t.preprocess_ms, t.forward_ms], ..Default::default() }
        }
        Err(EmbedError::Decode(i, e)) => decode_error(i, e),
        Err(EmbedError::Prepare(i, e)) => prepare_error(i, e),
        Err(EmbedError::Model(e)) => model_error(e),
        Err(EmbedError::Cancelled) => Answer::error(Status::Cancelled, None, "cancelled"),
    };
    a.note = note;
    a
}

/// Runs a fixed 3×3 convolution on a ramp image and returns the sum of the output: a check that
/// libtorch is linked and computes in this process. Each output pixel is the sum of its 3×3
/// neighbourhood, so a 4×4 ramp 0..15 gives 45 + 54 + 81 + 90.
pub unsafe fn smoke(s: &Settings) -> f64 {
    threads(&call(s));
    let _guard = tch::no_grad_guard();
    let vs = nn::VarStore::new(Device::Cpu);
    let conv = nn::conv2d(vs.root(), 1, 1, 3, nn::ConvConfig { bias: false, ..Default::default() });
    tch::no_grad(|| {
        let mut w = conv.ws.shallow_clone();
        let _ = w.fill_(1.0);
    });
    let input = Tensor::arange(16, (Kind::Float, Device::Cpu)).reshape([1, 1, 4, 4]);
    conv.forward(&input).sum(Kind::Double).double_value(&[])
}

pub unsafe fn info(s: &Settings) -> String {
    threads(&call(s));
    let problem = vs_embed::cuda::problem().map(|p| format!(" ({p})")).unwrap_or_default();
    format!("libtorch threads={} cuda={}{problem}", tch::get_num_threads(), vs_embed::cuda::available())
}

pub fn models_loaded() -> u32 {
    MODELS.with(|c| c.borrow().len() as u32)
}
