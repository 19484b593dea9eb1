//! Index scans for `ORDER BY col <op> query LIMIT k`: a beam search of `vs_hnsw.ef_search`
//! returns rows nearest first. When the executor wants more (a WHERE clause threw rows away),
//! the beam goes on from where it stopped and returns the next `ef_search` rows (`Beam`), until
//! `vs_hnsw.max_scan_tuples` rows were returned, the graph has no more, or the walk holds more
//! than `vs_hnsw.scan_mem_multiplier` × work_mem (iterative scan). A later round can find rows
//! nearer than some already returned: `relaxed_order` returns them too, `strict_order` skips
//! them so that distances never decrease, as pgvector's modes of the same names.

use super::codec::{check_dim, distance, normalized, prepare};
use super::opclass::Kind;
use super::page::{read_meta, Meta, NO_ENTRY};
use super::pages::{with_element, IdSet, Pages};
use crate::guc::{self, IterativeScan};
use crate::types::datum::{SqlScalar, VecRef};
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::HashSet;
use vs_hnsw::beam::Beam;
use vs_hnsw::tuple::Id;

#[derive(Default)]
struct Scan {
    started: bool,
    ef: usize,
    /// Heap TIDs with their distances, in the order to return them.
    results: Vec<(f32, [u8; 6])>,
    next: usize,
    returned: HashSet<[u8; 6]>,
    /// The distance of the row returned last (strict_order returns none nearer after it).
    last: f32,
    /// Bytes the walk holds after the last round: its visited set and beam, its results and the
    /// returned set.
    memory: usize,
    walked: Walked,
}

/// Bytes a visited element costs: its entry in the visited set (a hash set at its load) and its
/// place in the beam's heaps or dropped list.
const VISITED_BYTES: usize = 40;
/// Bytes of a result, or of an entry in the returned set.
const RETURNED_BYTES: usize = 16;

/// Owns a scan's state (kept on the Rust heap) from the scan's memory context: `amendscan`
/// frees it, and so does the context's reset when a query fails before `amendscan` is called,
/// which would otherwise leak it for the backend's life.
#[repr(C)]
struct Owner {
    callback: pg_sys::MemoryContextCallback,
    scan: *mut Scan,
}

unsafe extern "C-unwind" fn free_scan(owner: *mut std::ffi::c_void) {
    unsafe {
        let o = owner as *mut Owner;
        if !(*o).scan.is_null() {
            drop(Box::from_raw((*o).scan));
            (*o).scan = std::ptr::null_mut();
        }
    }
}

unsafe fn state<'a>(scan: pg_sys::IndexScanDesc) -> &'a mut Scan {
    unsafe { &mut *(*((*scan).opaque as *mut Owner)).scan }
}

unsafe fn query<T: SqlScalar>(scan: pg_sys::IndexScanDesc, meta: &Meta) -> Vec<T> {
    unsafe {
        let key = &*(*scan).orderByData;
        // ORDER BY col <-> NULL: every distance is NULL, any order is right.
        let Some(q) = VecRef::<T>::from_polymorphic_datum(key.sk_argument, key.sk_flags & pg_sys::SK_ISNULL as i32 != 0, pg_sys::InvalidOid) else {
            return vec![T::default(); meta.dim as usize];
        };
        check_dim::<T>(q.dim(), meta.dim as usize, meta.quant.is_some());
        // A zero query under cosine has no direction: every distance is NaN, any order will do.
        let unit = if meta.opclass.normalises() { normalized(q.data) } else { None };
        unit.unwrap_or_else(|| q.data.to_vec())
    }
}

/// Where a scan's graph walk stands between rounds: the beam that goes on, and the walk's sets.
#[derive(Default)]
struct Walked {
    beam: Option<Beam<Id>>,
    visited: IdSet,
    deleted: IdSet,
}

