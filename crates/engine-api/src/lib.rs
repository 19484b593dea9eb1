//! The embedding engine as the extension's main library sees it, without linking it: the model
//! manifests (`visual_search.models()` lists them in any backend) and the C ABI of the engine
//! library (`crates/engine`, the only one that links libtorch and the image decoders), how it is
//! opened, and what backends and the embedding service say over its socket.

pub mod abi;
pub mod load;
pub mod manifest;
pub mod wire;
