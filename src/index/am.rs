//! The access method's entry points for PostgreSQL: the handler, the cost model and the opclass
//! support functions. Each phase has its file: `options`, `build`, `insert`, `scan`, `vacuum`.

use super::build::{PHASE_LOAD, PHASE_WRITE};
use super::opclass::{Kind, Opclass};
use pgrx::pg_sys;
use pgrx::prelude::*;
use vs_hnsw::metric::Metric;

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
        (*r).amoptions = Some(super::options::amoptions);
        (*r).ambuildphasename = Some(ambuildphasename);
        (*r).amvalidate = Some(amvalidate);
        (*r).ambeginscan = Some(super::scan::ambeginscan);
        (*r).amrescan = Some(super::scan::amrescan);
        (*r).amgettuple = Some(super::scan::amgettuple);
        (*r).amendscan = Some(super::scan::amendscan);
        pg_sys::Datum::from(r)
    }
}

/// Opclass support functions: each says its metric and element type (`Opclass::from_support`).
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
    vs_hnsw_l2_support pg_finfo_vs_hnsw_l2_support = Opclass { metric: Metric::L2, kind: Kind::F32 }.support();
    vs_hnsw_ip_support pg_finfo_vs_hnsw_ip_support = Opclass { metric: Metric::InnerProduct, kind: Kind::F32 }.support();
    vs_hnsw_cosine_support pg_finfo_vs_hnsw_cosine_support = Opclass { metric: Metric::Cosine, kind: Kind::F32 }.support();
    vs_hnsw_half_l2_support pg_finfo_vs_hnsw_half_l2_support = Opclass { metric: Metric::L2, kind: Kind::F16 }.support();
    vs_hnsw_half_ip_support pg_finfo_vs_hnsw_half_ip_support = Opclass { metric: Metric::InnerProduct, kind: Kind::F16 }.support();
    vs_hnsw_half_cosine_support pg_finfo_vs_hnsw_half_cosine_support = Opclass { metric: Metric::Cosine, kind: Kind::F16 }.support();
    vs_hnsw_l1_support pg_finfo_vs_hnsw_l1_support = Opclass { metric: Metric::L1, kind: Kind::F32 }.support();
    vs_hnsw_half_l1_support pg_finfo_vs_hnsw_half_l1_support = Opclass { metric: Metric::L1, kind: Kind::F16 }.support();
}
