//! The network a manifest names, loaded from safetensors and run on libtorch. VGG16 is built
//! here exactly as torchvision defines it (parameter names `features.N.weight` / `features.N.bias`,
//! and `features.N.running_mean` etc. for the BatchNorm variant), so torchvision's weights
//! converted to safetensors load unchanged; EfficientNet-Lite0 is in `efficientnet`. Free of pgrx.

use super::conv::{Conv, Layer};
use super::manifest::{scaled, Architecture, Manifest, ModelError, Pooling, VGG16};
use super::preprocess::Cancel;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

/// libtorch's default random generator is process-wide and building a network draws from it.
/// Seeding and building under this lock keeps a seeded initialisation reproducible while other
/// threads build networks too (tests run in parallel; a server may train beside loading).
pub static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The layers of VGG16's convolutional part (torchvision's `vgg16().features`), in order.
pub fn layers(p: &nn::Path, width: f64, batch_norm: bool) -> Vec<Layer> {
    let mut out: Vec<Layer> = Vec::new();
    let mut idx = 0usize;
    let mut c_in = 3i64;
    for &c in VGG16.iter() {
        if c == 0 {
            out.push(Layer(Box::new(nn::func(|x| x.max_pool2d_default(2)))));
            idx += 1;
            continue;
        }
        let c_out = scaled(c, width);
        out.push(Layer(Box::new(Conv::new(p / "features" / idx.to_string(), c_in, c_out, 3, 1, 1, true, false))));
        idx += 1;
        if batch_norm {
            out.push(Layer(Box::new(nn::batch_norm2d(p / "features" / idx.to_string(), c_out, Default::default()))));
            idx += 1;
        }
        // In place, as torchvision's ReLU(inplace=True): the conv output is not needed again.
        out.push(Layer(Box::new(nn::func(|x| x.shallow_clone().relu_()))));
        idx += 1;
        c_in = c_out;
    }
    out
}

/// The layers of the network a manifest names.
pub fn network(p: &nn::Path, m: &Manifest) -> Vec<Layer> {
    match m.arch() {
        Architecture::Vgg16 => layers(p, m.width, m.batch_norm),
        Architecture::EfficientNetLite0 => super::efficientnet::layers(p),
    }
}

/// The stem and the first `stages` stages of the network a manifest names (VGG16: no stem, five
/// blocks that each end in a max pool; EfficientNet-Lite0: the first convolution and seven MBConv
/// stages): how many leading layers of `network` they are, and the name prefixes of their
/// tensors. Fine-tuning freezes them.
pub fn leading_stages(m: &Manifest, stages: usize) -> Result<(usize, Vec<String>), String> {
    match m.arch() {
        Architecture::EfficientNetLite0 => super::efficientnet::leading(stages),
        Architecture::Vgg16 => {
            let blocks = VGG16.iter().filter(|&&c| c == 0).count();
            if stages > blocks {
                return Err(format!("vgg16 has {blocks} blocks, not {stages}"));
            }
            // `layers` pushes conv, [BatchNorm,] ReLU per channel entry and one pool per 0; its
            // tensors are named features.<position>.
            let per_conv = if m.batch_norm { 3 } else { 2 };
            let (mut n, mut pools) = (0, 0);
            for &c in VGG16.iter() {
                if pools == stages {
                    break;
                }
                n += if c == 0 { 1 } else { per_conv };
                pools += (c == 0) as usize;
            }
            Ok((n, (0..n).map(|i| format!("features.{i}.")).collect()))
        }
    }
}

/// A model ready to run: weights loaded, in eval mode, on its device.
pub struct Model {
    pub manifest: Manifest,
    pub device: Device,
    pub half: bool,
    pub parameters: usize,
    pub bytes: usize,
    /// The fewest images a forward pass may hold: see `Model::least_per_pass`.
    pub least_per_pass: usize,
    _vs: nn::VarStore,
    net: Vec<Layer>,
}

