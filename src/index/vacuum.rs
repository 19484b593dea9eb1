//! VACUUM, in three passes over the pages, as `graph::Graph::repair` does in memory:
//! 1. mark the elements of dead heap rows deleted (scans skip them, inserts never link to them);
//! 2. after waiting out inserts that began before the marks, give every live element that lost
//!    neighbours new ones among its other neighbours and the lost ones' neighbours;
//! 3. free the deleted elements' space for new inserts (free space map), so churn does not grow
//!    the index.

use super::graph::capacity;
use super::page::{self, blocks, item, read_meta, Locked, Meta, Xlog, NO_ENTRY, UPDATE_LOCK};
use super::search::{distance_to, for_each_live, neighbours_of, vector_of, with_element, with_list, IdSet};
use super::tuple::{self, block_of, Element, Id};
use crate::types::datum::Element as Elem;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Element ids on a page, read under a share lock.
unsafe fn elements_on(index: pg_sys::Relation, blk: u32) -> Vec<Id> {
    unsafe {
        let b = Locked::read(index, blk, false);
        let max = pg_sys::PageGetMaxOffsetNumber(b.page());
        (1..=max).filter(|&o| item(b.page(), o).is_some_and(|t| tuple::is_element(t))).map(|o| tuple::id(blk, o)).collect()
    }
}

/// Pass 1. Returns the deleted elements and their separate lists tuples.
unsafe fn mark(info: *mut pg_sys::IndexVacuumInfo, stats: *mut pg_sys::IndexBulkDeleteResult, callback: pg_sys::IndexBulkDeleteCallback, state: *mut std::ffi::c_void) -> (IdSet, IdSet) {
    let (mut deleted, mut lists) = (IdSet::default(), IdSet::default());
    unsafe {
        let index = (*info).index;
        let cb = callback.expect("VACUUM passes a callback");
        for blk in 1..blocks(index) {
            pg_sys::vacuum_delay_point();
            let b = Locked::read(index, blk, true);
            let mut x: Option<(Xlog, pg_sys::Page)> = None;
            let max = pg_sys::PageGetMaxOffsetNumber(b.page());
            for off in 1..=max {
                let Some(t) = item(b.page(), off) else { continue };
                if !tuple::is_element(t) {
                    continue;
                }
                let e = Element(t);
                let id = tuple::id(blk, off);
                let mut tid = e.heap_tid();
                let dead = e.deleted() || cb(tid.as_mut_ptr() as pg_sys::ItemPointer, state);
                if !dead {
                    (*stats).num_index_tuples += 1.0;
                    continue;
                }
                deleted.insert(id);
                if let Some(l) = e.separate() {
                    lists.insert(l);
                }
                if !e.deleted() {
                    (*stats).tuples_removed += 1.0;
                    let (_, page) = x.get_or_insert_with(|| {
                        let x = Xlog::start(index);
                        let p = x.register(b.buf, false);
                        (x, p)
                    });
                    tuple::set_deleted(item(*page, off).expect("the item was just read"));
                }
            }
            if let Some((x, _)) = x {
                x.finish();
            }
        }
    }
    (deleted, lists)
}

/// Pass 2 for one element: replaces its edges to deleted elements on every layer. Returns the
/// element's level (None when it is gone).
unsafe fn repair<T: Elem>(index: pg_sys::Relation, meta: &Meta, id: Id, deleted: &IdSet) -> Option<usize> {
    let m = meta.m as usize;
    unsafe {
        let (level, v) = with_element(index, id, |e| (e.level(), vector_of::<T>(&e, m)))?;
        for layer in 0..=level {
            let ns = neighbours_of(index, m, id, layer);
            if !ns.iter().any(|(n, _)| deleted.contains(n)) {
                continue;
            }
            let mut pool: Vec<(Id, f32)> = ns.iter().copied().filter(|(n, _)| !deleted.contains(n)).collect();
            let mut seen: IdSet = pool.iter().map(|p| p.0).collect();
            seen.insert(id);
            for (gone, _) in ns.iter().filter(|(n, _)| deleted.contains(n)) {
                for (n, _) in neighbours_of(index, m, *gone, layer) {
                    if deleted.contains(&n) || !seen.insert(n) {
                        continue;
                    }
                    let d = with_element(index, n, |e| {
                        (e.level() >= layer && !e.deleted()).then(|| distance_to(meta.metric, &v, &e, m, f32::INFINITY)).flatten()
                    });
                    if let Some(Some(d)) = d {
                        pool.push((n, d));
                    }
                }
            }
            pool.sort_by(|a, b| a.1.total_cmp(&b.1));
            pool.truncate(capacity(layer, m));
            // Write under the lock, keeping edges inserts added since the read.
            with_list(index, m, id, layer, |lists, level| {
                let mut now: Vec<(Id, f32)> = tuple::neighbours(lists, level, m, layer).filter(|(n, _)| !deleted.contains(n)).collect();
                for p in pool {
                    if !now.iter().any(|q| q.0 == p.0) {
                        now.push(p);
                    }
                }
                now.sort_by(|a, b| a.1.total_cmp(&b.1));
                tuple::set_neighbours(lists, level, m, layer, &now);
                true
            });
        }
        Some(level)
    }
}

