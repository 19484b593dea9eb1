//! A parallel CREATE INDEX whose rows go in as on-disk inserts (a quantized index: its elements
//! hold codes, which the in-memory graph of `parallel` does not): the leader and
//! max_parallel_maintenance_workers workers share one parallel heap scan, as btree's build does,
//! and each inserts the rows of the blocks it is handed, exactly as concurrent INSERTs do (page
//! locks, a WAL record per step). Nothing but the scan and a row count is shared.

use super::build::RowContext;
use super::codec::{heap_tid_bytes, prepare};
use super::opclass::Kind;
use super::page::{read_meta, Meta};
use crate::types::datum::SqlScalar;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

const KEY_SHARED: u64 = 0x7653_0003;
const KEY_SCAN: u64 = 0x7653_0004;

#[repr(C)]
struct Shared {
    heap: pg_sys::Oid,
    index: pg_sys::Oid,
    concurrent: bool,
    /// Rows inserted by all participants: the build's result and its progress.
    tuples: AtomicU64,
}

/// Whether the workers may insert: each worker decides for itself whether a page change is
/// WAL-logged, and one does not know that the index is new in this transaction. With
/// wal_level = minimal the leader skips WAL for such an index and a worker would not, and a
/// worker's full-page image replayed after a crash would undo the leader's unlogged changes.
pub unsafe fn allowed(index: pg_sys::Relation) -> bool {
    unsafe {
        (*(*index).rd_rel).relpersistence != pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char
            || pg_sys::wal_level >= pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32
    }
}

/// Inserts every row of `heap` into `index` on the leader and up to `nworkers` workers; the
/// rows inserted. None, having inserted nothing, without dynamic shared memory.
pub unsafe fn build(heap: pg_sys::Relation, index: pg_sys::Relation, info: *mut pg_sys::IndexInfo, nworkers: usize) -> Option<f64> {
    unsafe {
        let concurrent = (*info).ii_Concurrent;
        pg_sys::EnterParallelMode();
        let pcxt = pg_sys::CreateParallelContext(c"visual_search".as_ptr(), c"vs_hnsw_insert_worker".as_ptr(), nworkers as i32);
        // A concurrent build sees the rows of one MVCC snapshot; any other sees every version
        // (and decides liveness as the serial scan does).
        let snapshot = if concurrent { pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()) } else { &raw mut pg_sys::SnapshotAnyData };
        let scan_size = pg_sys::table_parallelscan_estimate(heap, snapshot);
        let e = &mut (*pcxt).estimator;
        e.space_for_chunks += buffer_align(std::mem::size_of::<Shared>()) + buffer_align(scan_size);
        e.number_of_keys += 2;
        pg_sys::InitializeParallelDSM(pcxt);
        let tuples = (!(*pcxt).seg.is_null()).then(|| {
            let shared = pg_sys::shm_toc_allocate((*pcxt).toc, std::mem::size_of::<Shared>()) as *mut Shared;
            shared.write(Shared { heap: (*heap).rd_id, index: (*index).rd_id, concurrent, tuples: AtomicU64::new(0) });
            pg_sys::shm_toc_insert((*pcxt).toc, KEY_SHARED, shared as *mut _);
            let pscan = pg_sys::shm_toc_allocate((*pcxt).toc, scan_size) as pg_sys::ParallelTableScanDesc;
            pg_sys::table_parallelscan_initialize(heap, pscan, snapshot);
            pg_sys::shm_toc_insert((*pcxt).toc, KEY_SCAN, pscan as *mut _);
            pg_sys::LaunchParallelWorkers(pcxt);
            pgrx::debug1!("vs_hnsw: {} parallel workers insert beside the leader", (*pcxt).nworkers_launched);
            participate(heap, index, info, pscan, &*shared);
            pg_sys::WaitForParallelWorkersToFinish(pcxt);
            (*shared).tuples.load(Ordering::Relaxed) as f64
        });
        if concurrent {
            pg_sys::UnregisterSnapshot(snapshot);
        }
        pg_sys::DestroyParallelContext(pcxt);
        pg_sys::ExitParallelMode();
        tuples
    }
}

fn buffer_align(n: usize) -> usize {
    (n + pg_sys::ALIGNOF_BUFFER as usize - 1) & !(pg_sys::ALIGNOF_BUFFER as usize - 1)
}

/// Inserts the rows of the blocks the scan hands this process. The leader reports progress.
unsafe fn participate(heap: pg_sys::Relation, index: pg_sys::Relation, info: *mut pg_sys::IndexInfo, pscan: pg_sys::ParallelTableScanDesc, shared: &Shared) {
    unsafe {
        let meta = read_meta(index);
        let leader = pg_sys::ParallelWorkerNumber < 0;
        let scan = pg_sys::table_beginscan_parallel(heap, pscan);
        let mut st = Rows { meta, shared, leader, row: RowContext::default() };
        let callback = match meta.opclass.kind {
            Kind::F32 => insert_row::<f32>,
            Kind::F16 => insert_row::<f16>,
        };
        // The scan is ended by table_index_build_scan.
        pg_sys::table_index_build_scan(heap, index, info, true, leader, Some(callback), &mut st as *mut Rows as *mut _, scan);
    }
}

struct Rows<'a> {
    meta: Meta,
    shared: &'a Shared,
    leader: bool,
    row: RowContext,
}

// Called from the heap scan's C code: an ERROR in an insert must leave as PostgreSQL's longjmp.
#[pg_guard]
unsafe extern "C-unwind" fn insert_row<T: SqlScalar>(
    index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    unsafe {
        let st = &mut *(state as *mut Rows);
        let meta = st.meta;
        let inserted = st.row.next(|| match prepare::<T>(*values, *isnull, &meta) {
            Some(v) => {
                super::insert::insert::<T>(index, heap_tid_bytes(tid), &v);
                true
            }
            None => false,
        });
        if !inserted {
            return;
        }
        let all = st.shared.tuples.fetch_add(1, Ordering::Relaxed) + 1;
        if st.leader && all.is_multiple_of(1000) {
            pg_sys::pgstat_progress_update_param(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE as i32, all as i64);
        }
    }
}

/// A parallel worker's part: open the relations as the leader holds them, insert the rows of
/// the blocks the scan hands out.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn vs_hnsw_insert_worker(_seg: *mut pg_sys::dsm_segment, toc: *mut pg_sys::shm_toc) {
    unsafe {
        let shared = &*(pg_sys::shm_toc_lookup(toc, KEY_SHARED, false) as *const Shared);
        let pscan = pg_sys::shm_toc_lookup(toc, KEY_SCAN, false) as pg_sys::ParallelTableScanDesc;
        // The leader's locks (btree's workers take the same): the lock group shares them.
        let (heap_lock, index_lock) =
            if shared.concurrent { (pg_sys::ShareUpdateExclusiveLock, pg_sys::RowExclusiveLock) } else { (pg_sys::ShareLock, pg_sys::AccessExclusiveLock) };
        let heap = pg_sys::table_open(shared.heap, heap_lock as i32);
        let index = pg_sys::index_open(shared.index, index_lock as i32);
        let info = pg_sys::BuildIndexInfo(index);
        (*info).ii_Concurrent = shared.concurrent;
        participate(heap, index, info, pscan, shared);
        pg_sys::index_close(index, index_lock as i32);
        pg_sys::table_close(heap, heap_lock as i32);
    }
}