fn torch(e: tch::TchError) -> ModelError {
    ModelError::Torch(e.to_string())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// Loads `weights` (a safetensors file, checked against the manifest's sha256) into a fresh
    /// network. Every parameter of the network must be in the file with the same shape.
    pub fn load(manifest: Manifest, weights: &Path, device: Device, half: bool) -> Result<Model, ModelError> {
        let bytes = std::fs::read(weights).map_err(|_| ModelError::WeightsMissing(weights.to_path_buf()))?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&manifest.weights.sha256) {
            return Err(ModelError::ShaMismatch { path: weights.to_path_buf(), expected: manifest.weights.sha256.clone(), actual });
        }
        let corrupt = |why: String| ModelError::WeightsCorrupt { path: weights.to_path_buf(), why };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = {
            let _init = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            network(&vs.root(), &manifest)
        };
        let mut parameters = 0;
        tch::no_grad(|| -> Result<(), ModelError> {
            for (name, var) in vs.variables_.lock().unwrap().named_variables.iter_mut() {
                let view = st.tensor(name).map_err(|_| corrupt(format!("tensor {name} is missing")))?;
                let src = Tensor::try_from(view).map_err(|e| corrupt(format!("{name}: {e}")))?;
                if src.size() != var.size() {
                    return Err(corrupt(format!("{name} has shape {:?}, the manifest's network needs {:?}", src.size(), var.size())));
                }
                let src = src.f_to_kind(Kind::Float).map_err(torch)?;
                if src.f_isfinite().and_then(|t| t.f_all()).map(|t| !bool::try_from(t).unwrap_or(false)).unwrap_or(true) {
                    return Err(corrupt(format!("{name} holds NaN or infinite values")));
                }
                var.f_copy_(&src).map_err(torch)?;
                parameters += var.numel();
            }
            Ok(())
        })?;
        vs.set_device(device);
        if half {
            vs.half();
        }
        // oneDNN convolves channels-last (NHWC) tensors without reordering them on every call.
        tch::no_grad(|| {
            for (_, var) in vs.variables_.lock().unwrap().named_variables.iter_mut() {
                if var.dim() == 4 {
                    let nhwc = channels_last(var).map_err(torch)?;
                    var.set_data(&nhwc);
                }
            }
            Ok::<(), ModelError>(())
        })?;
        let bytes = parameters * if half { 2 } else { 4 };
        let mut m = Model { manifest, device, half, parameters, bytes, least_per_pass: 1, _vs: vs, net };
        m.least_per_pass = m.least_per_pass()?;
        Ok(m)
    }

    /// A vector must not depend on the images that shared its forward pass: the embedding
    /// service batches the images of many connections, and image_embed is IMMUTABLE. On the CPU
    /// oneDNN picks its kernels by shape, and for a pass of one image it picks others: the
    /// fashion model's vector of an image alone was 1.4e-7 away from the same image beside any
    /// other (passes of 2 to 40 agreed bitwise; full-width VGG16 agreed at 1 too). So a pass of
    /// one is probed at load with seeded inputs, and padded to two where it differs. Without a
    /// fixed crop the shapes vary per image and no probe covers them: every pass holds two.
    ///
    /// cuDNN chooses its algorithms by batch size as well, unprobed here: on a GPU every pass is
    /// padded to the same size (`forward`).
    fn least_per_pass(&self) -> Result<usize, ModelError> {
        if self.device.is_cuda() {
            return Ok(usize::MAX);
        }
        let Some(side) = self.manifest.input.crop else { return Ok(2) };
        let len = 3 * side as usize * side as usize;
        // A fixed xorshift sequence in [-2, 2): the range of normalised pixels.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        };
        let a: Vec<f32> = (0..len).map(|_| next()).collect();
        let b: Vec<f32> = (0..len).map(|_| next()).collect();
        let alone = self.pass(std::slice::from_ref(&a), side, side, &|| false)?;
        let beside = self.pass(&[a, b], side, side, &|| false)?;
        Ok(if alone[0] == beside[0] { 1 } else { 2 })
    }

    /// Runs `inputs` in passes of at most `most` images, each padded to at least
    /// `least_per_pass` (on a GPU to `most`), sizes balanced (9 images, at most 4 a pass: 3 + 3 + 3, never
    /// 4 + 4 + 1).
    pub fn forward(&self, inputs: &[Vec<f32>], h: u32, w: u32, most: usize, cancel: Cancel) -> Result<Vec<Vec<f32>>, ModelError> {
        let most = most.max(self.least_per_pass.min(2));
        let least = self.least_per_pass.min(most);
        let passes = inputs.len().div_ceil(most);
        let mut out = Vec::with_capacity(inputs.len());
        let mut rest = inputs;
        for p in 0..passes {
            let (part, after) = rest.split_at(rest.len().div_ceil(passes - p));
            if part.len() < least {
                let pad = vec![0f32; part[0].len()];
                let mut padded = part.to_vec();
                padded.resize(least, pad);
                out.extend(self.pass(&padded, h, w, cancel)?.into_iter().take(part.len()));
            } else {
                out.extend(self.pass(part, h, w, cancel)?);
            }
            rest = after;
        }
        Ok(out)
    }

    /// One forward pass over preprocessed CHW inputs of one size; one vector each. `cancel` is
    /// asked before each layer.
    fn pass(&self, inputs: &[Vec<f32>], h: u32, w: u32, cancel: Cancel) -> Result<Vec<Vec<f32>>, ModelError> {
        let n = inputs.len() as i64;
        if n == 0 {
            return Ok(vec![]);
        }
        let mut flat: Vec<f32> = Vec::new();
        flat.try_reserve_exact(inputs.iter().map(Vec::len).sum()).map_err(|_| ModelError::Torch("out of memory for the input batch".into()))?;
        inputs.iter().for_each(|i| flat.extend_from_slice(i));
        tch::no_grad(|| {
            let mut x = Tensor::f_from_slice(&flat)
                .and_then(|t| t.f_view([n, 3, h as i64, w as i64]))
                .and_then(|t| t.f_to_device(self.device))
                .and_then(|t| channels_last(&t))
                .map_err(torch)?;
            if self.half {
                x = x.f_to_kind(Kind::Half).map_err(torch)?;
            }
            let mut y = x;
            for layer in &self.net {
                if cancel() {
                    return Err(ModelError::Cancelled);
                }
                y = layer.forward_t(&y, false);
            }
            let v = self.head(&y)?;
            let dims = self.manifest.dims;
            let mut out = vec![0f32; n as usize * dims];
            v.f_copy_data(&mut out, n as usize * dims).map_err(torch)?;
            Ok(out.chunks(dims).map(|c| c.to_vec()).collect())
        })
    }

    /// Feature maps → vectors: pooling, then normalisation as the manifest says.
    fn head(&self, y: &Tensor) -> Result<Tensor, ModelError> {
        let mut v = match self.manifest.output.pooling {
            Pooling::Avg => y.f_mean_dim([2i64, 3].as_slice(), false, Kind::Float),
            Pooling::Max => y.f_amax([2i64, 3].as_slice(), false).and_then(|t| t.f_to_kind(Kind::Float)),
            Pooling::Flatten => y.f_adaptive_avg_pool2d([7i64, 7].as_slice()).and_then(|t| t.f_flatten(1, -1)).and_then(|t| t.f_to_kind(Kind::Float)),
        }
        .map_err(torch)?;
        if self.manifest.output.normalize {
            // As torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
            let norm = v.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true).and_then(|t| t.f_clamp_min(1e-12)).map_err(torch)?;
            v = v.f_div(&norm).map_err(torch)?;
        }
        v.f_to_device(Device::Cpu).and_then(|t| t.f_contiguous()).map_err(torch)
    }
}

