//! Settings (GUCs) of the extension.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::PostgresGucEnum;
use std::ffi::CString;

/// Where image_embed runs its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum EmbedIn {
    /// In the server's one embedding service, which batches the images of all connections.
    #[name = c"service"]
    Service,
    /// In the calling backend, which opens the engine library (libtorch) itself.
    #[name = c"backend"]
    Backend,
}

/// How a vs_hnsw scan goes on past ef_search (pgvector's hnsw.iterative_scan, by its names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PostgresGucEnum)]
pub enum IterativeScan {
    #[name = c"off"]
    Off,
    /// Rows a later round finds nearer than rows already returned are returned too.
    #[name = c"relaxed_order"]
    RelaxedOrder,
    /// Distances never decrease: such rows are skipped.
    #[name = c"strict_order"]
    StrictOrder,
    /// Before 0.6.0 the setting was a boolean: its spellings of true are relaxed_order, of
    /// false off (a configuration file that still says so keeps its meaning).
    #[name = c"on"]
    #[hidden = true]
    On,
    #[name = c"true"]
    #[hidden = true]
    True,
    #[name = c"yes"]
    #[hidden = true]
    Yes,
    #[name = c"1"]
    #[hidden = true]
    One,
    #[name = c"false"]
    #[hidden = true]
    False,
    #[name = c"no"]
    #[hidden = true]
    No,
    #[name = c"0"]
    #[hidden = true]
    Zero,
}

impl IterativeScan {
    /// The setting now, with the boolean spellings read as their modes.
    pub fn get() -> IterativeScan {
        match ITERATIVE_SCAN.get() {
            IterativeScan::On | IterativeScan::True | IterativeScan::Yes | IterativeScan::One => IterativeScan::RelaxedOrder,
            IterativeScan::False | IterativeScan::No | IterativeScan::Zero => IterativeScan::Off,
            mode => mode,
        }
    }
}

/// Superuser only: in a backend, a role's images would run with the backend's own model copy,
/// threads and (on a GPU) CUDA context, the cost the service exists to share.
pub static EMBED_IN: GucSetting<EmbedIn> = GucSetting::<EmbedIn>::new(EmbedIn::Service);
/// The service's batching and threads: read by its background worker from the server's
/// configuration (postgresql.conf, ALTER SYSTEM), applied on reload.
pub static SERVICE_MAX_BATCH: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static SERVICE_MAX_WAIT: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static SERVICE_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static SERVICE_BATCHERS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// libtorch intra-op threads per backend. Small by default so that N connections do not start
/// N × cores OpenMP threads.
pub static THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);
/// What a superuser allows `threads` to be: any role may set `threads`, and a backend runs
/// `min(threads, max_threads)`.
pub static MAX_THREADS: GucSetting<i32> = GucSetting::<i32>::new(4);
/// Where models are read from. Superuser only: it decides which files the server loads.
pub static MODEL_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// The engine library a backend opens when it first embeds an image. Superuser only: it decides
/// which code the server loads.
pub static ENGINE_LIBRARY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"$libdir/visual_search_engine.so"));
pub static DEFAULT_MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"fashion-vgg16"));
pub static DEVICE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"auto"));
pub static HALF_PRECISION: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static MAX_IMAGE_PIXELS: GucSetting<i32> = GucSetting::<i32>::new(40_000_000);
pub static MAX_IMAGE_BYTES: GucSetting<i32> = GucSetting::<i32>::new(50 * 1024 * 1024);
/// Superuser-only ceilings of the two image limits above: a role may lower its limits, and the
/// smaller of setting and ceiling applies (raising max_image_pixels let an ordinary role make a
/// backend ask for 51 GB).
pub static MAX_IMAGE_PIXELS_CEILING: GucSetting<i32> = GucSetting::<i32>::new(40_000_000);
pub static MAX_IMAGE_BYTES_CEILING: GucSetting<i32> = GucSetting::<i32>::new(50 * 1024 * 1024);
/// Superuser only: images of one array call. Each costs bookkeeping before any is decoded, even
/// an empty one: 80 million of them in a 320 MB array asked for 1 GiB at once.
pub static MAX_IMAGES_PER_CALL: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// vs_hnsw: the beam of a search, and how far an iterative scan may go for filtered queries.
pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(40);
/// relaxed_order, not pgvector's off: a filtered query then returns its LIMIT rows when they
/// exist, as vs_hnsw always did.
pub static ITERATIVE_SCAN: GucSetting<IterativeScan> = GucSetting::<IterativeScan>::new(IterativeScan::RelaxedOrder);
pub static SCAN_MEM_MULTIPLIER: GucSetting<f64> = GucSetting::<f64>::new(1.0);
pub static MAX_SCAN_TUPLES: GucSetting<i32> = GucSetting::<i32>::new(20_000);
pub static RERANK: GucSetting<i32> = GucSetting::<i32>::new(0);

