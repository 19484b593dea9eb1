//! The C ABI of the engine library (`visual_search_engine.so`, built from `crates/engine`).
//!
//! One symbol, [`ENTRY`], returns a table of plain C functions. Everything crosses as pointers
//! and lengths; what the engine returns is the engine's until the caller hands the [`Reply`] back
//! to `release`. No call unwinds: the engine catches its panics and returns [`Status::Internal`].
//! A caller (a PostgreSQL backend today, an embedding service later) reads its own settings and
//! passes them in [`Settings`] with every call.

use std::ffi::{c_void, CStr};

/// The entry point's name; its type is [`EntryFn`].
pub const ENTRY: &CStr = c"visual_search_engine_v1";
/// Bumped whenever a struct or function below changes; the caller refuses another.
pub const VERSION: u32 = 1;

pub type EntryFn = unsafe extern "C" fn() -> *const Engine;

/// Bytes lent for the duration of one call (a null pointer with length 0 is empty).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl Bytes {
    pub fn of(s: &[u8]) -> Bytes {
        Bytes { ptr: s.as_ptr(), len: s.len() }
    }

    pub const EMPTY: Bytes = Bytes { ptr: std::ptr::null(), len: 0 };

    /// # Safety
    /// `ptr` must point to `len` readable bytes for `'a` (or be null with `len` 0).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }

    /// # Safety
    /// As [`Bytes::as_slice`].
    pub unsafe fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_slice()).into_owned()
    }
}

/// Asked on the calling thread while the engine works (every 10 ms while images decode, before
/// every layer of a forward pass); true once the call should stop. It must not unwind or
/// longjmp: a PostgreSQL backend only reads its interrupt flags in it.
pub type CancelFn = unsafe extern "C" fn(ctx: *mut c_void) -> bool;

/// The caller's settings, read afresh for every call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Folder of `<name>/manifest.json` and the weights.
    pub model_dir: Bytes,
    pub model: Bytes,
    /// "auto" | "cpu" | "cuda" | "cuda:N".
    pub device: Bytes,
    /// f16 on CUDA devices; ignored on the CPU.
    pub half_precision: bool,
    /// libtorch intra-op threads and image-decoding threads.
    pub threads: u32,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
}

#[repr(C)]
#[derive(Debug)]
pub struct Request {
    pub settings: Settings,
    pub images: *const Bytes,
    pub n_images: usize,
    pub cancel: Option<CancelFn>,
    pub cancel_ctx: *mut c_void,
}

/// What a call gave back. Filled by the engine, the engine's until `release`.
#[repr(C)]
#[derive(Debug)]
pub struct Reply {
    /// A [`Status`] code.
    pub status: i32,
    /// The image of the batch an image error is about, or -1.
    pub image: i64,
    /// The error's text (UTF-8), or `info`'s answer.
    pub message: Bytes,
    /// What the caller may log at DEBUG1 (a model loaded, and how long it took), or empty.
    pub note: Bytes,
    /// `n × dims` floats, image after image.
    pub vectors: *const f32,
    pub n: usize,
    pub dims: usize,
    /// Milliseconds of decode, preprocess, forward (model loading not counted).
    pub timings: [f64; 3],
    /// `smoke`'s answer.
    pub value: f64,
    /// The engine's; `release` frees through it.
    pub owner: *mut c_void,
}

impl Reply {
    pub fn empty() -> Reply {
        Reply {
            status: Status::Internal as i32,
            image: -1,
            message: Bytes::EMPTY,
            note: Bytes::EMPTY,
            vectors: std::ptr::null(),
            n: 0,
            dims: 0,
            timings: [0.0; 3],
            value: 0.0,
            owner: std::ptr::null_mut(),
        }
    }
}

/// The engine's functions. Each fills the `Reply` it is given, which must then go to `release`.
#[repr(C)]
pub struct Engine {
    /// [`VERSION`] of the library that filled this table.
    pub version: u32,
    /// Images → vectors with the model of `settings` (loaded on first use, cached per process).
    pub embed: unsafe extern "C" fn(request: *const Request, reply: *mut Reply),
    /// A fixed 3×3 convolution on a 4×4 ramp (the sum of its output, 270, in `value`): libtorch
    /// computes in this process.
    pub smoke: unsafe extern "C" fn(settings: *const Settings, reply: *mut Reply),
    /// libtorch's thread count and whether it sees CUDA, as text in `message`.
    pub info: unsafe extern "C" fn(settings: *const Settings, reply: *mut Reply),
    /// Models loaded and cached in this process.
    pub models_loaded: unsafe extern "C" fn() -> u32,
    pub release: unsafe extern "C" fn(reply: *mut Reply),
}

/// The message of an image over `visual_search.max_image_bytes`: the decoder's, and the
/// service client's, which refuses it before it is queued.
pub fn too_many_bytes(bytes: usize, max: usize) -> String {
    format!("image is {bytes} bytes, more than visual_search.max_image_bytes ({max})")
}

/// Why a call failed. Codes are stable across versions of the library.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// The cancel callback said stop.
    Cancelled = 1,
    /// A panic inside the engine, or a request it could not read.
    Internal = 2,
    ImageTooManyBytes = 10,
    ImageTooManyPixels = 11,
    /// Empty, of an unknown format, or undecodable.
    ImageInvalid = 12,
    /// The image resizes to more pixels than the limit allows.
    ResizedTooLarge = 13,
    OutOfMemory = 14,
    ModelBadName = 20,
    ModelUnknown = 21,
    ModelManifest = 22,
    WeightsMissing = 23,
    /// Unreadable weights, or a sha256 that is not the manifest's.
    WeightsCorrupt = 24,
    Device = 25,
    Torch = 26,
    /// The embedding service found no engine library at its path.
    EngineMissing = 30,
    /// The embedding service could not open its engine library (libtorch missing, another
    /// version of the interface).
    EngineUnusable = 31,
    /// The embedding service ended while it held the request (killed, or libtorch aborted).
    ServiceLost = 32,
    /// The embedding service could not be started or reached.
    ServiceUnavailable = 33,
}

impl Status {
    const ALL: [Status; 19] = [
        Status::Ok,
        Status::Cancelled,
        Status::Internal,
        Status::ImageTooManyBytes,
        Status::ImageTooManyPixels,
        Status::ImageInvalid,
        Status::ResizedTooLarge,
        Status::OutOfMemory,
        Status::ModelBadName,
        Status::ModelUnknown,
        Status::ModelManifest,
        Status::WeightsMissing,
        Status::WeightsCorrupt,
        Status::Device,
        Status::Torch,
        Status::EngineMissing,
        Status::EngineUnusable,
        Status::ServiceLost,
        Status::ServiceUnavailable,
    ];

    /// The status of a code; a code this side does not know is `Internal`.
    pub fn from_code(code: i32) -> Status {
        Status::ALL.into_iter().find(|s| *s as i32 == code).unwrap_or(Status::Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_internal() {
        for s in Status::ALL {
            assert_eq!(Status::from_code(s as i32), s);
        }
        assert_eq!(Status::from_code(999), Status::Internal);
        assert_eq!(Status::from_code(-1), Status::Internal);
    }

    #[test]
    fn empty_bytes_are_an_empty_slice() {
        assert!(unsafe { Bytes::EMPTY.as_slice() }.is_empty());
        let s = b"abc";
        assert_eq!(unsafe { Bytes::of(s).as_slice() }, s);
    }
}
