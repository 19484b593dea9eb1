//! `models/<name>/manifest.json`: everything needed to reproduce a vector — architecture, input
//! preprocessing, output layer, pooling, dimensions and the weights' sha256. Free of pgrx and of
//! libtorch: the main library lists models from it without loading the engine.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `vs_embed::preprocess` does to an image before the network: torchvision's `Resize`,
/// `CenterCrop` and `Normalize`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Resize so that the shorter side has this length (torchvision's `Resize(int)`); none keeps
    /// the image as it is.
    pub resize: Option<u32>,
    /// Centre crop to a square of this side; none keeps the whole (resized) image.
    pub crop: Option<u32>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Global average pool of the last feature map (VGG16's conv5: 512 × width dims;
    /// EfficientNet-Lite0's head: 1,280).
    Avg,
    /// Global max pool of the last feature map.
    Max,
    /// conv5 average-pooled to 7 × 7 and flattened, as torchvision's VGG feeds its classifier:
    /// 7 × 7 × 512 = 25,088 dims (the original design's feature); 62,720 for EfficientNet-Lite0.
    Flatten,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub pooling: Pooling,
    #[serde(default)]
    pub normalize: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub file: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub architecture: String,
    /// Channel multiplier on torchvision's VGG16 (1.0 = torchvision's own).
    #[serde(default = "one")]
    pub width: f64,
    #[serde(default)]
    pub batch_norm: bool,
    pub input: Preprocess,
    pub output: Output,
    pub dims: usize,
    pub weights: Weights,
    #[serde(default)]
    pub description: String,
    /// The weights' licence (SPDX identifier where there is one).
    #[serde(default)]
    pub licence: String,
    /// Where the weights come from: a package, a file, or the train command.
    #[serde(default)]
    pub source: String,
}

/// The networks image_embed can build, by the manifest's `architecture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// torchvision's VGG16 (`features.N.*`), with a channel multiplier and optional BatchNorm.
    Vgg16,
    /// EfficientNet-Lite0 in the `efficientnet-lite-pytorch` layout (`_conv_stem`, `_blocks.N.*`).
    EfficientNetLite0,
}

impl Architecture {
    pub const NAMES: [(&'static str, Architecture); 2] = [("vgg16", Architecture::Vgg16), ("efficientnet-lite0", Architecture::EfficientNetLite0)];

    pub fn parse(s: &str) -> Option<Architecture> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, a)| *a)
    }
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, PartialEq)]
pub enum ModelError {
    BadName(String),
    Unknown {
        name: String,
        dir: PathBuf,
    },
    Manifest {
        path: PathBuf,
        why: String,
    },
    WeightsMissing(PathBuf),
    WeightsCorrupt {
        path: PathBuf,
        why: String,
    },
    ShaMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    Device(String),
    Torch(String),
    /// A forward pass stopped between two layers because the query is being cancelled.
    Cancelled,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ModelError::BadName(n) => write!(f, "invalid model name \"{n}\": use letters, digits, '.', '_' and '-'"),
            ModelError::Unknown { name, dir } => write!(f, "model \"{name}\" not found in {}", dir.display()),
            ModelError::Manifest { path, why } => write!(f, "invalid model manifest {}: {why}", path.display()),
            ModelError::WeightsMissing(p) => write!(f, "weights file {} not found", p.display()),
            ModelError::WeightsCorrupt { path, why } => write!(f, "weights file {} is corrupt: {why}", path.display()),
            ModelError::ShaMismatch { path, expected, actual } => {
                write!(f, "weights file {} does not match its manifest: sha256 is {actual}, manifest says {expected}", path.display())
            }
            ModelError::Device(why) => write!(f, "{why}"),
            ModelError::Torch(why) => write!(f, "libtorch: {why}"),
            ModelError::Cancelled => write!(f, "cancelled"),
        }
    }
}

/// Channels of EfficientNet-Lite0's head, the map its vectors are pooled from.
pub const LITE0_HEAD: i64 = 1280;

/// VGG16's conv layers ("D" configuration); 0 marks a 2×2 max pool.
pub const VGG16: [i64; 18] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];

