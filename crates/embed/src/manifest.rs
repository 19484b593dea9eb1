//! The model manifest, which lives in `vs_engine_api` so that the extension's main library can
//! list models without linking this crate.

pub use vs_engine_api::manifest::*;
