//! libtorch checks, run by the engine library in this backend (opening it on first use).

use super::engine;
use crate::glue::error;
use pgrx::prelude::*;

/// 270.0 when libtorch computes inside the server: a fixed 3×3 convolution on a 4×4 ramp (the
/// regression test derives the value by hand).
#[pg_extern(sql = false)]
fn torch_smoke() -> f64 {
    engine::smoke(&super::sql::call(None)).unwrap_or_else(|f| error::engine(f.status, f.image, &f.message, false))
}

#[pg_extern(sql = false)]
fn torch_info() -> String {
    engine::info(&super::sql::call(None)).unwrap_or_else(|f| error::engine(f.status, f.image, &f.message, false))
}