/// One round of the scan's beam (the first, or the next after it): heap TIDs of live elements
/// with their distances, nearest first.
unsafe fn search<T: SqlScalar>(index: pg_sys::Relation, meta: Meta, q: &[T], ef: usize, walked: &mut Walked, goes_on: bool) -> Vec<(f32, [u8; 6])> {
    unsafe {
        let mut w = Pages::new(index, meta, q);
        w.visited = std::mem::take(&mut walked.visited);
        w.deleted = std::mem::take(&mut walked.deleted);
        let mut beam = match walked.beam.take() {
            Some(b) => b,
            None => {
                let ep = w.descend(0);
                Beam::new(&mut w, &ep, ef, 0, goes_on)
            }
        };
        let found = beam.next(&mut w);
        let tids = found
            .iter()
            .filter(|s| !w.deleted.contains(&s.1))
            .filter_map(|s| with_element(index, s.1, |e| (!e.deleted()).then(|| (s.0, e.heap_tid()))).flatten())
            .collect();
        *walked = Walked { beam: (goes_on && !beam.exhausted()).then_some(beam), visited: w.visited, deleted: w.deleted };
        tids
    }
}

/// The round's rows, nearest first: a quantized index's candidates reranked by their exact
/// distances.
unsafe fn found<T: SqlScalar>(scan: pg_sys::IndexScanDesc, meta: Meta, st: &mut Scan, goes_on: bool) -> Vec<(f32, [u8; 6])> {
    unsafe {
        let q = query::<T>(scan, &meta);
        let mut round = search::<T>((*scan).indexRelation, meta, &q, st.ef, &mut st.walked, goes_on);
        round.retain(|t| !st.returned.contains(&t.1));
        if meta.quant.is_none() {
            return round;
        }
        let tids: Vec<[u8; 6]> = round.iter().map(|t| t.1).collect();
        // In groups of vs_hnsw.rerank, else of the index's `rerank` (0 both: the whole beam), best
        // estimates first. Groups of 40
        // under a beam of 320 held recall@10 at 0.986 on fashion-mnist-784, where the true
        // nearest fell into later groups; the whole beam lets ef_search trade speed for recall
        // as without codes. The detoasted vectors (100 KB each at 25,088 dimensions) live only
        // as long as one group's rerank.
        let group = match (guc::RERANK.get(), super::options::rerank((*scan).indexRelation)) {
            (0, 0) => tids.len().max(1),
            (0, n) => n,
            (n, _) => n as usize,
        };
        round.clear();
        for chunk in tids.chunks(group) {
            let mut ctx = pgrx::PgMemoryContexts::new("vs_hnsw rerank");
            round.extend(ctx.switch_to(|_| rerank::<T>(scan, &meta, &q, chunk)));
        }
        round
    }
}

/// `tids` ordered by the exact distance from `q` of their rows' values, read through the table
/// access method under the scan's snapshot; rows it does not see are left out (the executor
/// would skip them too). The ERROR "index returned tuples in wrong order" that PostgreSQL's
/// own recheck of ORDER BY raises for an estimate above the exact distance is why the index
/// reranks: RaBitQ's bound holds with high probability, not always.
unsafe fn rerank<T: SqlScalar>(scan: pg_sys::IndexScanDesc, meta: &Meta, q: &[T], tids: &[[u8; 6]]) -> Vec<(f32, [u8; 6])> {
    unsafe {
        let (heap, index) = ((*scan).heapRelation, (*scan).indexRelation);
        let attno = *(*(*index).rd_index).indkey.values.as_slice(1).first().unwrap_or(&0) as usize;
        if heap.is_null() || attno == 0 {
            error!("a quantized vs_hnsw index is scanned only with its table, on a column");
        }
        let am = (*heap).rd_tableam;
        let fetch = ((*am).index_fetch_begin.expect("a table access method fetches by TID"))(heap);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let mut scored: Vec<(f32, [u8; 6])> = Vec::with_capacity(tids.len());
        for &tid in tids {
            pg_sys::check_for_interrupts!();
            let mut t: pg_sys::ItemPointerData = std::ptr::read_unaligned(tid.as_ptr() as *const pg_sys::ItemPointerData);
            let (mut again, mut dead) = (false, false);
            if !((*am).index_fetch_tuple.expect("a table access method fetches by TID"))(fetch, &mut t, (*scan).xs_snapshot, slot, &mut again, &mut dead) {
                continue;
            }
            pg_sys::slot_getsomeattrs_int(slot, attno as i32);
            let (datum, null) = (*(*slot).tts_values.add(attno - 1), *(*slot).tts_isnull.add(attno - 1));
            if let Some(v) = prepare::<T>(datum, null, meta) {
                scored.push((distance(meta.opclass, q, &v, f32::INFINITY), tid));
            }
            ((*(*slot).tts_ops).clear.expect("a slot clears"))(slot);
        }
        ((*am).index_fetch_end.expect("a table access method fetches by TID"))(fetch);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        scored
    }
}

