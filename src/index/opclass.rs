//! What an index's operator class says, decoded once: the distance the index orders by and the
//! element type it stores. The SQL support function and the meta page hold them as codes.

use crate::glue::error::error;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode::*;
use vs_hnsw::metric::Metric;

/// The element type of the indexed column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// embedding
    F32,
    /// halfembedding
    F16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opclass {
    /// The distance users order by: L2, inner product, cosine or L1.
    pub metric: Metric,
    pub kind: Kind,
}

impl Opclass {
    /// From the codes: `Metric::code`, and kind 0 f32, 1 f16. None for a code no version wrote.
    pub fn decode(metric: u32, kind: u32) -> Option<Opclass> {
        let kind = match kind {
            0 => Kind::F32,
            1 => Kind::F16,
            _ => return None,
        };
        Some(Opclass { metric: Metric::from_code(metric)?, kind })
    }

    /// Support function 1's value: metric | kind << 8.
    pub fn from_support(code: u32) -> Option<Opclass> {
        Opclass::decode(code & 0xff, code >> 8)
    }

    pub const fn codes(self) -> (u32, u32) {
        let kind = match self.kind {
            Kind::F32 => 0,
            Kind::F16 => 1,
        };
        (self.metric.code(), kind)
    }

    /// The value of the opclass's support function 1.
    pub const fn support(self) -> u32 {
        let (metric, kind) = self.codes();
        metric | kind << 8
    }

    /// The operator class of `index`'s column, from its support function.
    pub unsafe fn of_index(index: pg_sys::Relation) -> Opclass {
        let code = unsafe {
            let proc = pg_sys::index_getprocid(index, 1, 1);
            pg_sys::OidFunctionCall1Coll(proc, pg_sys::InvalidOid, pg_sys::Datum::from(0usize)).value() as u32
        };
        Opclass::from_support(code)
            .unwrap_or_else(|| error(ERRCODE_INVALID_OBJECT_DEFINITION, format!("vs_hnsw support function 1 returned {code}, which names no operator class")))
    }

    /// The graph's metric: cosine is an inner product between vectors normalised before they
    /// enter the graph (and the query too).
    pub fn graph_metric(self) -> Metric {
        match self.metric {
            Metric::Cosine => Metric::InnerProduct,
            m => m,
        }
    }

    pub fn normalises(self) -> bool {
        self.metric == Metric::Cosine
    }

    pub fn is_l2(self) -> bool {
        self.metric == Metric::L2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_refused() {
        for metric in 0..4 {
            for kind in 0..2 {
                assert_eq!(Opclass::decode(metric, kind).unwrap().codes(), (metric, kind));
            }
        }
        let half_cosine = Opclass { metric: Metric::Cosine, kind: Kind::F16 };
        assert_eq!(Opclass::from_support(half_cosine.support()), Some(half_cosine));
        assert_eq!(Opclass::decode(4, 0), None);
        assert_eq!(Opclass::decode(0, 2), None);
    }
}
