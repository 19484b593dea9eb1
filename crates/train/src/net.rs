//! The network being trained: the layers `vs_embed` builds for image_embed (so a trained model
//! runs exactly as it was trained), a fresh classifier head, and where fine-tuning starts from.

use std::path::{Path, PathBuf};
use tch::{nn, nn::ModuleT, Kind, Tensor};
use vs_embed::conv::Layer;
use vs_embed::manifest::{valid_name, Architecture, Manifest};

/// The weights a run starts from: a model of the models directory (its manifest gives the
/// architecture, input normalisation, licence and source) or a bare `.safetensors` file.
#[derive(Clone, Debug)]
pub struct Init {
    pub weights: PathBuf,
    pub manifest: Option<Manifest>,
}

/// The network's shape: what the written manifest says of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub arch: Architecture,
    pub width: f64,
    pub batch_norm: bool,
}

/// `--init`: a path ending in `.safetensors`, or the name of a model in `models`.
pub fn resolve_init(spec: &str, models: &Path) -> Result<Init, String> {
    if spec.ends_with(".safetensors") {
        let weights = PathBuf::from(spec);
        if !weights.is_file() {
            return Err(format!("{spec}: no such weights file"));
        }
        return Ok(Init { weights, manifest: None });
    }
    if !valid_name(spec) {
        return Err(format!("--init takes a .safetensors file or a model name, not \"{spec}\""));
    }
    let (m, weights) = Manifest::load(models, spec).map_err(|e| e.to_string())?;
    if !weights.is_file() {
        return Err(format!("model {spec}: weights file {} is missing", weights.display()));
    }
    Ok(Init { weights, manifest: Some(m) })
}

/// The shape a weights file holds, told by its tensors' names as `models/convert.py` tells them:
/// `_conv_stem.*` is EfficientNet-Lite0, `features.N.*` VGG16 (BatchNorm when there are running
/// means; the width from the first convolution's 64 channels).
pub fn detect(weights: &Path) -> Result<Shape, String> {
    let tensors = Tensor::read_safetensors(weights).map_err(|e| format!("{}: {e}", weights.display()))?;
    let get = |n: &str| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t);
    if get("_conv_stem.weight").is_some() {
        return Ok(Shape { arch: Architecture::EfficientNetLite0, width: 1.0, batch_norm: false });
    }
    let first = get("features.0.weight")
        .ok_or_else(|| format!("{}: neither VGG16 (features.0.weight) nor EfficientNet-Lite0 (_conv_stem.weight)", weights.display()))?;
    Ok(Shape { arch: Architecture::Vgg16, width: first.size()[0] as f64 / 64.0, batch_norm: get("features.1.running_mean").is_some() })
}

impl Init {
    /// The shape of the init weights: their manifest's, or what their tensors say.
    pub fn shape(&self) -> Result<Shape, String> {
        match &self.manifest {
            Some(m) => Ok(Shape { arch: m.arch(), width: m.width, batch_norm: m.batch_norm }),
            None => detect(&self.weights),
        }
    }
}

/// Feature layers, then global average pooling and a linear classifier. The first `frozen`
/// layers run in eval mode without gradient: their BatchNorm statistics stay those of the
/// weights they came with, as their convolutions do.
pub struct Net {
    layers: Vec<Layer>,
    frozen: usize,
    head: nn::Linear,
    /// The inputs `logits` gets are the frozen layers' outputs already (`cache_frozen`).
    cached: bool,
}

impl Net {
    /// Builds the network `m` names under `vs`'s root with a `head` of `classes` outputs. A
    /// `freeze_stages` of N > 0 takes the stem and the first N stages out of training (0 trains
    /// everything); build the optimiser after this, from what is trainable then.
    pub fn new(vs: &nn::VarStore, m: &Manifest, classes: i64, freeze_stages: usize) -> Result<Net, String> {
        let layers = vs_embed::model::network(&vs.root(), m);
        let head = nn::linear(vs.root() / "head", m.last_channels(), classes, Default::default());
        let mut frozen = 0;
        if freeze_stages > 0 {
            let (n, prefixes) = vs_embed::model::leading_stages(m, freeze_stages)?;
            let mut vars = vs.variables_.lock().unwrap();
            let is_frozen = |name: &str| prefixes.iter().any(|p| name.starts_with(p.as_str()));
            for (_, t) in vars.named_variables.iter().filter(|(k, _)| is_frozen(k)) {
                let _ = t.set_requires_grad(false);
            }
            // The optimiser would still decay the weights it is given, gradient or not.
            vars.trainable_variables.retain(|v| v.tensor.requires_grad());
            frozen = n;
        }
        Ok(Net { layers, frozen, head, cached: false })
    }

    /// Runs the frozen layers once over whole sets of images (in passes of 256 on `device`) and
    /// returns their outputs; `logits` takes such outputs from then on. Without augmentation the
    /// frozen part is a fixed function of the image, and computing it once instead of every
    /// epoch is most of a fine-tuning run's time on a CPU: EfficientNet-Lite0's stem and first
    /// stages work at the largest feature maps.
    pub fn cache_frozen(&mut self, sets: &[&Tensor], device: tch::Device) -> Vec<Tensor> {
        let out = sets
            .iter()
            .map(|x| {
                let n = x.size()[0];
                let parts: Vec<Tensor> =
                    (0..n).step_by(256).map(|i| self.frozen_part(&x.narrow(0, i, (n - i).min(256)).to_device(device)).to_device(tch::Device::Cpu)).collect();
                Tensor::cat(&parts, 0)
            })
            .collect();
        self.cached = true;
        out
    }

    fn frozen_part(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.layers[..self.frozen].iter().fold(x.shallow_clone(), |y, l| l.forward_t(&y, false)))
    }

    pub fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = if self.cached { x.shallow_clone() } else { self.frozen_part(x) };
        for l in &self.layers[self.frozen..] {
            y = l.forward_t(&y, train);
        }
        y.mean_dim([2i64, 3].as_slice(), false, Kind::Float).apply(&self.head)
    }
}
