//! The engine through its C ABI, as a backend calls it.

use super::*;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use vs_engine_api::abi::Status;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pg_test/data")
}

fn engine() -> &'static Engine {
    unsafe { &*visual_search_engine_v1() }
}

struct Out {
    status: Status,
    image: i64,
    message: String,
    vectors: Vec<Vec<f32>>,
}

unsafe extern "C" fn never(_: *mut c_void) -> bool {
    false
}

unsafe extern "C" fn always(_: *mut c_void) -> bool {
    true
}

fn run(model: &str, images: &[&[u8]], cancel: abi::CancelFn) -> Out {
    run_in(&data().join("models").to_string_lossy(), model, images, cancel)
}

fn run_in(dir: &str, model: &str, images: &[&[u8]], cancel: abi::CancelFn) -> Out {
    let settings = Settings {
        model_dir: Bytes::of(dir.as_bytes()),
        model: Bytes::of(model.as_bytes()),
        device: Bytes::of(b"cpu"),
        half_precision: false,
        threads: 2,
        max_image_bytes: 50 << 20,
        max_image_pixels: 40_000_000,
    };
    let bytes: Vec<Bytes> = images.iter().map(|b| Bytes::of(b)).collect();
    let req = Request { settings, images: bytes.as_ptr(), n_images: bytes.len(), cancel: Some(cancel), cancel_ctx: std::ptr::null_mut() };
    let mut reply = Reply::empty();
    unsafe {
        (engine().embed)(&req, &mut reply);
        let flat = if reply.n == 0 { &[][..] } else { std::slice::from_raw_parts(reply.vectors, reply.n * reply.dims) };
        let out = Out {
            status: Status::from_code(reply.status),
            image: reply.image,
            message: reply.message.to_string_lossy(),
            vectors: flat.chunks(reply.dims.max(1)).map(<[f32]>::to_vec).collect(),
        };
        (engine().release)(&mut reply);
        assert!(reply.owner.is_null());
        out
    }
}

fn png() -> Vec<u8> {
    std::fs::read(data().join("images/sneaker.png")).unwrap()
}

#[test]
fn the_entry_point_is_the_one_the_abi_names() {
    assert_eq!(abi::ENTRY.to_str().unwrap(), "visual_search_engine_v1");
    assert_eq!(engine().version, abi::VERSION);
}

#[test]
fn images_become_vectors_in_order() {
    let png = png();
    let out = run("tiny-vgg16", &[&png, &png], never);
    assert_eq!((out.status, out.image), (Status::Ok, -1), "{}", out.message);
    assert_eq!(out.vectors.len(), 2);
    assert_eq!(out.vectors[0].len(), 32);
    assert_eq!(out.vectors[0], out.vectors[1]);
    assert!(unsafe { (engine().models_loaded)() } >= 1);
}

#[test]
fn errors_come_back_as_statuses_with_the_image_they_are_about() {
    let png = png();
    let out = run("tiny-vgg16", &[&png, b"not an image"], never);
    assert_eq!((out.status, out.image), (Status::ImageInvalid, 1));
    assert!(out.message.contains("format not recognised"), "{}", out.message);
    let out = run("no-such-model", &[&png], never);
    assert_eq!((out.status, out.image), (Status::ModelUnknown, -1));
    assert!(out.message.starts_with("model \"no-such-model\" not found in "), "{}", out.message);
    assert_eq!(run("../x", &[&png], never).status, Status::ModelBadName);
}

#[test]
fn a_cancel_stops_the_call() {
    let png = png();
    assert_eq!(run("tiny-vgg16", &[&png], always).status, Status::Cancelled);
}

#[test]
fn a_panic_becomes_an_internal_status_not_an_unwind() {
    let mut reply = Reply::empty();
    unsafe {
        answer(&mut reply, || panic!("boom"));
        assert_eq!(Status::from_code(reply.status), Status::Internal);
        assert_eq!(reply.message.to_string_lossy(), "the embedding engine failed: boom");
        release(&mut reply);
    }
}

#[test]
fn libtorch_computes_in_this_process() {
    let s = Settings {
        model_dir: Bytes::EMPTY,
        model: Bytes::EMPTY,
        device: Bytes::EMPTY,
        half_precision: false,
        threads: 1,
        max_image_bytes: 0,
        max_image_pixels: 0,
    };
    let mut reply = Reply::empty();
    unsafe {
        (engine().smoke)(&s, &mut reply);
        assert_eq!((Status::from_code(reply.status), reply.value), (Status::Ok, 270.0));
        (engine().release)(&mut reply);
        (engine().info)(&s, &mut reply);
        assert!(reply.message.to_string_lossy().starts_with("libtorch threads=1 cuda="));
        (engine().release)(&mut reply);
    }
}

/// The embedding service batches the images of many connections into one forward pass, and
/// `image_embed(bytea, text)` is IMMUTABLE: a vector must be bitwise the same alone and in any
/// company, at any position of any batch size.
#[test]
fn a_vector_does_not_depend_on_its_company() {
    let dir = data().join("images");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    let images: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let all: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    for model in ["tiny-vgg16", "tiny-vgg16-224"] {
        let alone: Vec<Vec<f32>> = all.iter().map(|b| run(model, &[b], never).vectors.remove(0)).collect();
        for n in [2, 3, 5, all.len()] {
            for start in [0, all.len() - n] {
                let out = run(model, &all[start..start + n], never);
                assert_eq!(out.status, Status::Ok, "{}", out.message);
                for (i, v) in out.vectors.iter().enumerate() {
                    assert!(v == &alone[start + i], "{model}: image {} differs in a batch of {n}", start + i);
                }
            }
        }
    }
}
