//! A vector's code: the signs of its rotated residual from the centroid, and the factors that
//! turn the bits' inner product with a query into a distance estimate.

use crate::rotation::Rotation;

/// One vector's code, as it is stored: with P = `Rotation::padded`, three f32 factors then P
/// bits (12 + P / 8 bytes: 4,108 for a 25,088-d vector of 100,352 bytes, 140 for a 784-d one of
/// 3,136). The factors: ‖x − c‖; ⟨x̄, o⟩ for o the unit residual and x̄ the bits as ±1/√P, how
/// well the bits describe o (about √(2/π) ≈ 0.8 in high dimensions; the estimator divides by
/// it); ⟨x − c, c⟩, for inner products. Bit i set: the rotated residual's coordinate i is ≥ 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Code(pub Vec<u8>);

/// A code read in place (from an index page).
#[derive(Clone, Copy, Debug)]
pub struct CodeRef<'a>(pub &'a [u8]);

const FACTORS: usize = 12;

/// Bytes of the code of a vector of `padded` rotated dimensions.
pub fn code_size(padded: usize) -> usize {
    FACTORS + padded / 8
}

impl Code {
    pub fn as_ref(&self) -> CodeRef<'_> {
        CodeRef(&self.0)
    }
}

impl<'a> CodeRef<'a> {
    fn factor(self, i: usize) -> f32 {
        f32::from_ne_bytes(self.0[4 * i..4 * i + 4].try_into().expect("a code has its factors"))
    }
    pub fn norm(self) -> f32 {
        self.factor(0)
    }
    pub fn dot(self) -> f32 {
        self.factor(1)
    }
    pub fn centroid_dot(self) -> f32 {
        self.factor(2)
    }
    /// The bits, 64 at a time (bit i of the code is bit i % 64 of word i / 64).
    pub fn words(self) -> impl Iterator<Item = u64> + 'a {
        self.0[FACTORS..].chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("whole words")))
    }
    /// Rotated dimensions the code has.
    pub fn padded(self) -> usize {
        (self.0.len() - FACTORS) * 8
    }
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
        let mut out = vec![0u8; code_size(p)];
        for (i, v) in y.iter().enumerate() {
            if *v >= 0.0 {
                out[FACTORS + i / 8] |= 1 << (i % 8);
            }
        }
        // ⟨x̄, y / ‖y‖⟩ = Σ|yᵢ| / (√P ‖y‖); a vector at the centroid has no direction, and its
        // estimate is exact whatever the bits say (its norm is 0).
        let abs: f64 = y.iter().map(|v| v.abs() as f64).sum();
        let dot = if norm > 0.0 { (abs / ((p as f64).sqrt() * norm as f64)) as f32 } else { 1.0 };
        let centroid_dot = x.iter().zip(&self.centroid).map(|(a, c)| (a - c) as f64 * *c as f64).sum::<f64>() as f32;
        for (i, f) in [norm, dot, centroid_dot].into_iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&f.to_ne_bytes());
        }
        Code(out)
    }

    /// The vector a code stands for, as near as its bits tell: the centroid plus the bits' unit
    /// direction (±1/√P) rotated back, at the residual's length. For what needs a vector of a
    /// stored element and has only its code (VACUUM's search for an element's neighbours).
    pub fn decode(&self, code: CodeRef) -> Vec<f32> {
        let p = self.rotation.padded();
        let unit = code.norm() / (p as f32).sqrt();
        let mut y = Vec::with_capacity(p);
        for w in code.words() {
            y.extend((0..64).map(|i| if w >> i & 1 == 1 { unit } else { -unit }));
        }
        self.rotation.invert(&y).iter().zip(&self.centroid).map(|(r, c)| r + c).collect()
    }
}