pub fn init() {
    GucRegistry::define_enum_guc(
        c"visual_search.embed_in",
        c"Where image_embed runs models: service (one process for the server, batching all connections) or backend (each backend loads its own).",
        c"",
        &EMBED_IN,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.service_max_batch",
        c"Most images the embedding service puts into one batch from the requests of several connections.",
        c"One request with more images runs alone.",
        &SERVICE_MAX_BATCH,
        1,
        4096,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.service_max_wait",
        c"Longest the embedding service holds a request for others to share its batch.",
        c"",
        &SERVICE_MAX_WAIT,
        0,
        1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"visual_search.service_threads",
        c"Threads the embedding service runs models and image decoding on; 0: one per CPU core.",
        c"",
        &SERVICE_THREADS,
        0,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.service_batchers",
        c"Batches the embedding service runs at once, each on service_threads / service_batchers threads; 0: one per thread.",
        c"On the CPU one thread a batch never waits for a busy core at a parallel region; with a GPU, one or two batchers of several threads each feed it larger batches.",
        &SERVICE_BATCHERS,
        0,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
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
    GucRegistry::define_enum_guc(
        c"vs_hnsw.iterative_scan",
        c"Lets a vs_hnsw scan go on past ef_search when a WHERE clause filters rows out: off, relaxed_order or strict_order.",
        c"strict_order skips rows a later round finds nearer than rows already returned, so that distances never decrease.",
        &ITERATIVE_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"vs_hnsw.scan_mem_multiplier",
        c"Memory an iterative vs_hnsw scan may hold, as a multiple of work_mem, before it stops.",
        c"",
        &SCAN_MEM_MULTIPLIER,
        1.0,
        1000.0,
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
        c"vs_hnsw.rerank",
        c"Candidates a scan of a quantized vs_hnsw index reads from the table at a time to order them by exact distance; 0: the index's rerank option, else its whole beam (vs_hnsw.ef_search).",
        c"A scan returns its candidates, best estimates first, in groups of this many, each in exact distance order. Smaller groups read fewer rows for a small LIMIT; a LIMIT beyond the group may miss rows of the next one.",
        &RERANK,
        0,
        10_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.threads",
        c"libtorch intra-op threads per backend.",
        c"Each backend that runs a model uses this many threads, at most visual_search.max_threads; keep it small when many connections embed at once.",
        &THREADS,
        1,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_threads",
        c"Most threads a backend runs models and image decoding on, whatever visual_search.threads says.",
        c"",
        &MAX_THREADS,
        1,
        64,
        GucContext::Suset,
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
        c"visual_search.engine_library",
        c"The embedding engine library (libtorch and the image decoders), opened when a backend first embeds an image.",
        c"$libdir is PostgreSQL's package library directory. A backend that has opened the engine keeps it.",
        &ENGINE_LIBRARY,
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
        c"Checked from the image header before any pixel is decoded, and on the resized image; at most visual_search.max_image_pixels_ceiling.",
        &MAX_IMAGE_PIXELS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_image_bytes",
        c"Largest encoded image, in bytes, that image_embed accepts.",
        c"At most visual_search.max_image_bytes_ceiling.",
        &MAX_IMAGE_BYTES,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_images_per_call",
        c"Most images one call of image_embed or embed_profile takes in its array.",
        c"",
        &MAX_IMAGES_PER_CALL,
        1,
        vs_engine_api::wire::MAX_IMAGES as i32,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_image_pixels_ceiling",
        c"Largest visual_search.max_image_pixels that applies, whatever a role sets.",
        c"Decoding and resizing take memory in proportion to it (about 12 bytes a pixel at most).",
        &MAX_IMAGE_PIXELS_CEILING,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"visual_search.max_image_bytes_ceiling",
        c"Largest visual_search.max_image_bytes that applies, whatever a role sets.",
        c"",
        &MAX_IMAGE_BYTES_CEILING,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The value of a string setting, or `default` when unset or empty.
pub fn string(setting: &GucSetting<Option<CString>>, default: &str) -> String {
    setting.get().and_then(|s| s.into_string().ok()).filter(|s| !s.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Threads a backend uses: `threads`, capped by the superuser's `max_threads`.
pub fn threads() -> usize {
    THREADS.get().min(MAX_THREADS.get()).max(1) as usize
}

/// (max bytes, max pixels) of an image: each setting capped by its superuser-set ceiling.
pub fn image_limits() -> (usize, u64) {
    let bytes = MAX_IMAGE_BYTES.get().min(MAX_IMAGE_BYTES_CEILING.get());
    let pixels = MAX_IMAGE_PIXELS.get().min(MAX_IMAGE_PIXELS_CEILING.get());
    (bytes as usize, pixels as u64)
}

/// work_mem in bytes.
pub fn work_mem_bytes() -> usize {
    unsafe { pg_sys::work_mem as usize * 1024 }
}
