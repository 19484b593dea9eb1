//! A random orthogonal transform of R^dim. RaBitQ's bound holds for a rotation drawn at random,
//! and a dense one for 25,088 dimensions would be a 2.5 GB matrix and 630 M multiplications a
//! vector. Instead, vectors are padded with zeros to the next power of two and go through three
//! rounds of random sign flips each followed by a normalised Walsh–Hadamard transform (as in the
//! fast Johnson–Lindenstrauss transforms): O(P log P) time, P bits of state a round.

/// Rounds of sign flips and Hadamard transforms: one leaves sparse inputs visibly structured
/// (a vector with one nonzero maps to equal magnitudes, whatever the signs), three do not.
const ROUNDS: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    dim: usize,
    padded: usize,
    /// ROUNDS × padded sign bits (1: flip).
    signs: Vec<u64>,
}

impl Rotation {
    /// The rotation of seed `seed` for vectors of `dim` (≥ 1) dimensions.
    pub fn new(dim: usize, seed: u64) -> Rotation {
        assert!(dim >= 1, "a rotation needs at least one dimension");
        let padded = dim.next_power_of_two().max(64);
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        let signs = (0..ROUNDS * padded / 64).map(|_| splitmix(&mut s)).collect();
        Rotation { dim, padded, signs }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The dimensions of a rotated vector: `dim` rounded up to a power of two (at least 64,
    /// so that a code is whole words).
    pub fn padded(&self) -> usize {
        self.padded
    }

    /// `x` (of `dim` values) rotated, `padded` values.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.dim, "vector of the wrong dimension");
        let mut v = vec![0f32; self.padded];
        v[..self.dim].copy_from_slice(x);
        let scale = 1.0 / (self.padded as f32).sqrt();
        for round in 0..ROUNDS {
            let words = &self.signs[round * self.padded / 64..(round + 1) * self.padded / 64];
            for (i, x) in v.iter_mut().enumerate() {
                if words[i / 64] >> (i % 64) & 1 == 1 {
                    *x = -*x;
                }
            }
            hadamard(&mut v);
            v.iter_mut().for_each(|x| *x *= scale);
        }
        v
    }
}

impl Rotation {
    /// The inverse of `apply`: `y` (of `padded` values) rotated back, its first `dim` values.
    /// Each round is orthogonal and symmetric but for its sign flips, so the rounds run backwards
    /// with the flips after the transform.
    pub fn invert(&self, y: &[f32]) -> Vec<f32> {
        assert_eq!(y.len(), self.padded, "rotated vector of the wrong dimension");
        let mut v = y.to_vec();
        let scale = 1.0 / (self.padded as f32).sqrt();
        for round in (0..ROUNDS).rev() {
            hadamard(&mut v);
            v.iter_mut().for_each(|x| *x *= scale);
            let words = &self.signs[round * self.padded / 64..(round + 1) * self.padded / 64];
            for (i, x) in v.iter_mut().enumerate() {
                if words[i / 64] >> (i % 64) & 1 == 1 {
                    *x = -*x;
                }
            }
        }
        v.truncate(self.dim);
        v
    }
}

/// The Walsh–Hadamard transform in place (unnormalised), `v.len()` a power of two.
fn hadamard(v: &mut [f32]) {
    let mut h = 1;
    while h < v.len() {
        for block in v.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                (*x, *y) = (*x + *y, *x - *y);
            }
        }
        h *= 2;
    }
}

/// SplitMix64: well-mixed words from any seed, 0 included.
fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn seeded(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || splitmix(&mut s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vs_vector::kernels::random_vectors;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn keeps_lengths_and_angles() {
        for dim in [1, 3, 128, 784, 25_088] {
            let r = Rotation::new(dim, 7);
            let xs = random_vectors(4, dim, dim as u64);
            let ys: Vec<Vec<f32>> = xs.iter().map(|x| r.apply(x)).collect();
            for i in 0..4 {
                for j in 0..4 {
                    let (before, after) = (dot(&xs[i], &xs[j]), dot(&ys[i], &ys[j]));
                    assert!((before - after).abs() <= 1e-4 * dot(&xs[i], &xs[i]).max(1.0), "dim {dim}: {before} became {after}");
                }
            }
        }
    }

    #[test]
    fn invert_undoes_apply() {
        for dim in [5, 784, 25_088] {
            let r = Rotation::new(dim, 3);
            let x = random_vectors(1, dim, 1).remove(0);
            let back = r.invert(&r.apply(&x));
            let err = x.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err <= 1e-5, "dim {dim}: {err}");
        }
    }

    #[test]
    fn spreads_a_single_coordinate_and_depends_on_the_seed() {
        let mut e = vec![0f32; 784];
        e[5] = 1.0;
        let (a, b) = (Rotation::new(784, 1).apply(&e), Rotation::new(784, 2).apply(&e));
        // Every coordinate carries about 1/√P of a unit vector's length, none all of it.
        assert!(a.iter().all(|x| x.abs() < 0.2), "max {}", a.iter().fold(0f32, |m, x| m.max(x.abs())));
        assert_ne!(a, b);
        assert_eq!(a, Rotation::new(784, 1).apply(&e), "the same seed gives the same rotation");
    }
}
