//! libtorch inside a PostgreSQL backend.

use crate::guc;
use pgrx::prelude::*;
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Applies `visual_search.threads` (capped by `max_threads`) before any libtorch work in this
/// backend.
pub fn configure_threads() {
    tch::set_num_threads(guc::threads() as i32);
}

/// Runs a fixed 3×3 convolution on a ramp image and returns the sum of the output: a check that
/// libtorch is linked and computes inside the server. The expected value is derived by hand in
/// the regression test (each output pixel is the sum of its 3×3 neighbourhood).
pub fn conv_smoke() -> f64 {
    configure_threads();
    let _guard = tch::no_grad_guard();
    let vs = nn::VarStore::new(Device::Cpu);
    let conv = nn::conv2d(vs.root(), 1, 1, 3, nn::ConvConfig { bias: false, ..Default::default() });
    tch::no_grad(|| {
        let mut w = conv.ws.shallow_clone();
        let _ = w.fill_(1.0);
    });
    let input = Tensor::arange(16, (Kind::Float, Device::Cpu)).reshape([1, 1, 4, 4]);
    conv.forward(&input).sum(Kind::Double).double_value(&[])
}

#[pg_extern(sql = false)]
fn torch_smoke() -> f64 {
    conv_smoke()
}

#[pg_extern(sql = false)]
fn torch_info() -> String {
    configure_threads();
    format!("libtorch threads={} cuda={}", tch::get_num_threads(), tch::Cuda::is_available())
}
