//! A quantized index's quantizer (`WITH (quantize = on)`): the rotation, from the meta page's
//! seed, and the centroid, from its chunk tuples, read once per backend and index; and what the
//! phases ask of it: an element's code, a query prepared for estimates, distances between two
//! codes, a code's approximate vector.

use super::codec::as_bytes;
use super::page::{self, corrupt, item, Locked, Meta, QuantMeta, NO_ENTRY};
use crate::types::datum::SqlScalar;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use vs_hnsw::tuple::{self, block_of, offset_of, Id, INLINE};
use vs_rabitq::code::{code_size, CodeRef, Quantizer};
use vs_rabitq::estimate::{l2_squared_between, negative_dot_between, Query};
use vs_rabitq::rotation::Rotation;

/// As many as the types hold: a code of more than 32,768 dimensions (65,536 rotated bits, 8,204
/// bytes) is split over the element and its lists tuple.
pub const MAX_DIM: usize = 65_535;

/// The rotation's seed for new indexes: any fixed value (the bound holds for a random rotation,
/// not for a secret one), kept on the meta page so a later version may choose others.
pub const SEED: u64 = 0x7673_7261_6269_7471;

/// Floats a centroid chunk holds: 7,600 bytes, a page each.
const CHUNK: usize = 1900;

pub struct Quant {
    pub quantizer: Quantizer,
    l2: bool,
    centroid_norm2: f32,
}

thread_local! {
    /// By (database, relfilenode): a REINDEX or TRUNCATE makes a new relfilenode, and nothing
    /// else changes a centroid once written.
    static CACHE: RefCell<HashMap<(u32, u32), Rc<Quant>>> = RefCell::new(HashMap::new());
}

/// The quantizer of a quantized index, None for one without codes or without a dimension yet.
pub unsafe fn of(index: pg_sys::Relation, meta: &Meta) -> Option<Rc<Quant>> {
    let q = meta.quant?;
    if q.centroid == NO_ENTRY {
        return None;
    }
    let node = unsafe { (*index).rd_node };
    let key = (node.dbNode.to_u32(), node.relNode.to_u32());
    if let Some(found) = CACHE.with_borrow(|c| c.get(&key).cloned()) {
        return Some(found);
    }
    let centroid = unsafe { read_centroid(index, q.centroid, meta.dim as usize) };
    let quant = Rc::new(Quant::new(meta, q, centroid));
    CACHE.with_borrow_mut(|c| c.insert(key, quant.clone()));
    Some(quant)
}

impl Quant {
    fn new(meta: &Meta, q: QuantMeta, centroid: Vec<f32>) -> Quant {
        let centroid_norm2 = centroid.iter().map(|c| c * c).sum();
        Quant { quantizer: Quantizer::new(Rotation::new(meta.dim as usize, q.seed), centroid), l2: meta.opclass.is_l2(), centroid_norm2 }
    }

    pub fn encode<T: SqlScalar>(&self, v: &[T]) -> Vec<u8> {
        let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
        self.quantizer.encode(&f).0
    }

    /// `q` prepared for estimates; `seed` drives its randomized rounding.
    pub fn query<T: SqlScalar>(&self, q: &[T], seed: u64) -> Query {
        let f: Vec<f32> = q.iter().map(|x| x.to_f32()).collect();
        Query::new(&self.quantizer, &f, seed)
    }

    /// The graph's distance (squared L2, or the negative inner product) from a query to a code.
    pub fn estimate(&self, query: &Query, code: &[u8]) -> f32 {
        let c = CodeRef(code);
        if self.l2 {
            query.l2_squared(c).distance
        } else {
            query.negative_dot(c).distance
        }
    }

    /// The graph's distance between two codes.
    pub fn between(&self, a: &[u8], b: &[u8]) -> f32 {
        if self.l2 {
            l2_squared_between(CodeRef(a), CodeRef(b))
        } else {
            negative_dot_between(CodeRef(a), CodeRef(b), self.centroid_norm2)
        }
    }

    pub fn decode<T: SqlScalar>(&self, code: &[u8]) -> Vec<T> {
        self.quantizer.decode(CodeRef(code)).into_iter().map(T::from_f32).collect()
    }

    /// Whether `bytes` are a code of this quantizer's size.
    pub fn fits(&self, bytes: &[u8]) -> bool {
        bytes.len() == code_size(self.quantizer.rotation.padded())
    }
}

/// Writes `centroid` as chunk tuples; returns where the first is. The meta page names it once
/// the caller has made it visible (under the lock that decides the dimension).
pub unsafe fn write_centroid(index: pg_sys::Relation, centroid: &[f32]) -> Id {
    let mut next = INLINE;
    for chunk in centroid.chunks(CHUNK).rev() {
        let t = tuple::centroid_chunk(next, as_bytes(chunk));
        next = unsafe { page::place(index, &[&t]) }[0];
    }
    next
}

unsafe fn read_centroid(index: pg_sys::Relation, first: Id, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(dim);
    let mut at = Some(first);
    while let Some(id) = at {
        unsafe {
            let b = Locked::read(index, block_of(id), false);
            let Some((values, next)) = item(b.page(), offset_of(id)).and_then(|t| tuple::read_chunk(t)) else {
                corrupt(index, "its centroid chain is broken");
            };
            out.extend(values.chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())));
            at = next;
        }
        if out.len() > dim {
            unsafe { corrupt(index, "its centroid is longer than its dimension") };
        }
    }
    if out.len() != dim {
        unsafe { corrupt(index, "its centroid is shorter than its dimension") };
    }
    out
}

/// The quantizer's part of a new index's meta page, once its dimension is known: a rotation of
/// that dimension, and the centroid (written by the caller).
pub fn meta_for(dim: usize, centroid: Id) -> QuantMeta {
    QuantMeta { seed: SEED, centroid, padded: Rotation::new(dim.max(1), SEED).padded() as u32 }
}
