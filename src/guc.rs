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

/// vs_hnsw: the beam of a search, and how far an iterative scan may go for filtered queries.
pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(40);
pub static ITERATIVE_SCAN: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAX_SCAN_TUPLES: GucSetting<i32> = GucSetting::<i32>::new(20_000);

pub fn init() {
    GucRegistry::define_int_guc(
        c"vs_hnsw.ef_search",
        c"Candidates a vs_hnsw index scan keeps: more is slower and finds more of the true nearest rows.",
        c"",
        &EF_SEARCH,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"vs_hnsw.iterative_scan",
        c"Lets a vs_hnsw scan go on past ef_search when a WHERE clause filters rows out.",
        c"",
        &ITERATIVE_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"vs_hnsw.max_scan_tuples",
        c"Most rows an iterative vs_hnsw scan returns before it stops.",
        c"",
        &MAX_SCAN_TUPLES,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
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
