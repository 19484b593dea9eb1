//! Settings (GUCs) of the extension.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// libtorch intra-op threads per backend. Small by default so that N connections do not start
/// N × cores OpenMP threads.
pub static THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);
/// Where models are read from. Superuser only: it decides which files the server loads.
pub static MODEL_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DEFAULT_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"fashion-vgg16"));
pub static DEVICE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"auto"));
pub static HALF_PRECISION: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static MAX_IMAGE_PIXELS: GucSetting<i32> = GucSetting::<i32>::new(40_000_000);
pub static MAX_IMAGE_BYTES: GucSetting<i32> = GucSetting::<i32>::new(50 * 1024 * 1024);

pub fn init() {
    GucRegistry::define_int_guc(
        c"visual_search.threads",
        c"libtorch intra-op threads per backend.",
        c"Each backend that runs a model uses this many threads; keep it small when many connections embed at once.",
        &THREADS,
        1,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"visual_search.model_dir",
        c"Directory of the models (<name>/manifest.json and <name>/*.safetensors).",
        c"Empty means the models installed with the extension, in the share directory's visual_search/models.",
        &MODEL_DIR,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"visual_search.default_model",
        c"Model used by image_embed when no model is named.",
        c"Do not change it under an expression index or generated column that calls image_embed without a model.",
        &DEFAULT_MODEL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"visual_search.device",
        c"Where models run: auto, cpu, cuda or cuda:N.",
        c"auto picks the first CUDA device when libtorch sees one, else the CPU.",
        &DEVICE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"visual_search.half_precision",
        c"Run models in half precision on CUDA devices.",
        c"Ignored on the CPU.",
        &HALF_PRECISION,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_image_pixels",
        c"Largest image (width × height) that image_embed decodes.",
        c"Checked from the image header before any pixel is decoded.",
        &MAX_IMAGE_PIXELS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_image_bytes",
        c"Largest encoded image, in bytes, that image_embed accepts.",
        c"",
        &MAX_IMAGE_BYTES,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The value of a string setting, or `default` when unset or empty.
pub fn string(setting: &GucSetting<Option<CString>>, default: &str) -> String {
    setting
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}
