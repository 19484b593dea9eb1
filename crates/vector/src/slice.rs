//! Which elements `subvector(v, start, count)` takes: the SQL `substring` convention, 1-based,
//! clipped to the vector, as pgvector defines it for users moving over.

use crate::text::VecError;
use std::ops::Range;

/// The 0-based range of `subvector(v, start, count)` on a vector of `dim` elements; `Empty`
/// when no element is left (a vector has at least one).
pub fn subvector_range(dim: usize, start: i32, count: i32) -> Result<Range<usize>, VecError> {
    if count < 1 {
        return Err(VecError::Empty);
    }
    // i64: start + count overflows i32 for start near i32::MAX.
    let (start, end) = (start as i64, start as i64 + count as i64);
    let first = start.max(1);
    let end = end.min(dim as i64 + 1);
    if first >= end {
        return Err(VecError::Empty);
    }
    Ok(first as usize - 1..end as usize - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(start: i32, count: i32) -> Option<Range<usize>> {
        subvector_range(5, start, count).ok()
    }

    #[test]
    fn takes_what_substring_would() {
        assert_eq!(sub(1, 3), Some(0..3));
        assert_eq!(sub(3, 2), Some(2..4));
        assert_eq!(sub(-1, 3), Some(0..1));
        assert_eq!(sub(3, 9), Some(2..5));
        assert_eq!(sub(3, i32::MAX), Some(2..5));
        assert_eq!(sub(-2147483644, i32::MAX), Some(0..2));
    }

    #[test]
    fn refuses_what_leaves_nothing() {
        assert_eq!(sub(1, 0), None);
        assert_eq!(sub(3, -1), None);
        assert_eq!(sub(-1, 2), None);
        assert_eq!(sub(6, 1), None);
        assert_eq!(sub(i32::MAX, 10), None);
    }
}
