//! Trains VGG16 (torchvision layout, optional width multiplier and BatchNorm) or EfficientNet-Lite0
//! on a labelled catalogue, from scratch or fine-tuning ImageNet weights, and writes a model
//! `image_embed` loads. Free of pgrx; the CLI is `src/main.rs`.
//!
//! Training sees exactly the input `image_embed` will: the same decoder and the same Pillow-exact
//! resize/crop/normalise of `vs_embed::preprocess`, from the manifest being written.

pub mod data;
pub mod net;

use data::Catalogue;
use net::{Init, Net, Shape};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use vs_embed::manifest::{Architecture, Manifest, Output, Pooling, Weights};
use vs_embed::model::sha256_hex;
use vs_embed::preprocess::{to_input, Preprocess};

#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub out: PathBuf,
    pub shape: Shape,
    pub input: Preprocess,
    pub normalize: bool,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub threads: i32,
    pub device: Device,
    /// Start from these weights (fine-tuning); matching tensors are copied, the rest (the
    /// classifier head) stay random.
    pub init: Option<Init>,
    /// Train nothing of the stem and the first N stages (0: train every layer).
    pub freeze_stages: usize,
    /// Also write the model as `<name>-epoch<K>` after each of these epochs.
    pub save_after: Vec<usize>,
    /// Stop after this many optimiser steps in total (tests, smoke runs).
    pub max_steps: Option<usize>,
    pub augment: bool,
    pub quiet: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub epochs_done: usize,
    pub steps: usize,
    /// Mean training loss of the first and the last tenth of the steps.
    pub first_loss: f64,
    pub last_loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: Option<f64>,
    pub seconds: f64,
    /// Wall time of each epoch run, its test evaluation included.
    pub epoch_seconds: Vec<f64>,
    pub model_dir: PathBuf,
}

/// A small, seedable generator (xorshift64*), so that data order and augmentation depend on
/// the seed and the epoch only, and a resumed run continues exactly where it stopped.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn inputs(cat: &Catalogue, p: &Preprocess) -> (Tensor, i64, i64) {
    let first = to_input(&cat.images[0], p, u64::MAX, &|| false).expect("a catalogue image fits the model");
    let (h, w) = (first.1 as i64, first.2 as i64);
    let mut flat = Vec::with_capacity(cat.images.len() * (3 * h * w) as usize);
    for img in &cat.images {
        let (x, ih, iw) = to_input(img, p, u64::MAX, &|| false).expect("a catalogue image fits the model");
        assert_eq!((ih as i64, iw as i64), (h, w), "set input.crop so that every image has the same size");
        flat.extend_from_slice(&x);
    }
    (Tensor::from_slice(&flat).view([cat.images.len() as i64, 3, h, w]), h, w)
}

/// Random horizontal flips and random crops from a 4-pixel border filled with the background
/// value (the normalised black pixel), the usual augmentation for small catalogue images.
fn augment(x: &Tensor, rng: &mut Rng, background: &[f32; 3]) -> Tensor {
    let (n, _, h, w) = x.size4().expect("a batch of images");
    let pad = 4;
    let bg = Tensor::from_slice(background).view([1, 3, 1, 1]);
    let padded = (x - &bg).constant_pad_nd([pad, pad, pad, pad]) + &bg;
    let rows: Vec<Tensor> = (0..n)
        .map(|i| {
            let (dy, dx) = (rng.below(2 * pad as usize + 1) as i64, rng.below(2 * pad as usize + 1) as i64);
            let t = padded.get(i).narrow(1, dy, h).narrow(2, dx, w);
            if rng.below(2) == 1 {
                t.flip([2])
            } else {
                t
            }
        })
        .collect();
    Tensor::stack(&rows, 0)
}

fn accuracy(net: &Net, x: &Tensor, y: &Tensor, device: Device) -> f64 {
    let _g = tch::no_grad_guard();
    let n = x.size()[0];
    let mut correct = 0i64;
    let mut i = 0;
    while i < n {
        let b = (n - i).min(512);
        let xb = x.narrow(0, i, b).to_device(device);
        let logits = net.logits(&xb, false);
        correct += logits.argmax(1, false).to_device(Device::Cpu).eq_tensor(&y.narrow(0, i, b)).sum(Kind::Int64).int64_value(&[]);
        i += b;
    }
    correct as f64 / n as f64
}

