//! `train`: trains VGG16 or EfficientNet-Lite0 on a labelled catalogue and writes a model for
//! image_embed.
//!
//!   cargo run --release -p vs_train --bin train -- --fashion-mnist /usr/share/datasets/fashion-mnist \
//!       --name fashion-vgg16 --width 0.25 --batch-norm --size 32 --epochs 8 --seed 1
//!   cargo run --release -p vs_train --bin train -- --fashion-mnist /usr/share/datasets/fashion-mnist \
//!       --name fashion-efficientnet-lite0 --init efficientnet-lite0-imagenet --size 64 --lr 0.02 \
//!       --epochs 5 --freeze-stages 3 --no-augment
//!
//! Sources: --fashion-mnist DIR (IDX files), --folder DIR (one sub-folder per category), or
//! --query SQL --conninfo CONNINFO (rows of image bytea, label). Run with --help for all options.

use std::path::PathBuf;
use tch::Device;
use vs_embed::manifest::Architecture;
use vs_embed::preprocess::Preprocess;
use vs_train::net::{resolve_init, Shape};
use vs_train::{data, default_out, train, Config};

const HELP: &str = "train: VGG16 or EfficientNet-Lite0 on a labelled catalogue -> <out>/<name>/{weights.safetensors,manifest.json}

source (one of):
  --fashion-mnist DIR     Fashion-MNIST IDX files (train-*, t10k-* as the test set)
  --folder DIR            one sub-folder of images per category
  --query SQL --conninfo CONNINFO   rows (image bytea, label) of a PostgreSQL query
