//! The access method's entry points for PostgreSQL: the handler, the `m` / `ef_construction`
//! options, the cost model, the opclass support functions, and what an index column value
//! becomes in the graph.

use super::graph::Metric;
use super::page::Meta;
use crate::types::datum::{Element, VecRef};
use crate::types::error::error;
use crate::types::kernels;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use half::f16;
use std::ffi::CStr;

pub const MAX_DIM_F32: usize = 2000;
pub const MAX_DIM_F16: usize = 4000;
pub const PHASE_LOAD: i64 = 2;
pub const PHASE_WRITE: i64 = 3;

#[repr(C)]
pub struct Options {
    vl_len: i32,
    pub m: i32,
    pub ef_construction: i32,
}

static mut RELOPT_KIND: pg_sys::relopt_kind::Type = 0;

/// Registers the reloptions; called from `_PG_init`.
pub fn init() {
    unsafe {
        RELOPT_KIND = pg_sys::add_reloption_kind();
        pg_sys::add_int_reloption(RELOPT_KIND, c"m".as_ptr(), c"Neighbours per node on the upper layers (twice that on layer 0).".as_ptr(), 16, 2, 100, pg_sys::AccessExclusiveLock as i32);
        pg_sys::add_int_reloption(RELOPT_KIND, c"ef_construction".as_ptr(), c"Candidates kept while inserting a node.".as_ptr(), 64, 4, 1000, pg_sys::AccessExclusiveLock as i32);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn amoptions(reloptions: pg_sys::Datum, validate: bool) -> *mut pg_sys::bytea {
    let table = [
        pg_sys::relopt_parse_elt { optname: c"m".as_ptr(), opttype: pg_sys::relopt_type::RELOPT_TYPE_INT, offset: std::mem::offset_of!(Options, m) as i32 },
        pg_sys::relopt_parse_elt { optname: c"ef_construction".as_ptr(), opttype: pg_sys::relopt_type::RELOPT_TYPE_INT, offset: std::mem::offset_of!(Options, ef_construction) as i32 },
    ];
    unsafe { pg_sys::build_reloptions(reloptions, validate, RELOPT_KIND, std::mem::size_of::<Options>(), table.as_ptr(), table.len() as i32) as *mut pg_sys::bytea }
}

/// m and ef_construction of an index, checked against each other.
pub unsafe fn options(index: pg_sys::Relation) -> (u32, u32) {
    let opts = unsafe { (*index).rd_options as *const Options };
    let (m, ef) = if opts.is_null() { (16, 64) } else { unsafe { ((*opts).m, (*opts).ef_construction) } };
    if ef < 2 * m {
        error(ERRCODE_INVALID_PARAMETER_VALUE, format!("ef_construction ({ef}) must be at least 2 × m ({})", 2 * m));
    }
    (m as u32, ef as u32)
}

/// The opclass's support function 1 says the metric and the element type: metric | kind << 8.
pub unsafe fn metric_and_kind(index: pg_sys::Relation) -> (u32, u32) {
    unsafe {
        let proc = pg_sys::index_getprocid(index, 1, 1);
        let code = pg_sys::OidFunctionCall1Coll(proc, pg_sys::InvalidOid, pg_sys::Datum::from(0usize)).value() as u32;
        (code & 0xff, code >> 8)
    }
}

pub fn graph_metric(metric: u32) -> Metric {
    // Cosine is an inner product between vectors normalised before they enter the graph.
    if metric == 0 { Metric::L2 } else { Metric::InnerProduct }
}

/// Distance between a query and a stored element, as the graph orders them; an L2 distance may
/// stop early once above `bound` (any value above it is then returned).
#[inline]
pub fn distance<T: Element>(metric: u32, q: &[T], v: &[T], bound: f32) -> f32 {
    if metric == 0 { kernels::l2_squared_bounded(q, v, bound) } else { -kernels::dot(q, v) }
}

/// An index column value as the graph holds it; None for values the index leaves out (NULL,
/// and for cosine the zero vector, whose direction is undefined).
pub unsafe fn prepare<T: Element>(datum: pg_sys::Datum, is_null: bool, meta: &Meta) -> Option<Vec<T>> {
    let v = unsafe { VecRef::<T>::from_polymorphic_datum(datum, is_null, pg_sys::InvalidOid) }?;
    check_dim::<T>(v.dim(), meta.dim as usize);
    if meta.metric == 2 { normalized(v.data) } else { Some(v.data.to_vec()) }
}

/// `v` scaled to length 1 (cosine's graph holds unit vectors); None for the zero vector. The
/// norm comes from the f32 kernel when that is accurate, else from f64 sums: vectors with huge
/// (near f32::MAX) or tiny (below 1e-19) values have a direction too, and were left out.
pub fn normalized<T: Element>(v: &[T]) -> Option<Vec<T>> {
    let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    let squared = kernels::dot(&f, &f);
    if kernels::f32_norm_is_exact(squared) {
        let norm = squared.sqrt();
        return Some(f.iter().map(|x| T::from_f32(x / norm)).collect());
    }
    let norm = kernels::squared_norm_f64(&f).sqrt();
    (norm > 0.0).then(|| f.iter().map(|&x| T::from_f32((x as f64 / norm) as f32)).collect())
}

pub fn check_dim<T: Element>(dim: usize, index_dim: usize) {
    let max = if std::mem::size_of::<T>() == 4 { MAX_DIM_F32 } else { MAX_DIM_F16 };
    if dim > max {
        error(ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("vs_hnsw indexes {} of at most {max} dimensions, not {dim}", T::TYPE_NAME));
    }
    if index_dim != 0 && dim != index_dim {
        error(ERRCODE_DATA_EXCEPTION, format!("expected {index_dim} dimensions, not {dim}"));
    }
}

/// The bytes an element stores for `v`, and whether they are f32 packed as f16 (when every
/// element converts exactly).
pub fn encode<T: Element>(v: &[T]) -> (Vec<u8>, bool) {
    if std::mem::size_of::<T>() == 4 && super::tuple::packs(v.iter().map(|x| x.to_f32())) {
        let h: Vec<f16> = v.iter().map(|x| f16::from_f32(x.to_f32())).collect();
        return (as_bytes(&h).to_vec(), true);
    }
    (as_bytes(v).to_vec(), false)
}

pub fn as_bytes<T>(v: &[T]) -> &[u8] {
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

pub unsafe fn corrupt(index: pg_sys::Relation, what: &str) -> ! {
    let name = unsafe { CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr()) }.to_string_lossy().into_owned();
    error(ERRCODE_INDEX_CORRUPTED, format!("index \"{name}\" is corrupt: {what}; REINDEX it"))
}

pub fn too_big(len: usize) -> ! {
    error(ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("a vs_hnsw element of {len} bytes does not fit on a page"))
}

#[pg_guard]
unsafe extern "C-unwind" fn amcostestimate(
    _root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    _loop_count: f64,
    startup: *mut pg_sys::Cost,
    total: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    unsafe {
        *selectivity = 1.0;
        *correlation = 0.0;
        if (*path).indexorderbys.is_null() {
            // Only ORDER BY <distance> LIMIT k uses this index; it answers no WHERE clause.
            *startup = f64::MAX / 1e10;
            *total = f64::MAX / 1e10;
            *pages = 0.0;
            return;
        }
        let tuples = (*(*path).indexinfo).tuples.max(1.0);
        let ef = crate::guc::EF_SEARCH.get() as f64;
        // A search computes about ef × 2m distances, in pages that are mostly cached; priced
        // like index tuples with a costly operator, so a LIMIT query prefers it to a full scan
        // of any table larger than a search.
        let visits = (ef * 32.0).min(tuples);
        *pages = visits;
        *startup = visits * (pg_sys::cpu_index_tuple_cost + 4.0 * pg_sys::cpu_operator_cost);
        // Each row beyond the first k costs a heap fetch; reading all rows this way loses to a
        // sequential scan and a sort, so the planner keeps this index to LIMIT queries.
        *total = *startup + tuples * pg_sys::random_page_cost;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    match phase {
        PHASE_LOAD => c"loading tuples into the graph".as_ptr() as *mut _,
        PHASE_WRITE => c"writing the graph".as_ptr() as *mut _,
        _ => std::ptr::null_mut(),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn amvalidate(_opclass: pg_sys::Oid) -> bool {
    true
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_vs_hnsw_handler() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn vs_hnsw_handler(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let r = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexAmRoutine>()) as *mut pg_sys::IndexAmRoutine;
        (*r).type_ = pg_sys::NodeTag::T_IndexAmRoutine;
        (*r).amstrategies = 0;
        (*r).amsupport = 1;
        (*r).amcanorderbyop = true;
        (*r).amoptionalkey = true;
        (*r).amusemaintenanceworkmem = true;
        (*r).amparallelvacuumoptions = pg_sys::VACUUM_OPTION_PARALLEL_BULKDEL as u8;
        (*r).amkeytype = pg_sys::InvalidOid;
        (*r).ambuild = Some(super::build::ambuild);
        (*r).ambuildempty = Some(super::build::ambuildempty);
        (*r).aminsert = Some(super::insert::aminsert);
        (*r).ambulkdelete = Some(super::vacuum::ambulkdelete);
        (*r).amvacuumcleanup = Some(super::vacuum::amvacuumcleanup);
        (*r).amcostestimate = Some(amcostestimate);
        (*r).amoptions = Some(amoptions);
        (*r).ambuildphasename = Some(ambuildphasename);
        (*r).amvalidate = Some(amvalidate);
        (*r).ambeginscan = Some(super::scan::ambeginscan);
        (*r).amrescan = Some(super::scan::amrescan);
        (*r).amgettuple = Some(super::scan::amgettuple);
        (*r).amendscan = Some(super::scan::amendscan);
        pg_sys::Datum::from(r)
    }
}

/// Opclass support functions: each says its metric and element type (see `metric_and_kind`).
macro_rules! support {
    ($($name:ident $finfo:ident = $code:expr;)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            pg_sys::Datum::from($code as usize)
        }
    )*};
}

support! {
    vs_hnsw_l2_support pg_finfo_vs_hnsw_l2_support = 0;
    vs_hnsw_ip_support pg_finfo_vs_hnsw_ip_support = 1;
    vs_hnsw_cosine_support pg_finfo_vs_hnsw_cosine_support = 2;
    vs_hnsw_half_l2_support pg_finfo_vs_hnsw_half_l2_support = 0 | 1 << 8;
    vs_hnsw_half_ip_support pg_finfo_vs_hnsw_half_ip_support = 1 | 1 << 8;
    vs_hnsw_half_cosine_support pg_finfo_vs_hnsw_half_cosine_support = 2 | 1 << 8;
}
