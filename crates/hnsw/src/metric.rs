//! The distances a graph orders its nodes by, with the codes the index stores for them.

use vs_vector::kernels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Squared L2: the same order as L2, without the square root.
    L2,
    /// Negative inner product.
    InnerProduct,
    /// 1 − cosine similarity.
    Cosine,
    /// Sum of absolute differences (taxicab).
    L1,
}

impl Metric {
    /// The metric as stored (index meta page, shared memory): 0 L2, 1 inner product, 2 cosine,
    /// 3 L1.
    pub const fn code(self) -> u32 {
        match self {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
            Metric::L1 => 3,
        }
    }

    /// None for a code no version writes.
    pub const fn from_code(code: u32) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::InnerProduct),
            2 => Some(Metric::Cosine),
            3 => Some(Metric::L1),
            _ => None,
        }
    }

    /// `distance`, or any value above `bound` when the distance is above it.
    pub fn distance_bounded(self, a: &[f32], b: &[f32], bound: f32) -> f32 {
        match self {
            Metric::L2 => kernels::l2_squared_bounded(a, b, bound),
            _ => self.distance(a, b),
        }
    }

    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => kernels::l2_squared(a, b),
            Metric::InnerProduct => -kernels::dot(a, b),
            Metric::Cosine => kernels::cosine_distance(a, b) as f32,
            Metric::L1 => kernels::l1(a, b),
        }
    }
}