options:
  --name NAME             model name (default fashion-vgg16)
  --out DIR               where models are written (default: the repository's models/)
  --init NAME|FILE        fine-tune: a model of --models (e.g. efficientnet-lite0-imagenet,
                          vgg16-imagenet) or a .safetensors file; architecture, width, batch norm
                          and (for a model) mean/std come from it, the classifier head is new
  --models DIR            where --init NAME is looked up (default: the repository's models/)
  --arch vgg16|efficientnet-lite0   without --init (default vgg16)
  --freeze-stages N       no training of the stem and first N stages (VGG16: 5 blocks,
                          EfficientNet-Lite0: 7 MBConv stages; default 0, all trained); with
                          --no-augment they run once over the images instead of every step
  --save-after K,K..      also write <name>-epoch<K> after those epochs
  --width W               channel multiplier of VGG16 (default 0.25)
  --batch-norm            the BatchNorm variant (vgg16_bn layout)
  --size N                input side: resize shorter side to N, centre-crop N (default 32)
  --mean R,G,B --std R,G,B  normalisation (default: the --init model's, else Fashion-MNIST's 0.2860 / 0.3530)
  --normalize             L2-normalise output vectors (default on; --no-normalize)
  --epochs N (8)  --batch N (128)  --lr X (0.05)  --weight-decay X (5e-4)  --seed N (1)
  --threads N (2)  --device cpu|cuda  --max-steps N
  --limit N               use the first N training images (and N/6 test images)
  --no-augment            no random crops and flips
  --quiet";

fn floats3(s: &str) -> [f32; 3] {
    let v: Vec<f32> = s.split(',').map(|x| x.trim().parse().expect("three numbers")).collect();
    match v.as_slice() {
        [a] => [*a; 3],
        [a, b, c] => [*a, *b, *c],
        _ => panic!("expected 1 or 3 comma-separated numbers, got {s}"),
    }
}

fn fail<T>(e: String) -> T {
    eprintln!("train: {e}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return;
    }
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let has = |k: &str| args.iter().any(|a| a == k);
    let num = |k: &str, d: f64| get(k).map(|v| v.parse::<f64>().unwrap_or_else(|_| panic!("{k} takes a number"))).unwrap_or(d);
    let size = num("--size", 32.0) as u32;
    let limit = get("--limit").map(|v| v.parse::<usize>().expect("--limit takes a number"));
    let init = get("--init").map(|spec| resolve_init(&spec, &get("--models").map(PathBuf::from).unwrap_or_else(default_out)).unwrap_or_else(fail));
    let shape = match &init {
        Some(i) => i.shape().unwrap_or_else(fail),
        None => {
            let arch = get("--arch").unwrap_or_else(|| "vgg16".into());
            let arch = Architecture::parse(&arch).unwrap_or_else(|| fail(format!("--arch {arch}: vgg16 or efficientnet-lite0")));
            let vgg = arch == Architecture::Vgg16;
            Shape { arch, width: if vgg { num("--width", 0.25) } else { 1.0 }, batch_norm: vgg && has("--batch-norm") }
        }
    };
    if let (Some(a), Some(_)) = (get("--arch"), &init) {
        assert!(Architecture::parse(&a) == Some(shape.arch), "--arch {a} disagrees with the --init weights ({:?})", shape.arch);
    }
    let from = init.as_ref().and_then(|i| i.manifest.as_ref()).map(|m| (m.input.mean, m.input.std));
    let cfg = Config {
        name: get("--name").unwrap_or_else(|| "fashion-vgg16".into()),
        out: get("--out").map(PathBuf::from).unwrap_or_else(default_out),
        shape,
        input: Preprocess {
            resize: Some(size),
            crop: Some(size),
            mean: get("--mean").map(|s| floats3(&s)).or(from.map(|f| f.0)).unwrap_or([0.2860; 3]),
            std: get("--std").map(|s| floats3(&s)).or(from.map(|f| f.1)).unwrap_or([0.3530; 3]),
        },
        normalize: !has("--no-normalize"),
        epochs: num("--epochs", 8.0) as usize,
        batch: num("--batch", 128.0) as usize,
        lr: num("--lr", 0.05),
        weight_decay: num("--weight-decay", 5e-4),
        seed: num("--seed", 1.0) as u64,
        threads: num("--threads", 2.0) as i32,
        device: match get("--device").as_deref() {
            Some("cuda") => Device::Cuda(0),
            _ => Device::Cpu,
        },
        init,
        freeze_stages: num("--freeze-stages", 0.0) as usize,
        save_after: get("--save-after")
            .map(|v| v.split(',').map(|k| k.trim().parse().expect("--save-after takes epoch numbers")).collect())
            .unwrap_or_default(),
        max_steps: get("--max-steps").map(|v| v.parse().expect("--max-steps takes a number")),
        augment: !has("--no-augment"),
        quiet: has("--quiet"),
    };
    let (train_set, test_set) = if let Some(dir) = get("--fashion-mnist") {
        let dir = PathBuf::from(dir);
        (data::fashion_mnist(&dir, "train", limit), Some(data::fashion_mnist(&dir, "t10k", limit.map(|n| (n / 6).max(1)))))
    } else if let Some(dir) = get("--folder") {
        (data::folder(&PathBuf::from(dir)), None)
    } else if let Some(q) = get("--query") {
        let conninfo = get("--conninfo").unwrap_or_default();
        (data::query(&conninfo, &q), None)
    } else {
        eprintln!("name a source: --fashion-mnist, --folder or --query\n\n{HELP}");
        std::process::exit(2);
    };
    let train_set = train_set.unwrap_or_else(fail);
    let test_set = test_set.map(|t| t.unwrap_or_else(fail));
    eprintln!(
        "training {} on {} images in {} categories: {:?} (width {}, batch norm {}), {} stages frozen, input {size}x{size}, {} epochs, seed {}",
        cfg.name,
        train_set.images.len(),
        train_set.classes.len(),
        cfg.shape.arch,
        cfg.shape.width,
        cfg.shape.batch_norm,
        cfg.freeze_stages,
        cfg.epochs,
        cfg.seed
    );
    match train(&cfg, &train_set, test_set.as_ref()) {
        Ok(r) => {
            println!(
                "{{\"model\":\"{}\",\"epochs\":{},\"steps\":{},\"first_loss\":{:.4},\"last_loss\":{:.4},\"train_accuracy\":{:.4},\"test_accuracy\":{},\"seconds\":{:.0},\"epoch_seconds\":{:?}}}",
                r.model_dir.display(), r.epochs_done, r.steps, r.first_loss, r.last_loss, r.train_accuracy,
                r.test_accuracy.map(|a| format!("{a:.4}")).unwrap_or("null".into()), r.seconds,
                r.epoch_seconds.iter().map(|s| s.round() as u64).collect::<Vec<_>>()
            );
        }
        Err(e) => {
            eprintln!("train: {e}");
            std::process::exit(1);
        }
    }
}