pub fn scaled(channels: i64, width: f64) -> i64 {
    ((channels as f64 * width).round() as i64).max(1)
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Manifest {
    /// Reads and checks `<dir>/<name>/manifest.json`; returns it with the weights' path.
    pub fn load(dir: &Path, name: &str) -> Result<(Manifest, PathBuf), ModelError> {
        if !valid_name(name) {
            return Err(ModelError::BadName(name.to_string()));
        }
        let path = dir.join(name).join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|_| ModelError::Unknown { name: name.to_string(), dir: dir.to_path_buf() })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| ModelError::Manifest { path: path.clone(), why: e.to_string() })?;
        m.check().map_err(|why| ModelError::Manifest { path: path.clone(), why })?;
        let weights = dir.join(name).join(&m.weights.file);
        Ok((m, weights))
    }

    /// The architecture; `load` has checked that it is one of `Architecture::NAMES`.
    pub fn arch(&self) -> Architecture {
        Architecture::parse(&self.architecture).unwrap_or(Architecture::Vgg16)
    }

    /// Channels of the last feature map, which the pooling turns into the vector.
    pub fn last_channels(&self) -> i64 {
        match self.arch() {
            Architecture::Vgg16 => scaled(512, self.width),
            Architecture::EfficientNetLite0 => LITE0_HEAD,
        }
    }

    fn check(&self) -> Result<(), String> {
        let Some(arch) = Architecture::parse(&self.architecture) else {
            let known: Vec<&str> = Architecture::NAMES.iter().map(|(n, _)| *n).collect();
            return Err(format!("architecture \"{}\" is not supported ({} are)", self.architecture, known.join(", ")));
        };
        if !(self.width > 0.0 && self.width <= 4.0) {
            return Err(format!("width {} is outside (0, 4]", self.width));
        }
        if arch == Architecture::EfficientNetLite0 && (self.width != 1.0 || self.batch_norm) {
            return Err("efficientnet-lite0 has width 1 and its own BatchNorm: leave width and batch_norm unset".into());
        }
        let w = &self.weights.file;
        // Only safetensors, and only a file beside the manifest: never pickle, never a path.
        if !w.ends_with(".safetensors") || !valid_name(w) {
            return Err(format!("weights file \"{w}\" must be a .safetensors file beside the manifest"));
        }
        if self.weights.sha256.len() != 64 || !self.weights.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("weights.sha256 must be 64 hexadecimal digits".into());
        }
        let side = self.input.crop.or(self.input.resize).unwrap_or(0);
        if !(32..=1024).contains(&side) {
            return Err(format!("input size {side} must be between 32 and 1024 (set input.crop or input.resize)"));
        }
        if self.input.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err("input.std must be finite and non-zero".into());
        }
        let c = self.last_channels() as usize;
        let want = match self.output.pooling {
            Pooling::Avg | Pooling::Max => c,
            Pooling::Flatten => 49 * c,
        };
        if self.dims != want {
            return Err(format!("dims is {} but {:?} pooling of this network gives {want}", self.dims, self.output.pooling));
        }
        if self.dims > vs_vector::text::MAX_DIM {
            return Err(format!("dims {} exceeds the embedding limit", self.dims));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Manifest {
        Manifest {
            name: "m".into(),
            architecture: "vgg16".into(),
            width: 1.0,
            batch_norm: false,
            input: Preprocess { resize: Some(256), crop: Some(224), mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
            output: Output { pooling: Pooling::Avg, normalize: false },
            dims: 512,
            weights: Weights { file: "w.safetensors".into(), sha256: "0".repeat(64) },
            description: String::new(),
            licence: String::new(),
            source: String::new(),
        }
    }

    #[test]
    fn manifests_are_checked() {
        assert_eq!(sample().check(), Ok(()));
        let mut m = sample();
        m.weights.file = "vgg16-397923af.pth".into();
        assert!(m.check().unwrap_err().contains("safetensors"));
        m.weights.file = "../x.safetensors".into();
        assert!(m.check().is_err());
        let mut m = sample();
        m.output.pooling = Pooling::Flatten;
        assert!(m.check().unwrap_err().contains("25088"));
        m.dims = 25088;
        assert_eq!(m.check(), Ok(()));
        let mut m = sample();
        m.width = 0.125;
        m.dims = 64;
        assert_eq!(m.check(), Ok(()));
        let mut m = sample();
        m.architecture = "efficientnet-lite0".into();
        assert!(m.check().unwrap_err().contains("1280"));
        m.dims = 1280;
        assert_eq!(m.check(), Ok(()));
        m.output.pooling = Pooling::Flatten;
        m.dims = 62_720;
        assert_eq!(m.check(), Ok(()));
        m.width = 0.5;
        assert!(m.check().unwrap_err().contains("width 1"));
        m.architecture = "resnet50".into();
        assert!(m.check().unwrap_err().contains("vgg16, efficientnet-lite0"));
    }

    #[test]
    fn model_names_cannot_escape_the_model_directory() {
        for bad in ["", "..", "../etc", "a/b", ".hidden", "x y"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("fashion-vgg16_v1.2"));
        assert!(matches!(Manifest::load(Path::new("/nonexistent"), "../x"), Err(ModelError::BadName(_))));
        assert!(matches!(Manifest::load(Path::new("/nonexistent"), "x"), Err(ModelError::Unknown { .. })));
    }
}
