//! VACUUM, in three passes over the pages:
//! 1. mark the elements of dead heap rows deleted (scans skip them, inserts never link to them);
//! 2. after waiting out inserts that began before the marks, give every live element that lost
//!    neighbours a new list from its live ones, the lost ones' neighbours and a search for its
//!    own vector, and link each element that no live one leads to any more (`repair::Mending`
//!    over a `PageStore`, the repair vs_hnsw's tests measure in memory), then every element a
//!    walk from the entry point does not reach (`repair::reconnect`);
//! 3. free the deleted elements' space for new inserts (free space map), so churn does not grow
//!    the index.

use super::opclass::Kind;
use super::page::{self, blocks, item, read_meta, Locked, Meta, Xlog, NO_ENTRY, UPDATE_LOCK};
use super::pages::{for_each_live, with_element, IdSet, PageStore};
use crate::types::datum::SqlScalar;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use vs_hnsw::repair::{reconnect, Mending};
use vs_hnsw::tuple::{self, block_of, ElementTuple, Id};

/// Element ids on a page, read under a share lock.
unsafe fn elements_on(index: pg_sys::Relation, blk: u32) -> Vec<Id> {
    unsafe {
        let b = Locked::read(index, blk, false);
        let max = pg_sys::PageGetMaxOffsetNumber(b.page());
        (1..=max).filter(|&o| item(b.page(), o).is_some_and(|t| tuple::is_element(t))).map(|o| tuple::id(blk, o)).collect()
    }
}

/// Pass 1. Returns the deleted elements and their separate lists tuples.
unsafe fn mark(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    state: *mut std::ffi::c_void,
) -> (IdSet, IdSet) {
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
                let e = ElementTuple(t);
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

/// Whether `reconnect_all` runs for an index of `live` elements: the ids and marks it keeps
/// (about 64 bytes an element) must fit in maintenance_work_mem.
fn reconnects(live: usize) -> bool {
    live * 64 <= unsafe { pg_sys::maintenance_work_mem } as usize * 1024
}

/// Pass 2: repairs every live element's lists; returns the live element on the highest level.
unsafe fn repair<T: SqlScalar>(index: pg_sys::Relation, meta: &Meta, deleted: &IdSet, reconnects: bool) -> Option<(usize, Id)> {
    unsafe {
        let mut disk = PageStore::<T>::new(index, meta, Some(deleted));
        let mut gone: Vec<(Id, usize)> = deleted.iter().filter_map(|&d| with_element(index, d, |e| (d, e.level()))).collect();
        gone.sort_unstable();
        let mut mending = Mending::new(&disk, gone, reconnects);
        let mut best: Option<(usize, Id)> = None;
        for blk in 1..blocks(index) {
            pg_sys::vacuum_delay_point();
            for id in elements_on(index, blk) {
                if deleted.contains(&id) {
                    continue;
                }
                let Some(level) = with_element(index, id, |e| e.level()) else { continue };
                mending.node(&mut disk, id, level);
                if best.is_none_or(|(l, _)| level > l) {
                    best = Some((level, id));
                }
            }
        }
        mending.adopt(&mut disk);
        best
    }
}

/// Pass 2, last: links the live elements a walk from the entry point no longer reaches, on
/// every layer (`repair::reconnect`).
unsafe fn reconnect_all<T: SqlScalar>(index: pg_sys::Relation, deleted: &IdSet) {
    unsafe {
        let meta = read_meta(index);
        if meta.entry == NO_ENTRY {
            return;
        }
        let mut live = Vec::new();
        for_each_live(index, |id, e| live.push((e.level(), id)));
        let mut disk = PageStore::<T>::new(index, &meta, Some(deleted));
        for layer in 0..=meta.entry_level as usize {
            let on: Vec<Id> = live.iter().filter(|l| l.0 >= layer).map(|l| l.1).collect();
            reconnect(&mut disk, meta.entry, layer, &on);
        }
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

unsafe fn bulk_delete<T: SqlScalar>(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    state: *mut std::ffi::c_void,
) {
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
        // Decided once: a repair that drops live edges counts on reconnect_all.
        let reconnect = reconnects((*stats).num_index_tuples as usize);
        let best = repair::<T>(index, &meta, &deleted, reconnect);
        pg_sys::LockPage(index, UPDATE_LOCK, pg_sys::ExclusiveLock as i32);
        if deleted.contains(&read_meta(index).entry) {
            page::update_meta(index, |mm| {
                (mm.entry, mm.entry_level) = best.map_or((NO_ENTRY, 0), |(l, id)| (id, l as u32));
            });
        }
        pg_sys::UnlockPage(index, UPDATE_LOCK, pg_sys::ExclusiveLock as i32);
        if reconnect {
            reconnect_all::<T>(index, &deleted);
        }
        let gone: IdSet = deleted.union(&lists).copied().collect();
        free(index, &gone);
    }
}

unsafe fn new_stats(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        unsafe { pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBulkDeleteResult>()) as *mut _ }
    } else {
        stats
    }
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
        match read_meta((*info).index).opclass.kind {
            Kind::F32 => bulk_delete::<f32>(info, stats, callback, state),
            Kind::F16 => bulk_delete::<f16>(info, stats, callback, state),
        }
        stats
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
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
