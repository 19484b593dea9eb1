//! Settings (GUCs) of the extension.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// libtorch intra-op threads per backend. Small by default so that N connections do not start
/// N × cores OpenMP threads.
pub static THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);

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
}