unsafe fn fill(scan: pg_sys::IndexScanDesc, st: &mut Scan) {
    unsafe {
        let index = (*scan).indexRelation;
        let meta = read_meta(index);
        if meta.entry == NO_ENTRY {
            // Empty, or emptied by VACUUM between rounds: nothing to go on from.
            st.walked.beam = None;
            return;
        }
        let goes_on = IterativeScan::get() != IterativeScan::Off;
        st.results = match meta.opclass.kind {
            Kind::F32 => found::<f32>(scan, meta, st, goes_on),
            Kind::F16 => found::<f16>(scan, meta, st, goes_on),
        };
        st.memory = st.walked.visited.len() * VISITED_BYTES + (st.results.len() + st.returned.len()) * RETURNED_BYTES;
        st.next = 0;
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(index: pg_sys::Relation, nkeys: i32, norderbys: i32) -> pg_sys::IndexScanDesc {
    unsafe {
        let scan = pg_sys::RelationGetIndexScan(index, nkeys, norderbys);
        let o = pg_sys::palloc0(std::mem::size_of::<Owner>()) as *mut Owner;
        (*o).scan = Box::into_raw(Box::<Scan>::default());
        (*o).callback.func = Some(free_scan);
        (*o).callback.arg = o as *mut _;
        pg_sys::MemoryContextRegisterResetCallback(pg_sys::CurrentMemoryContext, &mut (*o).callback);
        (*scan).opaque = o as *mut _;
        scan
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amrescan(scan: pg_sys::IndexScanDesc, keys: pg_sys::ScanKey, nkeys: i32, orderbys: pg_sys::ScanKey, norderbys: i32) {
    unsafe {
        if !keys.is_null() && nkeys > 0 {
            std::ptr::copy(keys, (*scan).keyData, nkeys as usize);
        }
        if !orderbys.is_null() && norderbys > 0 {
            std::ptr::copy(orderbys, (*scan).orderByData, norderbys as usize);
        }
        *state(scan) = Scan::default();
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(scan: pg_sys::IndexScanDesc, _dir: pg_sys::ScanDirection::Type) -> bool {
    unsafe {
        let st = state(scan);
        if (*scan).numberOfOrderBys == 0 {
            error!("vs_hnsw answers only ORDER BY <distance operator> queries");
        }
        let strict = IterativeScan::get() == IterativeScan::StrictOrder;
        if !st.started {
            st.started = true;
            st.ef = guc::EF_SEARCH.get() as usize;
            st.last = f32::NEG_INFINITY;
            fill(scan, st);
        }
        loop {
            if st.next < st.results.len() {
                let (distance, tid) = st.results[st.next];
                st.next += 1;
                // Found by a later round (or in a later rerank group), nearer than a row
                // already returned.
                if strict && distance < st.last {
                    continue;
                }
                st.returned.insert(tid);
                st.last = st.last.max(distance);
                std::ptr::write_unaligned(&mut (*scan).xs_heaptid as *mut pg_sys::ItemPointerData as *mut [u8; 6], tid);
                (*scan).xs_recheck = false;
                (*scan).xs_recheckorderby = false;
                return true;
            }
            let max = guc::MAX_SCAN_TUPLES.get() as usize;
            let memory = (guc::SCAN_MEM_MULTIPLIER.get() * guc::work_mem_bytes() as f64) as usize;
            // No beam left to go on: the graph has no more, or the scan is not iterative.
            if st.walked.beam.is_none() || st.returned.len() >= max || st.memory > memory {
                return false;
            }
            fill(scan, st);
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    unsafe {
        if !(*scan).opaque.is_null() {
            free_scan((*scan).opaque);
        }
    }
}
