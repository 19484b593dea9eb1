//! INSERT into an indexed table: search the pages for the new element's neighbours, store the
//! element, then add the reverse edges one neighbour at a time. Each step changes one page under
//! its exclusive lock with its own WAL record, so readers and other writers go on beside it; a
//! crash between steps leaves an element with fewer incoming edges, never a broken page.

use super::codec::{check_dim, encode, floor_of, heap_tid_bytes, pair_distance, prepare};
use super::opclass::Kind;
use super::page::{self, item_room, page_capacity, read_meta, Meta, NO_ENTRY, UPDATE_LOCK};
use super::pages::{neighbours_of, vector_at, with_element, with_list, Pages};
use crate::types::datum::SqlScalar;
use half::f16;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::collections::HashMap;
use vs_hnsw::graph::{capacity, random_level, select, widen, ListRule, Scored};
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

/// Adds the edge `from` → `to` (at distance `d`, `to_vector` being `to`'s vector) on `layer`,
/// by `ListRule::page`. With `force` the edge replaces the farthest one. Returns whether the
/// edge is in the list.
unsafe fn add_edge<T: SqlScalar>(index: pg_sys::Relation, meta: &Meta, from: Id, layer: usize, to: Id, d: f32, to_vector: &[T], force: bool) -> bool {
    let m = meta.m as usize;
    let rule = ListRule::page(layer, m);
    unsafe {
        for _ in 0..3 {
            let mut seen: Vec<(Id, f32)> = Vec::new();
            let done = with_list(index, m, from, layer, |lists, level| {
                seen = tuple::neighbours(lists, level, m, layer).collect();
                if force || rule.fits(seen.len() + 1) {
                    return tuple::add_neighbour(lists, level, m, layer, to, d, true);
                }
                false
            });
            let present = seen.iter().any(|s| s.0 == to);
            if done || present || rule.fits(seen.len() + 1) {
                return done || present;
            }
            // Full: choose the kept edges with no lock held (the vectors are on other pages).
            let mut vectors: HashMap<Id, Vec<T>> = HashMap::new();
            vectors.insert(to, to_vector.to_vec());
            for &(n, _) in &seen {
                vectors.insert(n, vector_at(index, n, m));
            }
            let floor = if meta.opclass.is_l2() { 0.0 } else { floor_of(meta.opclass, &vector_at::<T>(index, from, m)) };
            let dist = |a: Id, b: Id, bound: f32| pair_distance(meta.opclass, &vectors, a, b, bound);
            let score = |x: Id| if x == to { d } else { seen.iter().find(|s| s.0 == x).map_or(f32::INFINITY, |s| s.1) };
            let ids: Vec<Id> = seen.iter().map(|s| s.0).collect();
            let kept: Vec<(Id, f32)> = rule.add(from, &ids, &[to], || floor, score, dist).into_iter().map(|x| (x, score(x))).collect();
            let keeps_new = kept.iter().any(|k| k.0 == to);
            let written = with_list(index, m, from, layer, |lists, level| {
                let now: Vec<(Id, f32)> = tuple::neighbours(lists, level, m, layer).collect();
                if now != seen {
                    return false;
                }
                tuple::set_neighbours(lists, level, m, layer, &kept);
                true
            });
            if written {
                return keeps_new;
            }
        }
        false
    }
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
        if meta.dim == 0 {
            page::update_meta(index, |mm| mm.dim = v.len() as u32);
            meta.dim = v.len() as u32;
        }
        check_dim::<T>(v.len(), meta.dim as usize);

        let mut chosen: Vec<Vec<(Id, f32)>> = vec![Vec::new(); level + 1];
        if meta.entry != NO_ENTRY {
            // The new element has no id yet: its heap TID orders its ties (`graph::tie`).
            let salt = heap_tid.iter().fold(0u64, |a, &b| a << 8 | b as u64);
            let mut w = Pages::new(index, meta, v);
            w.salt = salt;
            let layers = w.search(level, 0, meta.ef_construction as usize);
            let top = level.min(meta.entry_level as usize);
            let floor = floor_of(meta.opclass, v);
            let mut vectors: HashMap<Id, Vec<T>> = HashMap::new();
            for (i, found) in layers.iter().enumerate() {
                let layer = top - i;
                let mut live: Vec<Scored<Id>> = found.iter().copied().filter(|s| !w.deleted.contains(&s.1)).collect();
                // A copy's edges are as long from the new element as from the copy.
                widen(&mut live, floor, |c| {
                    let ns = neighbours_of(index, m, c, layer);
                    ns.into_iter().filter(|(n, _)| with_element(index, *n, |e| !e.deleted()) == Some(true)).map(|(n, d)| Scored(d, n)).collect()
                });
                for s in &live {
                    vectors.entry(s.1).or_insert_with(|| vector_at(index, s.1, m));
                }
                let dist = |a: Id, b: Id, bound: f32| pair_distance(meta.opclass, &vectors, a, b, bound);
                chosen[layer] = select(salt, &live, capacity(layer, m), floor, dist).into_iter().map(|s| (s.1, s.0)).collect();
            }
        }

        let mut lists = vec![0u8; tuple::lists_size(level, m)];
        for (layer, ns) in chosen.iter().enumerate() {
            tuple::set_neighbours(&mut lists, level, m, layer, ns);
        }
        let (bytes, packed) = encode(v);
        let mark = |mut t: Vec<u8>| {
            if packed {
                tuple::set_packed(&mut t);
            }
            t
        };
        let id = if item_room(tuple::HEADER + lists.len() + bytes.len()) <= page_capacity() {
            let mut t = mark(tuple::element(heap_tid, level, m, &bytes, None));
            tuple::inline_lists_mut(&mut t, m).copy_from_slice(&lists);
            page::place(index, &[&t])[0]
        } else {
            let loc = page::place(index, &[&tuple::lists_tuple(&lists)])[0];
            page::place(index, &[&mark(tuple::element(heap_tid, level, m, &bytes, Some(loc)))])[0]
        };
        for (layer, ns) in chosen.iter().enumerate() {
            let mut linked = false;
            for &(n, d) in ns {
                linked |= add_edge(index, &meta, n, layer, id, d, v, false);
            }
            // An element no neighbour kept would be unreachable: its nearest neighbour takes it.
            if let (false, Some(&(n, d))) = (linked, ns.first()) {
                add_edge(index, &meta, n, layer, id, d, v, true);
            }
        }
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
        ctx.switch_to(|_| {
            let (op, dim) = (meta.opclass, meta.dim);
            match op.kind {
                Kind::F32 => {
                    if let Some(v) = prepare::<f32>(*values, *isnull, op, dim) {
                        insert::<f32>(index, tid, &v);
                    }
                }
                Kind::F16 => {
                    if let Some(v) = prepare::<f16>(*values, *isnull, op, dim) {
                        insert::<f16>(index, tid, &v);
                    }
                }
            }
        });
        false
    }
}
