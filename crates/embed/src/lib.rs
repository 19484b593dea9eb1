//! Image → vector: decode (image crate, limits) → preprocess (manifest) → model (tch) → vector.
//! Each step is one module; the extension's `embed` glues them to SQL.

pub mod conv;
pub mod cuda;
pub mod decode;
mod efficientnet;
pub mod jpeg;
pub mod manifest;
pub mod model;
pub mod preprocess;
pub mod tasks;

use decode::{decode_rgb, DecodeError, DecodeLimits};
use manifest::ModelError;
use model::Model;
use preprocess::{Cancel, PrepError};

#[derive(Debug)]
pub enum EmbedError {
    /// The image at this position of the batch could not be used.
    Decode(usize, DecodeError),
    /// The image at this position could not be resized for the model.
    Prepare(usize, PrepError),
    Model(ModelError),
    /// `Cancel` said so: the caller turns this into PostgreSQL's own cancel or timeout error.
    Cancelled,
}

/// Milliseconds of each stage of one call: decode and preprocess summed over images (they run
/// on several threads at once), forward wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub forward_ms: f64,
}

/// Images decoded at once, and encoded bytes copied for them: memory is bounded by a chunk, not
/// by the array (30 large PNGs in one array used to be decoded together: 3.6 GB).
const CHUNK: usize = 32;
const CHUNK_BYTES: usize = 64 << 20;

/// Network input pixels in one forward pass on the CPU: one 224 × 224 image (49 of the shipped
/// model's 32²). Passes of four made the service's working memory grow with its queue (+134 MB
/// from 1 to 16 VGG16 clients) and no image faster (make bench-service: 4.67 against the
/// backends' 4.98 images/s then, 5.87 against 5.62 with one); a small pass also keeps a layer
/// well inside the 200 ms a cancel may wait (VGG16's widest layer is ~12 % of its time).
const PASS_PIXELS: usize = 224 * 224;
/// On a GPU a pass of 16 full-size images is milliseconds, and every pass is padded to this
/// size (see `Model::forward`).
const PASS_PIXELS_CUDA: usize = 16 * 224 * 224;

type Prepared = ((Vec<f32>, u32, u32), f64, f64);

/// One image decoded and preprocessed in one task, so that its full-size pixels are freed before
/// the next image of the thread is decoded. Returns the input and the two stages' milliseconds.
fn prepare(bytes: &[u8], prep: &preprocess::Preprocess, lim: &DecodeLimits, cancel: Cancel) -> Result<Prepared, EmbedError> {
    if cancel() {
        return Err(EmbedError::Cancelled);
    }
    let clock = std::time::Instant::now();
    let rgb = decode_rgb(bytes, lim).map_err(|e| EmbedError::Decode(0, e))?;
    let decoded = clock.elapsed().as_secs_f64() * 1e3;
    let input = preprocess::to_input(&rgb, prep, lim.max_pixels, cancel).map_err(|e| match e {
        PrepError::Cancelled => EmbedError::Cancelled,
        e => EmbedError::Prepare(0, e),
    })?;
    Ok((input, decoded, clock.elapsed().as_secs_f64() * 1e3 - decoded))
}

/// The length of the next chunk of `images` (not empty): at most CHUNK images and, past the
/// first, CHUNK_BYTES bytes.
fn next_chunk(images: &[&[u8]]) -> usize {
    let mut bytes = 0;
    let n = images.iter().take(CHUNK).take_while(|b| {
        bytes += b.len();
        bytes <= CHUNK_BYTES
    });
    n.count().max(1)
}

/// Decodes and preprocesses a chunk at a time on the pool, then runs forward passes of at most
/// `PASS_PIXELS` per group of images of the same input size. `cancel` is asked every 10 ms while
/// the pool decodes (a decoder call cannot be interrupted: a 1 × 40,000,000 PNG takes seconds,
/// so the call leaves it to finish in the background), and between passes and layers.
pub fn embed_images_timed(
    model: &Model,
    images: &[&[u8]],
    lim: &DecodeLimits,
    pool: &rayon::ThreadPool,
    cancel: Cancel,
) -> Result<(Vec<Vec<f32>>, Timings), EmbedError> {
    let mut t = Timings::default();
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(images.len());
    let mut rest = images;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(next_chunk(rest));
        let tasks = chunk.iter().map(|b| {
            let (bytes, prep, lim) = (b.to_vec(), model.manifest.input.clone(), *lim);
            move |stop: Cancel| prepare(&bytes, &prep, &lim, stop)
        });
        let prepared = tasks::run(pool, tasks.collect(), cancel).ok_or(EmbedError::Cancelled)?;
        let mut inputs = Vec::with_capacity(chunk.len());
        for (i, r) in prepared.into_iter().enumerate() {
            let at = out.len() + i;
            let (input, d, p) = r.map_err(|e| match e {
                EmbedError::Decode(_, e) => EmbedError::Decode(at, e),
                EmbedError::Prepare(_, e) => EmbedError::Prepare(at, e),
                e => e,
            })?;
            t.decode_ms += d;
            t.preprocess_ms += p;
            inputs.push(input);
        }
        let clock = std::time::Instant::now();
        out.extend(forward_grouped(model, inputs, cancel)?);
        t.forward_ms += clock.elapsed().as_secs_f64() * 1e3;
        rest = after;
    }
    Ok((out, t))
}

/// Forward passes over `inputs`, grouped by input size (one group when the manifest crops to a
/// fixed size); vectors in the order of `inputs`.
fn forward_grouped(model: &Model, mut inputs: Vec<(Vec<f32>, u32, u32)>, cancel: Cancel) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
    let mut sizes: Vec<(u32, u32)> = inputs.iter().map(|(_, h, w)| (*h, *w)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for (h, w) in sizes {
        let idx: Vec<usize> = (0..inputs.len()).filter(|&i| (inputs[i].1, inputs[i].2) == (h, w)).collect();
        let pixels = if model.device.is_cuda() { PASS_PIXELS_CUDA } else { PASS_PIXELS };
        let per_pass = (pixels / (h as usize * w as usize).max(1)).clamp(1, 256);
        let batch: Vec<Vec<f32>> = idx.iter().map(|&i| std::mem::take(&mut inputs[i].0)).collect();
        let vecs = model.forward(&batch, h, w, per_pass, cancel).map_err(|e| match e {
            ModelError::Cancelled => EmbedError::Cancelled,
            e => EmbedError::Model(e),
        })?;
        for (&i, v) in idx.iter().zip(vecs) {
            out[i] = Some(v);
        }
    }
    Ok(out.into_iter().map(|v| v.expect("every image was embedded")).collect())
}

/// `embed_images_timed` on a pool of its own, never cancelled: for tools and tests.
pub fn embed_images(model: &Model, images: &[&[u8]], lim: &DecodeLimits, threads: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let pool = tasks::pool_builder(threads).build().expect("a thread pool");
    embed_images_timed(model, images, lim, &pool, &|| false).map(|(v, _)| v)
}

#[cfg(test)]
mod efficientnet_tests;
#[cfg(test)]
mod golden_tests;