/// Pass 3: frees the deleted tuples, page by page, and tells the free space map.
unsafe fn free(index: pg_sys::Relation, gone: &IdSet) {
    unsafe {
        let mut pages: Vec<u32> = gone.iter().map(|&g| block_of(g)).collect();
        pages.sort_unstable();
        pages.dedup();
        for blk in pages {
            pg_sys::vacuum_delay_point();
            let b = Locked::read(index, blk, true);
            let x = Xlog::start(index);
            let page = x.register(b.buf, false);
            let max = pg_sys::PageGetMaxOffsetNumber(page);
            for off in (1..=max).rev() {
                if gone.contains(&tuple::id(blk, off)) && item(page, off).is_some() {
                    pg_sys::PageIndexTupleDeleteNoCompact(page, off);
                }
            }
            // Unused line pointers are taken again by new tuples only when the page says it
            // has some; else every churn round would add line pointers.
            (*(page as *mut pg_sys::PageHeaderData)).pd_flags |= pg_sys::PD_HAS_FREE_LINES as u16;
            let free = pg_sys::PageGetFreeSpace(page);
            x.finish();
            drop(b);
            pg_sys::RecordPageWithFreeSpace(index, blk, free);
        }
    }
}

unsafe fn bulk_delete<T: Elem>(info: *mut pg_sys::IndexVacuumInfo, stats: *mut pg_sys::IndexBulkDeleteResult, callback: pg_sys::IndexBulkDeleteCallback, state: *mut std::ffi::c_void) {
    unsafe {
        let index = (*info).index;
        let (deleted, lists) = mark(info, stats, callback, state);
        if deleted.is_empty() {
            return;
        }
        // Inserts that began before the marks may still link to marked elements: wait them out.
        pg_sys::LockPage(index, UPDATE_LOCK, pg_sys::ExclusiveLock as i32);
        pg_sys::UnlockPage(index, UPDATE_LOCK, pg_sys::ExclusiveLock as i32);
        let meta = read_meta(index);
        let mut best: Option<(usize, Id)> = None;
        for blk in 1..blocks(index) {
            pg_sys::vacuum_delay_point();
            for id in elements_on(index, blk) {
                if deleted.contains(&id) {
                    continue;
                }
                if let Some(level) = repair::<T>(index, &meta, id, &deleted) {
                    if best.is_none_or(|(l, _)| level > l) {
                        best = Some((level, id));
                    }
                }
            }
        }
        pg_sys::LockPage(index, UPDATE_LOCK, pg_sys::ExclusiveLock as i32);
        if deleted.contains(&read_meta(index).entry) {
            page::update_meta(index, |mm| {
                (mm.entry, mm.entry_level) = best.map_or((NO_ENTRY, 0), |(l, id)| (id, l as u32));
            });
        }
        pg_sys::UnlockPage(index, UPDATE_LOCK, pg_sys::ExclusiveLock as i32);
        let gone: IdSet = deleted.union(&lists).copied().collect();
        free(index, &gone);
    }
}

unsafe fn new_stats(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() { unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()) as *mut _ } } else { stats }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    unsafe {
        let stats = new_stats(stats);
        (*stats).num_index_tuples = 0.0;
        if read_meta((*info).index).kind == 0 {
            bulk_delete::<f32>(info, stats, callback, state);
        } else {
            bulk_delete::<f16>(info, stats, callback, state);
        }
        stats
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(info: *mut pg_sys::IndexVacuumInfo, stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    unsafe {
        if (*info).analyze_only {
            return stats;
        }
        let index = (*info).index;
        let stats = if stats.is_null() {
            // No bulk delete ran (nothing to remove): count the live elements.
            let s = new_stats(stats);
            for_each_live(index, |_, _| (*s).num_index_tuples += 1.0);
            s
        } else {
            stats
        };
        (*stats).num_pages = blocks(index);
        pg_sys::IndexFreeSpaceMapVacuum(index);
        stats
    }
}
