//! Fine-tuning from a model of the models directory: EfficientNet-Lite0 built by vs_embed, a new
//! head, frozen stages that stay as they came, and a manifest that says what the model is.

use super::net::{detect, resolve_init, Shape};
use super::tests::config;
use super::*;
use std::collections::HashMap;
use vs_embed::model::Model;

fn tensors(dir: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("weights.safetensors")).unwrap().into_iter().collect()
}

/// A randomly initialised EfficientNet-Lite0 written as `<out>/lite0-init` with an Apache-2.0
/// licence, as setup.sh writes the ImageNet one: one step of training from scratch at 32².
fn lite0_init(out: &Path, data: &Catalogue) -> PathBuf {
    let mut cfg = config(out);
    cfg.name = "lite0-init".into();
    cfg.shape = Shape { arch: Architecture::EfficientNetLite0, width: 1.0, batch_norm: false };
    cfg.max_steps = Some(1);
    let dir = train(&cfg, data, None).unwrap().model_dir;
    let path = dir.join("manifest.json");
    let mut m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m.licence = "Apache-2.0".into();
    m.source = "a test's random weights".into();
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    dir
}

fn tuned_config(out: &Path, freeze_stages: usize, augment: bool) -> Config {
    let mut cfg = config(out);
    cfg.init = Some(resolve_init("lite0-init", out).unwrap());
    cfg.shape = cfg.init.as_ref().unwrap().shape().unwrap();
    cfg.name = format!("tuned-{freeze_stages}-{augment}");
    cfg.freeze_stages = freeze_stages;
    cfg.augment = augment;
    cfg.max_steps = Some(3);
    cfg.lr = 0.5;
    cfg
}

#[test]
fn efficientnet_fine_tunes_from_a_model_name_and_says_so_in_its_manifest() {
    let data = data::fashion_mnist(Path::new(vs_fashion::DIR), "train", Some(96)).unwrap();
    let out = std::env::temp_dir().join(format!("vs-train-lite0-{}", std::process::id()));
    lite0_init(&out, &data);
    let cfg = tuned_config(&out, 0, true);
    assert_eq!(cfg.shape.arch, Architecture::EfficientNetLite0, "the architecture comes from the init's manifest");
    let report = train(&cfg, &data, None).unwrap();
    let (m, w) = Manifest::load(&out, &cfg.name).unwrap();
    assert_eq!((m.architecture.as_str(), m.dims, m.width, m.batch_norm), ("efficientnet-lite0", 1280, 1.0, false));
    assert_eq!((m.input.crop, m.input.mean, m.output.pooling, m.output.normalize), (Some(32), [0.286; 3], Pooling::Avg, true));
    assert_eq!(m.licence, "Apache-2.0", "a derivative of the init weights keeps their licence");
    assert!(m.source.contains("from lite0-init (a test's random weights) on Fashion-MNIST (96 train images)"), "{}", m.source);
    assert!(m.source.ends_with(", 1 epoch"), "3 steps of 32 of the 96 images: {}", m.source);
    // Every tensor but the new head started as the init's; the written model runs in image_embed.
    let init = tensors(&out.join("lite0-init"));
    let tuned = tensors(&report.model_dir);
    assert!(init.keys().all(|k| tuned.contains_key(k)));
    let model = Model::load(m, &w, Device::Cpu, false).unwrap();
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pg_test/data/images/sneaker.png")).unwrap();
    let lim = vs_embed::decode::DecodeLimits { max_bytes: 1 << 20, max_pixels: 1 << 20 };
    assert_eq!(vs_embed::embed_images(&model, &[&png], &lim, 1).unwrap()[0].len(), 1280);
    std::fs::remove_dir_all(&out).ok();
}

/// Stem and first two stages frozen: their weights and BatchNorm statistics are the init's after
/// training, whether they run every step (augmented) or once (cached); later layers moved.
#[test]
fn frozen_stages_stay_as_they_came() {
    let data = data::fashion_mnist(Path::new(vs_fashion::DIR), "train", Some(96)).unwrap();
    let out = std::env::temp_dir().join(format!("vs-train-freeze-{}", std::process::id()));
    let init = tensors(&lite0_init(&out, &data));
    let frozen = ["_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.", "_blocks.2."];
    for augment in [true, false] {
        let tuned = tensors(&train(&tuned_config(&out, 2, augment), &data, None).unwrap().model_dir);
        for (name, before) in &init {
            let same = before.equal(&tuned[name]);
            if frozen.iter().any(|p| name.starts_with(p)) {
                assert!(same, "{name} is frozen but changed (augment {augment})");
            } else if name.starts_with("_blocks.3.") && name.ends_with("running_mean") || name == "_conv_head.weight" {
                assert!(!same, "{name} is trained but did not change (augment {augment})");
            }
        }
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn vgg16_freezes_whole_blocks_and_is_told_by_its_tensors() {
    let data = data::fashion_mnist(Path::new(vs_fashion::DIR), "train", Some(64)).unwrap();
    let out = std::env::temp_dir().join(format!("vs-train-vggfreeze-{}", std::process::id()));
    let mut cfg = config(&out);
    cfg.max_steps = Some(2);
    let first = train(&cfg, &data, None).unwrap().model_dir;
    let weights = first.join("weights.safetensors");
    let shape = detect(&weights).unwrap();
    assert_eq!(shape, Shape { arch: Architecture::Vgg16, width: 1.0 / 16.0, batch_norm: true });
    cfg.name = "vgg-tuned".into();
    cfg.init = Some(resolve_init(weights.to_str().unwrap(), &out).unwrap());
    cfg.freeze_stages = 1;
    cfg.lr = 0.5;
    let (before, after) = (tensors(&first), tensors(&train(&cfg, &data, None).unwrap().model_dir));
    // Block 1 is conv, BatchNorm, ReLU twice and a pool: features.0 to features.6.
    for (name, t) in &before {
        let block1 = (0..7).any(|i| name.starts_with(&format!("features.{i}.")));
        if block1 {
            assert!(t.equal(&after[name]), "{name} is frozen but changed");
        } else if name == "features.7.weight" {
            assert!(!t.equal(&after[name]), "{name} is trained but did not change");
        }
    }
    assert!(resolve_init("no-such-model", &out).is_err());
    std::fs::remove_dir_all(&out).ok();
}
