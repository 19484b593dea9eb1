//! An index column value on its way into the graph and back: checked (`check_dim`), normalised
//! for cosine (`prepare`), stored as bytes (`encode`, f32 packed as f16 when exact), read back
//! (`vector_of`) and compared (`distance`, `distance_to`) as the graph orders elements.

use super::opclass::Opclass;
use super::page::Meta;
use crate::glue::error::error;
use crate::types::datum::{SqlScalar, VecRef};
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use vs_hnsw::metric::Metric;
use vs_hnsw::select::copy_floor;
use vs_hnsw::tuple::{ElementTuple, Shape};
use vs_vector::kernels;

pub const MAX_DIM_F32: usize = 2000;
pub const MAX_DIM_F16: usize = 4000;

/// Distance between a query and a stored element, as the graph orders them; an L2 distance may
/// stop early once above `bound` (any value above it is then returned).
#[inline]
pub fn distance<T: SqlScalar>(op: Opclass, q: &[T], v: &[T], bound: f32) -> f32 {
    match op.metric {
        Metric::L2 => kernels::l2_squared_bounded(q, v, bound),
        Metric::L1 => kernels::l1(q, v),
        Metric::InnerProduct | Metric::Cosine => -kernels::dot(q, v),
    }
}

/// Distances to the copies of an element with vector `v` are at most this (`copy_floor`).
pub fn floor_of<T: SqlScalar>(op: Opclass, v: &[T]) -> f32 {
    copy_floor(if op.is_l2() { 0.0 } else { distance(op, v, v, f32::INFINITY) })
}

/// An index column value as the graph holds it; None for values the index leaves out (NULL,
/// and for cosine the zero vector, whose direction is undefined).
pub unsafe fn prepare<T: SqlScalar>(datum: pg_sys::Datum, is_null: bool, meta: &Meta) -> Option<Vec<T>> {
    let v = unsafe { VecRef::<T>::from_polymorphic_datum(datum, is_null, pg_sys::InvalidOid) }?;
    check_dim::<T>(v.dim(), meta.dim as usize, meta.quant.is_some());
    if meta.opclass.normalises() {
        normalized(v.data)
    } else {
        Some(v.data.to_vec())
    }
}

/// `v` scaled to length 1 (cosine's graph holds unit vectors); None for the zero vector. The
/// norm comes from the f32 kernel when that is accurate, else from f64 sums: vectors with huge
/// (near f32::MAX) or tiny (below 1e-19) values have a direction too, and were left out.
pub fn normalized<T: SqlScalar>(v: &[T]) -> Option<Vec<T>> {
    let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    let squared = kernels::dot(&f, &f);
    if kernels::f32_norm_is_exact(squared) {
        let norm = squared.sqrt();
        return Some(f.iter().map(|x| T::from_f32(x / norm)).collect());
    }
    let norm = kernels::squared_norm_f64(&f).sqrt();
    (norm > 0.0).then(|| f.iter().map(|&x| T::from_f32((x as f64 / norm) as f32)).collect())
}

/// Checks a vector's dimension against the index's limits and its dimension (0: none yet).
/// Elements hold their vector, so f32 vectors stop at 2,000 dimensions and f16 at 4,000; a
/// quantized index's codes go to `quant::MAX_DIM`.
pub fn check_dim<T: SqlScalar>(dim: usize, index_dim: usize, quantized: bool) {
    let max = match (quantized, std::mem::size_of::<T>()) {
        (true, _) => super::quant::MAX_DIM,
        (false, 4) => MAX_DIM_F32,
        (false, _) => MAX_DIM_F16,
    };
    if dim > max {
        let hint = if quantized { "" } else { " (WITH (quantize = on) indexes more)" };
        error(ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("vs_hnsw indexes {} of at most {max} dimensions, not {dim}{hint}", T::TYPE_NAME));
    }
    if index_dim != 0 && dim != index_dim {
        error(ERRCODE_DATA_EXCEPTION, format!("expected {index_dim} dimensions, not {dim}"));
    }
}

/// The bytes an element stores for `v`, and whether they are f32 packed as f16 (when every
/// element converts exactly).
pub fn encode<T: SqlScalar>(v: &[T]) -> (Vec<u8>, bool) {
    if std::mem::size_of::<T>() == 4 && kernels::exact_as_f16(v.iter().map(|x| x.to_f32())) {
        let h: Vec<f16> = v.iter().map(|x| f16::from_f32(x.to_f32())).collect();
        return (as_bytes(&h).to_vec(), true);
    }
    (as_bytes(v).to_vec(), false)
}

pub fn as_bytes<T>(v: &[T]) -> &[u8] {
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn cast<U>(bytes: &[u8]) -> &[U] {
    // Items are MAXALIGNed and the vector's offset in one is a multiple of 4.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const U, bytes.len() / std::mem::size_of::<U>()) }
}

/// An element's vector as `T` (f32 ones stored packed as f16 are widened back, exactly).
pub fn vector_of<T: SqlScalar>(e: &ElementTuple, s: Shape) -> Vec<T> {
    let bytes = e.vector_bytes(s);
    if !e.packed() {
        return cast::<T>(bytes).to_vec();
    }
    use half::slice::HalfFloatSliceExt;
    let h = cast::<f16>(bytes);
    let mut wide = vec![0f32; h.len()];
    h.convert_to_f32_slice(&mut wide);
    wide.into_iter().map(T::from_f32).collect()
}

/// Distance from `q` to an element as the graph orders them (see `distance`), possibly
/// stopping early above `bound`; None when the dimensions differ.
pub fn distance_to<T: SqlScalar>(op: Opclass, q: &[T], e: &ElementTuple, s: Shape, bound: f32) -> Option<f32> {
    let bytes = e.vector_bytes(s);
    if e.packed() {
        // Only f32 indexes pack.
        let (q, v) = (cast::<f32>(as_bytes(q)), cast::<f16>(bytes));
        if op.metric == Metric::L1 {
            let v: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
            return (q.len() == v.len()).then(|| kernels::l1(q, &v));
        }
        return (q.len() == v.len()).then(|| {
            let d = kernels::mixed_bounded(q, v, !op.is_l2(), bound);
            if op.is_l2() {
                d
            } else {
                -d
            }
        });
    }
    let v = cast::<T>(bytes);
    (v.len() == q.len()).then(|| distance(op, q, v, bound))
}

/// A heap TID as the 6 bytes an element stores.
pub unsafe fn heap_tid_bytes(tid: pg_sys::ItemPointer) -> [u8; 6] {
    unsafe { std::ptr::read_unaligned(tid as *const [u8; 6]) }
}
