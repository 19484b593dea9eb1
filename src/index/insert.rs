//! INSERT into an indexed table: search the pages for the new element's neighbours, store the
//! element, then add the reverse edges one neighbour at a time, with the build graph's own
//! algorithm over the pages (`store::choose`, `store::link` on a `PageStore`). Each step changes
//! one page under its exclusive lock with its own WAL record, so readers and other writers go on
//! beside it; a crash between steps leaves an element with fewer incoming edges, never a broken
//! page.

use super::codec::{check_dim, encode, floor_of, heap_tid_bytes, prepare};
use super::opclass::Kind;
use super::page::{self, item_room, page_capacity, read_meta, NO_ENTRY, UPDATE_LOCK};
use super::pages::{PageStore, Pages};
use super::quant;
use crate::types::datum::SqlScalar;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use vs_hnsw::beam::Scored;
use vs_hnsw::select::random_level;
use vs_hnsw::store::{choose, link};
use vs_hnsw::tuple::{self, Id};

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

fn level_for(m: usize) -> usize {
    RNG.with(|r| {
        let mut s = r.get();
        if s == 0 {
            s = (unsafe { pg_sys::MyProcPid } as u64) << 32 ^ unsafe { pg_sys::GetCurrentTimestamp() } as u64 | 1;
        }
        let level = random_level(&mut s, m);
        r.set(s);
        level
    })
}

pub unsafe fn insert<T: SqlScalar>(index: pg_sys::Relation, heap_tid: [u8; 6], v: &[T]) {
    unsafe {
        pg_sys::LockPage(index, UPDATE_LOCK, pg_sys::ShareLock as i32);
        let mut lock = pg_sys::ShareLock as i32;
        let mut meta = read_meta(index);
        let m = meta.m as usize;
        let level = level_for(m);
        if meta.entry == NO_ENTRY || level > meta.entry_level as usize {
            // This element may become the entry point: no other insert may decide that at once.
            pg_sys::UnlockPage(index, UPDATE_LOCK, lock);
            lock = pg_sys::ExclusiveLock as i32;
            pg_sys::LockPage(index, UPDATE_LOCK, lock);
            meta = read_meta(index);
        }
        if meta.dim == 0 || meta.quant.is_some_and(|q| q.centroid == NO_ENTRY) {
            check_dim::<T>(v.len(), meta.dim as usize, meta.quant.is_some());
            // A quantized index gets its rotation with its dimension, and a zero centroid: no
            // rows were there to take a mean of. The exclusive lock is held (no entry yet: an
            // index without a centroid has no elements).
            let quant = meta.quant.map(|_| quant::meta_for(v.len(), quant::write_centroid(index, &vec![0.0; v.len()])));
            page::update_meta(index, |mm| {
                mm.dim = v.len() as u32;
                mm.quant = quant;
            });
            meta = read_meta(index);
        }
        check_dim::<T>(v.len(), meta.dim as usize, meta.quant.is_some());
        let quant = quant::of(index, &meta);

        let mut store = PageStore::<T>::new(index, &meta, None);
        let mut chosen: Vec<Vec<Scored<Id>>> = vec![Vec::new(); level + 1];
        if meta.entry != NO_ENTRY {
            // The new element has no id yet: its heap TID orders its ties (`beam::tie`).
            let salt = heap_tid.iter().fold(0u64, |a, &b| a << 8 | b as u64);
            let mut w = Pages::new(index, meta, v);
            w.salt = salt;
            let layers = w.search(level, 0, meta.ef_construction as usize);
            let top = level.min(meta.entry_level as usize);
            // Estimates scatter around a copy's true distance: no floor tells copies apart there.
            let floor = if quant.is_some() { f32::NEG_INFINITY } else { floor_of(meta.opclass, v) };
            for (i, found) in layers.into_iter().enumerate() {
                let live: Vec<Scored<Id>> = found.into_iter().filter(|s| !w.deleted.contains(&s.1)).collect();
                chosen[top - i] = choose(&store, salt, None, floor, top - i, live, |_| false);
            }
        }

        let shape = meta.shape();
        let mut lists = vec![0u8; tuple::lists_size(level, shape)];
        for (layer, ns) in chosen.iter().enumerate() {
            tuple::set_neighbours(&mut lists, level, shape, layer, &ns.iter().map(|s| s.1).collect::<Vec<_>>());
        }
        let (bytes, packed) = match &quant {
            Some(q) => (q.encode(v), false),
            None => encode(v),
        };
        let coded = quant.is_some();
        // A code longer than an element holds (more than 32,768 dimensions) leaves its tail
        // to the lists tuple.
        let head = bytes.len().min(page::largest_item() - tuple::HEADER);
        let mark = |mut t: Vec<u8>| {
            if packed {
                tuple::set_packed(&mut t);
            }
            if coded {
                tuple::set_code(&mut t);
            }
            if head < bytes.len() {
                tuple::set_split(&mut t);
            }
            t
        };
        let id = if item_room(tuple::HEADER + lists.len() + bytes.len()) <= page_capacity() {
            let mut t = mark(tuple::element(heap_tid, level, shape, &bytes, None));
            tuple::inline_lists_mut(&mut t, shape).copy_from_slice(&lists);
            page::place(index, &[&t])[0]
        } else {
            let loc = page::place(index, &[&tuple::lists_tuple(&lists, &bytes[head..])])[0];
            page::place(index, &[&mark(tuple::element(heap_tid, level, shape, &bytes[..head], Some(loc)))])[0]
        };
        link(&mut store, id, &chosen);
        if meta.entry == NO_ENTRY || level > meta.entry_level as usize {
            page::update_meta(index, |mm| {
                mm.entry = id;
                mm.entry_level = level as u32;
            });
        }
        pg_sys::UnlockPage(index, UPDATE_LOCK, lock);
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _unique: pg_sys::IndexUniqueCheck::Type,
    _unchanged: bool,
    _info: *mut pg_sys::IndexInfo,
) -> bool {
    unsafe {
        let meta = read_meta(index);
        let tid = heap_tid_bytes(heap_tid);
        // The vectors of one row's insert are short-lived: a memory context of their own.
        let mut ctx = pgrx::PgMemoryContexts::new("vs_hnsw insert");
        ctx.switch_to(|_| match meta.opclass.kind {
            Kind::F32 => {
                if let Some(v) = prepare::<f32>(*values, *isnull, &meta) {
                    insert::<f32>(index, tid, &v);
                }
            }
            Kind::F16 => {
                if let Some(v) = prepare::<f16>(*values, *isnull, &meta) {
                    insert::<f16>(index, tid, &v);
                }
            }
        });
        false
    }
}