fn checkpoint_path(cfg: &Config) -> PathBuf {
    cfg.out.join(format!(".{}.checkpoint", cfg.name))
}

/// Trains and writes `<out>/<name>/{weights.safetensors,manifest.json}`. A checkpoint is written
/// after every epoch; a run with the same configuration resumes from it.
pub fn train(cfg: &Config, train_set: &Catalogue, test_set: Option<&Catalogue>) -> Result<Report, String> {
    let started = Instant::now();
    tch::set_num_threads(cfg.threads);
    let classes = train_set.classes.len() as i64;
    let (mut x, _, _) = inputs(train_set, &cfg.input);
    let y = Tensor::from_slice(&train_set.labels);
    let mut test = test_set.map(|t| (inputs(t, &cfg.input).0, Tensor::from_slice(&t.labels)));
    let mut vs = nn::VarStore::new(cfg.device);
    // The manifest being trained to: the layers it names are those image_embed will run.
    let target = manifest(cfg, &cfg.name, train_set, String::new());
    let mut net = {
        let _init = vs_embed::model::INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(cfg.seed as i64);
        Net::new(&vs, &target, classes, cfg.freeze_stages)?
    };
    if let Some(init) = &cfg.init {
        let missing = vs.load_partial(&init.weights).map_err(|e| format!("{}: {e}", init.weights.display()))?;
        // The head is new; anything else missing means the file is not this network.
        if let Some(m) = missing.iter().find(|n| !n.starts_with("head.")) {
            return Err(format!("{}: tensor {m} is missing: these weights are not {}", init.weights.display(), target.architecture));
        }
        if !cfg.quiet {
            eprintln!("started from {} (the {} head tensors random)", init.weights.display(), missing.len());
        }
    }
    // Augmentation changes the input of every step; without it the frozen part runs once.
    if cfg.freeze_stages > 0 && !cfg.augment {
        let t = Instant::now();
        let mut sets = vec![&x];
        sets.extend(test.as_ref().map(|(tx, _)| tx));
        let mut out = net.cache_frozen(&sets, cfg.device).into_iter();
        x = out.next().expect("the training set");
        if let (Some((tx, _)), Some(f)) = (test.as_mut(), out.next()) {
            *tx = f;
        }
        if !cfg.quiet {
            eprintln!("frozen layers run once over every image: {:?} each, {:.0} s", &x.size()[1..], t.elapsed().as_secs_f64());
        }
    }
    // Resume: weights and the number of epochs done; the data order of each epoch depends on the
    // seed and the epoch only, so the run continues as if it had not stopped.
    let ckpt = checkpoint_path(cfg);
    let mut start_epoch = 0;
    if let Ok(n) = std::fs::read_to_string(ckpt.with_extension("epoch")) {
        vs.load(ckpt.with_extension("safetensors")).map_err(|e| format!("checkpoint: {e}"))?;
        start_epoch = n.trim().parse().unwrap_or(0);
        if !cfg.quiet {
            eprintln!("resuming after epoch {start_epoch} from {}", ckpt.display());
        }
    }
    let mut opt = nn::Sgd { momentum: 0.9, dampening: 0.0, wd: cfg.weight_decay, nesterov: true }.build(&vs, cfg.lr).map_err(|e| e.to_string())?;
    let n = x.size()[0] as usize;
    let steps_per_epoch = n.div_ceil(cfg.batch);
    let total_steps = (steps_per_epoch * cfg.epochs).min(cfg.max_steps.unwrap_or(usize::MAX));
    let background: [f32; 3] = std::array::from_fn(|c| -cfg.input.mean[c] / cfg.input.std[c]);
    let mut losses = Vec::new();
    let mut report = Report::default();
    let mut step = start_epoch * steps_per_epoch;
    'epochs: for epoch in start_epoch..cfg.epochs {
        let mut rng = Rng::new(cfg.seed ^ (epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let (mut seen, mut correct, mut loss_sum) = (0usize, 0i64, 0f64);
        let t_epoch = Instant::now();
        for (b, chunk) in order.chunks(cfg.batch).enumerate() {
            if step >= total_steps {
                break 'epochs;
            }
            // One-cycle-like schedule: linear warm-up over the first 5 % of steps, then cosine.
            let warm = (total_steps / 20).max(1);
            let lr = if step < warm {
                cfg.lr * (step + 1) as f64 / warm as f64
            } else {
                let p = (step - warm) as f64 / (total_steps - warm).max(1) as f64;
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            };
            opt.set_lr(lr);
            let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let mut xb = x.index_select(0, &idx);
            if cfg.augment {
                xb = augment(&xb, &mut rng, &background);
            }
            let yb = y.index_select(0, &idx).to_device(cfg.device);
            let logits = net.logits(&xb.to_device(cfg.device), true);
            let loss = logits.cross_entropy_for_logits(&yb);
            opt.backward_step(&loss);
            let l = loss.double_value(&[]);
            losses.push(l);
            loss_sum += l * chunk.len() as f64;
            correct += logits.argmax(1, false).eq_tensor(&yb).sum(Kind::Int64).int64_value(&[]);
            seen += chunk.len();
            step += 1;
            if !cfg.quiet && (b % 10 == 0 || b + 1 == steps_per_epoch) {
                let done = (b + 1) as f64 / steps_per_epoch as f64;
                let bar = "#".repeat((done * 30.0) as usize);
                eprint!(
                    "\repoch {}/{} [{bar:<30}] {:>5.1}% loss {:.4} acc {:.4} lr {:.4} {:.0} img/s   ",
                    epoch + 1,
                    cfg.epochs,
                    done * 100.0,
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                    lr,
                    seen as f64 / t_epoch.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
            }
        }
        report.epochs_done = epoch + 1;
        report.train_accuracy = correct as f64 / seen.max(1) as f64;
        if let Some((tx, ty)) = &test {
            let acc = accuracy(&net, tx, ty, cfg.device);
            report.test_accuracy = Some(acc);
            if !cfg.quiet {
                eprint!(" test acc {acc:.4}");
            }
        }
        report.epoch_seconds.push(t_epoch.elapsed().as_secs_f64());
        if !cfg.quiet {
            eprintln!(" ({:.0} s)", t_epoch.elapsed().as_secs_f64());
        }
        if cfg.save_after.contains(&(epoch + 1)) && epoch + 1 < cfg.epochs {
            let name = format!("{}-epoch{}", cfg.name, epoch + 1);
            write_model(cfg, &name, train_set, epoch + 1, &mut vs)?;
            vs.set_device(cfg.device);
        }
        std::fs::create_dir_all(&cfg.out).map_err(|e| e.to_string())?;
        vs.save(ckpt.with_extension("safetensors")).map_err(|e| e.to_string())?;
        std::fs::write(ckpt.with_extension("epoch"), (epoch + 1).to_string()).map_err(|e| e.to_string())?;
    }
    let tenth = (losses.len() / 10).max(1);
    report.steps = losses.len();
    if !losses.is_empty() {
        report.first_loss = losses[..tenth].iter().sum::<f64>() / tenth as f64;
        report.last_loss = losses[losses.len() - tenth..].iter().sum::<f64>() / tenth as f64;
    }
    report.model_dir = write_model(cfg, &cfg.name, train_set, report.epochs_done, &mut vs)?;
    let _ = std::fs::remove_file(ckpt.with_extension("safetensors"));
    let _ = std::fs::remove_file(ckpt.with_extension("epoch"));
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The manifest of the model being trained, `sha256` its weights' (empty before they exist).
fn manifest(cfg: &Config, name: &str, data: &Catalogue, sha256: String) -> Manifest {
    let arch = Architecture::NAMES.iter().find(|(_, a)| *a == cfg.shape.arch).map(|(n, _)| n.to_string()).unwrap_or_default();
    let description = match cfg.shape.arch {
        Architecture::Vgg16 => {
            format!("VGG16 (width {}, batch norm {}) trained by visual_search's train command, seed {}", cfg.shape.width, cfg.shape.batch_norm, cfg.seed)
        }
        Architecture::EfficientNetLite0 => format!("EfficientNet-Lite0 trained by visual_search's train command, seed {}", cfg.seed),
    };
    let (licence, source) = match &cfg.init {
        None => (String::new(), format!("visual_search's train command on {}", data.source)),
        Some(init) => {
            let from = match &init.manifest {
                Some(m) if m.source.is_empty() => m.name.clone(),
                Some(m) => format!("{} ({})", m.name, m.source),
                None => init.weights.display().to_string(),
            };
            let frozen = if cfg.freeze_stages > 0 { format!(", stem and first {} stages frozen", cfg.freeze_stages) } else { String::new() };
            // Fine-tuned weights are a derivative of the weights they started from.
            let licence = init.manifest.as_ref().map(|m| m.licence.clone()).unwrap_or_default();
            (licence, format!("fine-tuned by visual_search's train command from {from} on {}{frozen}", data.source))
        }
    };
    let mut m = Manifest {
        name: name.to_string(),
        architecture: arch,
        width: cfg.shape.width,
        batch_norm: cfg.shape.batch_norm,
        input: cfg.input.clone(),
        output: Output { pooling: Pooling::Avg, normalize: cfg.normalize },
        dims: 0,
        weights: Weights { file: "weights.safetensors".into(), sha256 },
        description,
        licence,
        source,
    };
    m.dims = m.last_channels() as usize;
    m
}

fn write_model(cfg: &Config, name: &str, data: &Catalogue, epochs: usize, vs: &mut nn::VarStore) -> Result<PathBuf, String> {
    let dir = cfg.out.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    vs.set_device(Device::Cpu);
    let weights = dir.join("weights.safetensors");
    vs.save(&weights).map_err(|e| e.to_string())?;
    let sha = sha256_hex(&std::fs::read(&weights).map_err(|e| e.to_string())?);
    let mut m = manifest(cfg, name, data, sha);
    m.source = format!("{}, {epochs} epoch{}", m.source, if epochs == 1 { "" } else { "s" });
    let json = serde_json::to_string_pretty(&m).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("manifest.json"), json + "\n").map_err(|e| e.to_string())?;
    Ok(dir)
}

pub fn default_out() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

#[cfg(test)]
mod transfer_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use vs_embed::decode::DecodeLimits;
    use vs_embed::model::Model;

    pub(crate) fn config(out: &Path) -> Config {
        Config {
            name: "tiny-trained".into(),
            out: out.to_path_buf(),
            shape: Shape { arch: Architecture::Vgg16, width: 1.0 / 16.0, batch_norm: true },
            input: Preprocess { resize: Some(32), crop: Some(32), mean: [0.286; 3], std: [0.353; 3] },
            normalize: true,
            epochs: 4,
            batch: 32,
            lr: 0.05,
            weight_decay: 5e-4,
            seed: 7,
            threads: 2,
            device: Device::Cpu,
            init: None,
            freeze_stages: 0,
            save_after: vec![],
            max_steps: Some(40),
            augment: false,
            quiet: true,
        }
    }

    #[test]
    fn a_few_steps_lower_the_loss_and_write_a_model_image_embed_loads() {
        let fm = Path::new(vs_fashion::DIR);
        let train_set = data::fashion_mnist(fm, "train", Some(320)).expect("dataset-fashion-mnist is installed by setup");
        let out = std::env::temp_dir().join(format!("vs-train-test-{}", std::process::id()));
        let report = train(&config(&out), &train_set, None).unwrap();
        assert_eq!(report.steps, 40);
        assert!(report.last_loss < report.first_loss * 0.8, "loss {} -> {}", report.first_loss, report.last_loss);
        // The written model loads like any other and embeds a PNG.
        let (m, w) = Manifest::load(&out, "tiny-trained").unwrap();
        assert_eq!((m.dims, m.batch_norm, m.output.normalize), (32, true, true));
        let model = Model::load(m, &w, Device::Cpu, false).unwrap();
        let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pg_test/data/images/sneaker.png")).unwrap();
        let lim = DecodeLimits { max_bytes: 1 << 20, max_pixels: 1 << 20 };
        let v = vs_embed::embed_images(&model, &[&png], &lim, 1).unwrap().remove(0);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised output, norm {norm}");
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn the_same_seed_trains_the_same_model() {
        let fm = Path::new(vs_fashion::DIR);
        let train_set = data::fashion_mnist(fm, "train", Some(128)).unwrap();
        let base = std::env::temp_dir().join(format!("vs-train-seed-{}", std::process::id()));
        let mut cfg = config(&base.join("a"));
        cfg.max_steps = None;
        cfg.epochs = 2;
        cfg.augment = true;
        let a = train(&cfg, &train_set, None).unwrap();
        cfg.out = base.join("b");
        let b = train(&cfg, &train_set, None).unwrap();
        let weights = |r: &Report| std::fs::read(r.model_dir.join("weights.safetensors")).unwrap();
        assert_eq!(weights(&a), weights(&b), "same seed and threads, same weights");
        std::fs::remove_dir_all(&base).ok();
    }

    /// An interrupted run leaves `.<name>.checkpoint.{safetensors,epoch}`; the next run with the
    /// same configuration starts after that epoch from those weights. (SGD's momentum starts
    /// afresh: tch does not expose it.)
    #[test]
    fn a_run_resumes_after_its_last_checkpoint() {
        let fm = Path::new(vs_fashion::DIR);
        let train_set = data::fashion_mnist(fm, "train", Some(256)).unwrap();
        let out = std::env::temp_dir().join(format!("vs-train-resume-{}", std::process::id()));
        let mut cfg = config(&out);
        cfg.max_steps = None;
        cfg.epochs = 3;
        let fresh = train(&cfg, &train_set, None).unwrap();
        // Put back the checkpoint an interruption after epoch 2 would have left.
        let ckpt = checkpoint_path(&cfg);
        std::fs::copy(fresh.model_dir.join("weights.safetensors"), ckpt.with_extension("safetensors")).unwrap();
        std::fs::write(ckpt.with_extension("epoch"), "2").unwrap();
        let resumed = train(&cfg, &train_set, None).unwrap();
        assert_eq!(resumed.epochs_done, 3);
        assert_eq!(resumed.steps, 256 / cfg.batch, "only the last epoch ran");
        assert!(resumed.first_loss < fresh.first_loss * 0.85, "{} vs {}", resumed.first_loss, fresh.first_loss);
        assert!(!ckpt.with_extension("epoch").exists(), "a finished run removes its checkpoint");
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn a_folder_of_category_folders_is_a_catalogue() {
        let fm = data::fashion_mnist(Path::new(vs_fashion::DIR), "train", Some(200)).unwrap();
        let dir = std::env::temp_dir().join(format!("vs-train-folder-{}", std::process::id()));
        for (i, (img, &label)) in fm.images.iter().zip(&fm.labels).enumerate() {
            let class = dir.join(fm.classes[label as usize].replace('/', "-"));
            std::fs::create_dir_all(&class).unwrap();
            img.save(class.join(format!("{i}.png"))).unwrap();
        }
        std::fs::write(dir.join("Sneaker").join("notes.txt"), "not an image").unwrap();
        let cat = data::folder(&dir).unwrap();
        assert_eq!(cat.images.len(), 200, "every image, and the text file skipped");
        assert_eq!(cat.classes.len(), 10);
        let sneaker = cat.classes.iter().position(|c| c == "Sneaker").unwrap() as i64;
        let want = fm.labels.iter().filter(|&&l| fm.classes[l as usize] == "Sneaker").count();
        assert_eq!(cat.labels.iter().filter(|&&l| l == sneaker).count(), want);
        let mut cfg = config(&dir.join("out"));
        cfg.max_steps = Some(5);
        assert_eq!(train(&cfg, &cat, None).unwrap().steps, 5);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn fine_tuning_starts_from_existing_weights() {
        let fm = Path::new(vs_fashion::DIR);
        let train_set = data::fashion_mnist(fm, "train", Some(320)).unwrap();
        let out = std::env::temp_dir().join(format!("vs-train-init-{}", std::process::id()));
        let first = train(&config(&out), &train_set, None).unwrap();
        let mut cfg = config(&out);
        cfg.name = "tuned".into();
        cfg.init = Some(Init { weights: first.model_dir.join("weights.safetensors"), manifest: None });
        cfg.max_steps = Some(10);
        let tuned = train(&cfg, &train_set, None).unwrap();
        assert!(tuned.first_loss < first.first_loss * 0.8, "{} vs {}", tuned.first_loss, first.first_loss);
        std::fs::remove_dir_all(&out).ok();
    }
}
