//! The index's options: `m`, `ef_construction`, `quantize` and `rerank` (reloptions registered
//! at load time).

use crate::glue::error::error;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

#[repr(C)]
pub struct Options {
    vl_len: i32,
    pub m: i32,
    pub ef_construction: i32,
    pub quantize: bool,
    pub rerank: i32,
}

static mut RELOPT_KIND: pg_sys::relopt_kind::Type = 0;

/// Registers the reloptions; called from `_PG_init`.
pub fn init() {
    unsafe {
        RELOPT_KIND = pg_sys::add_reloption_kind();
        pg_sys::add_int_reloption(
            RELOPT_KIND,
            c"m".as_ptr(),
            c"Neighbours per node on the upper layers (twice that on layer 0).".as_ptr(),
            16,
            2,
            100,
            pg_sys::AccessExclusiveLock as i32,
        );
        pg_sys::add_int_reloption(
            RELOPT_KIND,
            c"ef_construction".as_ptr(),
            c"Candidates kept while inserting a node.".as_ptr(),
            64,
            4,
            1000,
            pg_sys::AccessExclusiveLock as i32,
        );
        pg_sys::add_bool_reloption(
            RELOPT_KIND,
            c"quantize".as_ptr(),
            c"Keep RaBitQ codes instead of vectors (up to 65,535 dimensions); scans rerank with the table's vectors.".as_ptr(),
            false,
            pg_sys::AccessExclusiveLock as i32,
        );
        pg_sys::add_int_reloption(
            RELOPT_KIND,
            c"rerank".as_ptr(),
            c"A quantized index's scans read candidates from the table this many at a time (0: the whole beam); vs_hnsw.rerank overrides it.".as_ptr(),
            0,
            0,
            10_000,
            pg_sys::ShareUpdateExclusiveLock as i32,
        );
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amoptions(reloptions: pg_sys::Datum, validate: bool) -> *mut pg_sys::bytea {
    let table = [
        pg_sys::relopt_parse_elt { optname: c"m".as_ptr(), opttype: pg_sys::relopt_type::RELOPT_TYPE_INT, offset: std::mem::offset_of!(Options, m) as i32 },
        pg_sys::relopt_parse_elt {
            optname: c"ef_construction".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: std::mem::offset_of!(Options, ef_construction) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"quantize".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_BOOL,
            offset: std::mem::offset_of!(Options, quantize) as i32,
        },
        pg_sys::relopt_parse_elt {
            optname: c"rerank".as_ptr(),
            opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
            offset: std::mem::offset_of!(Options, rerank) as i32,
        },
    ];
    unsafe {
        pg_sys::build_reloptions(reloptions, validate, RELOPT_KIND, std::mem::size_of::<Options>(), table.as_ptr(), table.len() as i32) as *mut pg_sys::bytea
    }
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

/// Whether the index keeps codes (`quantize`).
pub unsafe fn quantize(index: pg_sys::Relation) -> bool {
    let opts = unsafe { (*index).rd_options as *const Options };
    !opts.is_null() && unsafe { (*opts).quantize }
}

/// The index's `rerank` (0: not set).
pub unsafe fn rerank(index: pg_sys::Relation) -> usize {
    let opts = unsafe { (*index).rd_options as *const Options };
    if opts.is_null() {
        0
    } else {
        unsafe { (*opts).rerank.max(0) as usize }
    }
}
