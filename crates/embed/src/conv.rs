//! The convolution every network here uses, and the layer type a forward pass steps through.

use tch::{nn, Kind, Tensor};

/// A 2-D convolution that never uses TF32 on a GPU: cuDNN does by default, and its 10-bit
/// mantissa moved VGG16's vectors 2.5e-4 (relative) away from the CPU's on an H100. In half
/// precision the input is f16 and this changes nothing.
///
/// `same` pads as TensorFlow's "SAME" does, from the input's size: for a stride of 2 on an even
/// side the extra row and column go after the image, not around it (EfficientNet's weights come
/// from TensorFlow and are only right with its padding).
#[derive(Debug)]
pub struct Conv {
    pub conv: nn::Conv2D,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub same: bool,
}

impl Conv {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64, bias: bool, same: bool) -> Conv {
        let padding = kernel / 2;
        let cfg = nn::ConvConfig { stride, padding, groups, bias, ..Default::default() };
        Conv { conv: nn::conv2d(p, c_in, c_out, kernel, cfg), kernel, stride, padding, groups, same }
    }

    /// "SAME" padding as [left, right, top, bottom] where it is not `padding` on every side:
    /// only a stride of 2 on an even side, which pads k/2 - 1 before and k/2 after.
    fn uneven_pad(&self, x: &Tensor) -> Option<[i64; 4]> {
        if !self.same || self.stride == 1 {
            return None;
        }
        let side = |n: i64| {
            let total = (((n + self.stride - 1) / self.stride - 1) * self.stride + self.kernel - n).max(0);
            (total / 2, total - total / 2)
        };
        let size = x.size();
        let ((t, b), (l, r)) = (side(size[2]), side(size[3]));
        (t != b || l != r).then_some([l, r, t, b])
    }
}

impl nn::Module for Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        let padded = self.uneven_pad(x).map(|p| x.constant_pad_nd(p));
        let (x, pad) = match &padded {
            Some(p) => (p, 0),
            None => (x, self.padding),
        };
        let c = &self.conv;
        let gpu_f32 = x.device().is_cuda() && x.kind() == Kind::Float;
        if !gpu_f32 && pad == self.padding {
            return c.forward(x);
        }
        x.internal_convolution(&c.ws, c.bs.as_ref(), [self.stride; 2], [pad; 2], [1, 1], false, [0, 0], self.groups, false, false, true, !gpu_f32)
    }
}

/// One layer of a network, boxed so that a forward pass can stop between two of them.
#[derive(Debug)]
pub struct Layer(pub Box<dyn nn::ModuleT>);

impl nn::ModuleT for Layer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.0.forward_t(x, train)
    }
}
