//! Image → vector: decode (image crate, limits) → preprocess (manifest) → model (tch) → vector.
//! Each step is one module; `sql` glues them to SQL. Everything but `sql` is free of pgrx.

pub mod decode;
pub mod manifest;
pub mod model;
pub mod preprocess;
pub mod sql;
pub mod torch;

use decode::{decode_rgb, DecodeError, DecodeLimits};
use manifest::ModelError;
use model::Model;
use rayon::prelude::*;

#[derive(Debug)]
pub enum EmbedError {
    /// The image at this position of the batch could not be used.
    Decode(usize, DecodeError),
    Model(ModelError),
}

/// A rayon pool of `threads` threads (one per distinct setting, kept for the process's life),
/// whose threads block all signals: PostgreSQL's handlers must run on the backend's own thread.
pub fn pool(threads: usize) -> &'static rayon::ThreadPool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, &'static rayon::ThreadPool>>> = OnceLock::new();
    let threads = threads.max(1);
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    pools.entry(threads).or_insert_with(|| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("visual_search-decode-{i}"))
            .start_handler(|_| unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            })
            .build()
            .expect("rayon pool");
        Box::leak(Box::new(pool))
    })
}

/// Wall-clock milliseconds of each stage of one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub forward_ms: f64,
}

/// Decodes, then preprocesses, in parallel; then runs one forward pass per group of images of the
/// same input size (all of them when the manifest crops to a fixed size).
pub fn embed_images_timed(
    model: &Model,
    images: &[&[u8]],
    lim: &DecodeLimits,
    threads: usize,
) -> Result<(Vec<Vec<f32>>, Timings), EmbedError> {
    let prep = &model.manifest.input;
    let mut t = Timings::default();
    let clock = std::time::Instant::now();
    let decoded: Vec<Result<image::RgbImage, DecodeError>> =
        pool(threads).install(|| images.par_iter().map(|b| decode_rgb(b, lim)).collect());
    let mut rgb = Vec::with_capacity(decoded.len());
    for (i, r) in decoded.into_iter().enumerate() {
        rgb.push(r.map_err(|e| EmbedError::Decode(i, e))?);
    }
    t.decode_ms = clock.elapsed().as_secs_f64() * 1e3;
    let clock = std::time::Instant::now();
    let mut inputs: Vec<(Vec<f32>, u32, u32)> =
        pool(threads).install(|| rgb.par_iter().map(|img| preprocess::to_input(img, prep)).collect());
    t.preprocess_ms = clock.elapsed().as_secs_f64() * 1e3;
    let clock = std::time::Instant::now();
    let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
    let mut sizes: Vec<(u32, u32)> = inputs.iter().map(|(_, h, w)| (*h, *w)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for (h, w) in sizes {
        let idx: Vec<usize> = (0..inputs.len()).filter(|&i| (inputs[i].1, inputs[i].2) == (h, w)).collect();
        let batch: Vec<Vec<f32>> = idx.iter().map(|&i| std::mem::take(&mut inputs[i].0)).collect();
        let vecs = model.forward(&batch, h, w).map_err(EmbedError::Model)?;
        for (i, v) in idx.into_iter().zip(vecs) {
            out[i] = Some(v);
        }
    }
    t.forward_ms = clock.elapsed().as_secs_f64() * 1e3;
    Ok((out.into_iter().map(|v| v.expect("every image was embedded")).collect(), t))
}

pub fn embed_images(model: &Model, images: &[&[u8]], lim: &DecodeLimits, threads: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    embed_images_timed(model, images, lim, threads).map(|(v, _)| v)
}

#[cfg(test)]
mod golden_tests;