/// The same tensor laid out channels-last: NCHW shape, NHWC strides.
fn channels_last(t: &Tensor) -> Result<Tensor, tch::TchError> {
    t.f_permute([0i64, 2, 3, 1].as_slice())?.f_contiguous()?.f_permute([0i64, 3, 1, 2].as_slice())
}

/// Models loaded in this process, by (directory, name, device, half).
pub type Cache = HashMap<(String, String, String, bool), std::rc::Rc<Model>>;

/// "auto" | "cpu" | "cuda" | "cuda:N".
pub fn parse_device(s: &str) -> Result<Device, ModelError> {
    let cuda = |i: usize| {
        if !crate::cuda::available() {
            let why = crate::cuda::problem().map(|p| format!(" ({p})")).unwrap_or_default();
            return Err(ModelError::Device(format!("visual_search.device is \"{s}\" but libtorch sees no CUDA device{why}")));
        }
        if i >= crate::cuda::device_count() {
            return Err(ModelError::Device(format!("visual_search.device is \"{s}\" but there are {} CUDA devices", crate::cuda::device_count())));
        }
        Ok(Device::Cuda(i))
    };
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(if crate::cuda::available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(i) => cuda(i),
            None => Err(ModelError::Device(format!("visual_search.device must be auto, cpu, cuda or cuda:N, not \"{s}\""))),
        },
    }
}
