//! Integrity checks for tests and for users who doubt an index (as amcheck does for B-trees):
//! which heap rows the index holds, and how many of them a search can reach from the entry.

use super::opclass::Kind;
use super::page::{read_meta, NO_ENTRY};
use super::pages::{for_each_live, Pages};
use crate::glue::error::error;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;

fn not_an_index() -> ! {
    error(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, "not a vs_hnsw index")
}

/// The checks show where every indexed row of the table is, so they need what reading the whole
/// table needs: SELECT on it (which superusers, the owner and members of pg_read_all_data have;
/// a column grant is not enough), and no row-level security applying to the caller. Checked
/// before any lock is taken. EXECUTE on the functions is also revoked from PUBLIC, as amcheck's.
unsafe fn check_access(index: pg_sys::Oid) -> pg_sys::Oid {
    unsafe {
        let heap = pg_sys::IndexGetRelation(index, true);
        if heap == pg_sys::InvalidOid {
            not_an_index();
        }
        let name = || {
            let p = pg_sys::get_rel_name(heap);
            if p.is_null() {
                "?".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let user = pg_sys::GetUserId();
        if pg_sys::pg_class_aclcheck(heap, user, pg_sys::ACL_SELECT as pg_sys::AclMode) != pg_sys::AclResult::ACLCHECK_OK {
            error(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied for table {}", name()));
        }
        if pg_sys::check_enable_rls(heap, pg_sys::InvalidOid, true) == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 {
            error(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("row-level security is enabled for table {} and hides rows from this role; the index check needs a role that bypasses it", name()),
            );
        }
        heap
    }
}

unsafe fn open(index: pg_sys::Oid) -> pg_sys::Relation {
    unsafe {
        let heap = check_access(index);
        let rel = pg_sys::index_open(index, pg_sys::AccessShareLock as i32);
        if (*(*rel).rd_rel).relam != pg_sys::get_index_am_oid(c"vs_hnsw".as_ptr(), false) || (*(*rel).rd_index).indrelid != heap {
            pg_sys::index_close(rel, pg_sys::AccessShareLock as i32);
            not_an_index();
        }
        rel
    }
}

fn tid_text(t: [u8; 6]) -> String {
    let h = |i: usize| u16::from_ne_bytes([t[i], t[i + 1]]) as u32;
    format!("({},{})", h(0) << 16 | h(2), h(4))
}

/// The heap TIDs of the live elements, as `ctid::text`, in page order.
#[pg_extern(sql = false)]
fn vs_hnsw_heap_tids(index: pg_sys::Oid) -> Vec<String> {
    unsafe {
        let rel = open(index);
        let mut out = Vec::new();
        for_each_live(rel, |_, e| out.push(tid_text(e.heap_tid())));
        pg_sys::index_close(rel, pg_sys::AccessShareLock as i32);
        out
    }
}

/// Live elements a beam wider than the index finds from the entry point.
unsafe fn reachable<T: crate::types::datum::SqlScalar>(rel: pg_sys::Relation, meta: super::page::Meta, q: &[T], ef: usize) -> i64 {
    let mut w = Pages::new(rel, meta, q);
    let found = w.search(0, 0, ef).pop().unwrap_or_default();
    found.iter().filter(|s| !w.deleted.contains(&s.1)).count() as i64
}

/// Live elements that a search from the entry point cannot reach on layer 0 (HNSW does not
/// promise every node stays reachable as edges are pruned; this says how many did not).
#[pg_extern(sql = false)]
fn vs_hnsw_unreachable(index: pg_sys::Oid) -> i64 {
    unsafe {
        let rel = open(index);
        let meta = read_meta(rel);
        let mut live = 0i64;
        for_each_live(rel, |_, _| live += 1);
        let reached = match (meta.entry == NO_ENTRY, meta.opclass.kind) {
            (true, _) => 0,
            (false, Kind::F32) => reachable(rel, meta, &vec![0f32; meta.dim as usize], live as usize + 1),
            (false, Kind::F16) => reachable(rel, meta, &vec![f16::ZERO; meta.dim as usize], live as usize + 1),
        };
        pg_sys::index_close(rel, pg_sys::AccessShareLock as i32);
        live - reached
    }
}
