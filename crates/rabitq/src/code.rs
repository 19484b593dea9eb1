//! A vector's code: the signs of its rotated residual from the centroid, and the factors that
//! turn the bits' inner product with a query into a distance estimate.

use crate::rotation::Rotation;

/// One vector's code: with P = `Rotation::padded`, P bits and three factors (P / 8 + 12 bytes:
/// 4,108 for a 25,088-d vector of 100,352 bytes, 140 for a 784-d one of 3,136).
#[derive(Clone, Debug, PartialEq)]
pub struct Code {
    /// Bit i set: the rotated residual's coordinate i is ≥ 0.
    pub bits: Vec<u64>,
    /// ‖x − c‖.
    pub norm: f32,
    /// ⟨x̄, o⟩ for o the unit residual and x̄ the bits as ±1/√P: how well the bits describe o
    /// (about √(2/π) ≈ 0.8 in high dimensions); the estimator divides by it.
    pub dot: f32,
    /// ⟨x − c, c⟩, for inner-product distances.
    pub centroid_dot: f32,
}

/// Makes codes (and queries, `estimate::Query`) for vectors of one dimension: the rotation and
/// the centroid residuals are taken from (the mean of a sample, or zero).
#[derive(Clone, Debug)]
pub struct Quantizer {
    pub rotation: Rotation,
    pub centroid: Vec<f32>,
}

impl Quantizer {
    pub fn new(rotation: Rotation, centroid: Vec<f32>) -> Quantizer {
        assert_eq!(centroid.len(), rotation.dim(), "centroid of the wrong dimension");
        Quantizer { rotation, centroid }
    }

    /// The mean of `sample` (vectors of `dim` values) as the centroid: residuals from it are
    /// shorter than from the origin, and the estimates' error scales with their length.
    pub fn mean<'a>(rotation: Rotation, sample: impl IntoIterator<Item = &'a [f32]>) -> Quantizer {
        let dim = rotation.dim();
        let (mut sum, mut n) = (vec![0f64; dim], 0usize);
        for v in sample {
            sum.iter_mut().zip(v).for_each(|(s, x)| *s += *x as f64);
            n += 1;
        }
        let centroid = sum.into_iter().map(|s| if n == 0 { 0.0 } else { (s / n as f64) as f32 }).collect();
        Quantizer::new(rotation, centroid)
    }

    /// The rotated residual `x − c` and its length.
    pub(crate) fn residual(&self, x: &[f32]) -> (Vec<f32>, f32) {
        let r: Vec<f32> = x.iter().zip(&self.centroid).map(|(a, b)| a - b).collect();
        let norm = r.iter().map(|v| *v as f64 * *v as f64).sum::<f64>().sqrt() as f32;
        (self.rotation.apply(&r), norm)
    }

    pub fn encode(&self, x: &[f32]) -> Code {
        let (y, norm) = self.residual(x);
        let p = self.rotation.padded();
        let mut bits = vec![0u64; p / 64];
        for (i, v) in y.iter().enumerate() {
            if *v >= 0.0 {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        // ⟨x̄, y / ‖y‖⟩ = Σ|yᵢ| / (√P ‖y‖); a vector at the centroid has no direction, and its
        // estimate is exact whatever the bits say (its norm is 0).
        let abs: f64 = y.iter().map(|v| v.abs() as f64).sum();
        let dot = if norm > 0.0 { (abs / ((p as f64).sqrt() * norm as f64)) as f32 } else { 1.0 };
        let centroid_dot = x.iter().zip(&self.centroid).map(|(a, c)| (a - c) as f64 * *c as f64).sum::<f64>() as f32;
        Code { bits, norm, dot, centroid_dot }
    }
}
