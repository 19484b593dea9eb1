//! The graph on index pages: elements and their neighbour lists read and changed in shared
//! buffers, one locked page at a time, so that scans, inserts and VACUUM run beside each other.
//! `Pages` is the walk `beam` takes over them for one query; `PageStore` is the `Store` that
//! INSERT and VACUUM change them through, with the build graph's own algorithm.

use super::codec::{distance, distance_to, vector_of};
use super::page::{blocks, item, Locked, Meta, Xlog};
use super::quant::{self, Quant};
use crate::types::datum::SqlScalar;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use vs_hnsw::beam::{beam, Scored, Walk};
use vs_hnsw::select::ListRule;
use vs_hnsw::store::{Store, StoreMut, Wrote};
use vs_hnsw::tuple::{self, block_of, offset_of, ElementTuple, Id, Shape};
use vs_rabitq::estimate::Query;

/// Ids are already well spread in their low bits; a multiply mixes the block number in.
#[derive(Default)]
pub struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 ids are hashed")
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}
pub type IdSet = HashSet<Id, BuildHasherDefault<IdHasher>>;

pub struct Pages<'a, T> {
    pub index: pg_sys::Relation,
    pub meta: Meta,
    pub q: &'a [T],
    pub visited: IdSet,
    /// Elements VACUUM marked deleted that this walk went through.
    pub deleted: IdSet,
    /// Orders the walk's ties (`Walk::salt`): an insert's own, 0 for a scan.
    pub salt: u64,
    /// A quantized index's quantizer, and `q` prepared for its estimates.
    codes: Option<(Rc<Quant>, Query)>,
    /// Where split codes are put together.
    split_code: Vec<u8>,
}

impl<'a, T: SqlScalar> Pages<'a, T> {
    pub unsafe fn new(index: pg_sys::Relation, meta: Meta, q: &'a [T]) -> Self {
        let codes = unsafe { quant::of(index, &meta) }.map(|quant| {
            let query = quant.query(q, 0);
            (quant, query)
        });
        Pages { index, meta, q, visited: IdSet::default(), deleted: IdSet::default(), salt: 0, codes, split_code: Vec::new() }
    }

    /// Greedy descent from the entry point to `layer`: where a beam on it starts (none when
    /// the entry point is gone). The visited set is left empty for that beam.
    pub fn descend(&mut self, layer: usize) -> Vec<Scored<Id>> {
        let entry = self.meta.entry;
        let Some(d) = self.distance(entry, f32::INFINITY) else { return Vec::new() };
        let mut ep = vec![Scored(d, entry)];
        for l in (layer + 1..=self.meta.entry_level as usize).rev() {
            self.visited.clear();
            ep = beam(self, &ep, 1, l);
        }
        self.visited.clear();
        ep
    }

    /// `descend` to `layer`, then a beam of `ef` on each layer from `layer` down to `bottom`;
    /// returns the beam of every layer searched, top first.
    pub fn search(&mut self, layer: usize, bottom: usize, ef: usize) -> Vec<Vec<Scored<Id>>> {
        let mut ep = self.descend(layer);
        if ep.is_empty() {
            return Vec::new();
        }
        let top = self.meta.entry_level as usize;
        let mut out = Vec::new();
        for l in (bottom..=layer.min(top)).rev() {
            self.visited.clear();
            ep = beam(self, &ep, ef, l);
            out.push(ep.clone());
        }
        out
    }
}

/// Reads an element under a share lock; None when `id` holds no element. A scan keeps ids
/// from round to round of an iterative scan, and VACUUM may free one in between and its line
/// pointer be reused by another kind of tuple.
pub unsafe fn with_element<R>(index: pg_sys::Relation, id: Id, f: impl FnOnce(ElementTuple) -> R) -> Option<R> {
    unsafe {
        let b = Locked::read(index, block_of(id), false);
        item(b.page(), offset_of(id)).filter(|t| tuple::is_element(t)).map(|t| f(ElementTuple(t)))
    }
}

/// Calls `f` on the code of element `id` and whether it is marked deleted: in place, or, when
/// split, copied into `buf` with its tail from the lists tuple. None when the element is gone,
/// holds no code, or its lists tuple is gone.
pub unsafe fn with_code<R>(index: pg_sys::Relation, m: Shape, id: Id, buf: &mut Vec<u8>, f: impl FnOnce(&[u8], bool) -> R) -> Option<R> {
    unsafe {
        let b = Locked::read(index, block_of(id), false);
        let e = ElementTuple(item(b.page(), offset_of(id))?);
        if !e.is_code() {
            return None;
        }
        if !e.split() {
            return Some(f(e.vector_bytes(m), e.deleted()));
        }
        let (level, deleted, loc) = (e.level(), e.deleted(), e.separate()?);
        buf.clear();
        buf.extend_from_slice(e.vector_bytes(m));
        drop(b);
        let b = Locked::read(index, block_of(loc), false);
        buf.extend_from_slice(tuple::code_tail(item(b.page(), offset_of(loc))?, level, m)?);
        Some(f(buf, deleted))
    }
}

/// Adds the neighbours of `id` on `layer` to `out`, wherever the lists are.
unsafe fn neighbours_into(index: pg_sys::Relation, m: Shape, id: Id, layer: usize, out: &mut Vec<Id>) {
    unsafe {
        let b = Locked::read(index, block_of(id), false);
        let Some(t) = item(b.page(), offset_of(id)).filter(|t| tuple::is_element(t)) else { return };
        let e = ElementTuple(t);
        let level = e.level();
        if layer > level {
            return;
        }
        match e.separate() {
            None => out.extend(tuple::neighbours(e.inline_lists(m), level, m, layer)),
            Some(loc) => {
                drop(b);
                let b = Locked::read(index, block_of(loc), false);
                if let Some(l) = item(b.page(), offset_of(loc)) {
                    out.extend(tuple::neighbours(tuple::lists_body(l), level, m, layer));
                }
            }
        }
    }
}

/// Changes the neighbour list of `id` on `layer` (wherever the lists are) under an exclusive lock,
/// WAL-logged when `f` says it changed something; false when the element is gone, deleted or
/// not on that layer. `f` gets the lists and the element's level.
unsafe fn with_list(index: pg_sys::Relation, m: Shape, id: Id, layer: usize, f: impl FnOnce(&mut [u8], usize) -> bool) -> bool {
    unsafe {
        let b = Locked::read(index, block_of(id), true);
        let Some(t) = item(b.page(), offset_of(id)) else { return false };
        let e = ElementTuple(t);
        let level = e.level();
        if layer > level || e.deleted() {
            return false;
        }
        let (b, at) = match e.separate() {
            None => (b, id),
            Some(loc) => {
                drop(b);
                (Locked::read(index, block_of(loc), true), loc)
            }
        };
        let x = Xlog::start(index);
        let page = x.register(b.buf, false);
        let Some(t) = item(page, offset_of(at)) else {
            x.abort();
            return false;
        };
        let lists = if at == id { tuple::inline_lists_mut(t, m) } else { tuple::lists_body(t) };
        let changed = f(lists, level);
        if changed {
            x.finish()
        } else {
            x.abort()
        }
        changed
    }
}

/// Calls `f` on every live element (not marked deleted), reading each page once.
pub unsafe fn for_each_live(index: pg_sys::Relation, mut f: impl FnMut(Id, &ElementTuple)) {
    unsafe {
        for blk in 1..blocks(index) {
            let b = Locked::read(index, blk, false);
            for off in 1..=pg_sys::PageGetMaxOffsetNumber(b.page()) {
                if let Some(t) = item(b.page(), off).filter(|t| tuple::is_element(t)) {
                    let e = ElementTuple(t);
                    if !e.deleted() {
                        f(tuple::id(blk, off), &e);
                    }
                }
            }
        }
    }
}

impl<T: SqlScalar> Walk for Pages<'_, T> {
    type Id = Id;
    fn salt(&self) -> u64 {
        self.salt
    }
    fn first_visit(&mut self, id: Id) -> bool {
        self.visited.insert(id)
    }
    fn neighbours(&mut self, id: Id, layer: usize, out: &mut Vec<Id>) {
        unsafe { neighbours_into(self.index, self.meta.shape(), id, layer, out) };
    }
    fn prefetch(&mut self, ids: &[Id]) {
        unsafe { super::page::prefetch(self.index, ids) }
    }
    fn distance(&mut self, id: Id, bound: f32) -> Option<f32> {
        let (m, op, q) = (self.meta.shape(), self.meta.opclass, self.q);
        let (d, deleted) = match &self.codes {
            // An estimate: the scan reranks what it returns with the table's vectors.
            Some((quant, query)) => unsafe {
                with_code(self.index, m, id, &mut self.split_code, |code, deleted| quant.fits(code).then(|| (quant.estimate(query, code), deleted)))
            },
            None => unsafe { with_element(self.index, id, |e| distance_to(op, q, &e, m, bound).map(|d| (d, e.deleted()))) },
        }??;
        if deleted {
            self.deleted.insert(id);
        }
        Some(d)
    }
}

/// The index pages as the graph algorithm's `Store`: lists read and written one locked page at a
/// time, vectors read as needed and kept until the next `begin`.
pub struct PageStore<'a, T> {
    index: pg_sys::Relation,
    meta: &'a Meta,
    /// VACUUM's marks (every element with the deleted flag); None: read the flag on the page.
    deleted: Option<&'a IdSet>,
    vectors: RefCell<HashMap<Id, Payload<T>>>,
    quant: Option<Rc<Quant>>,
}

/// What an element holds: its vector, or (quantized) its code; an empty vector when it is gone.
enum Payload<T> {
    Vector(Vec<T>),
    Code(Vec<u8>),
}

impl<'a, T: SqlScalar> PageStore<'a, T> {
    pub unsafe fn new(index: pg_sys::Relation, meta: &'a Meta, deleted: Option<&'a IdSet>) -> Self {
        let quant = unsafe { quant::of(index, meta) };
        PageStore { index, meta, deleted, vectors: RefCell::new(HashMap::new()), quant }
    }

    /// The vector of element `id` (a code's approximate one; empty when it is gone).
    pub fn vector(&self, id: Id) -> Vec<T> {
        self.load(id);
        match (&self.vectors.borrow()[&id], &self.quant) {
            (Payload::Vector(v), _) => v.clone(),
            (Payload::Code(c), Some(q)) => q.decode(c),
            (Payload::Code(_), None) => Vec::new(),
        }
    }

    fn load(&self, id: Id) {
        if !self.vectors.borrow().contains_key(&id) {
            let m = self.meta.shape();
            let p = unsafe {
                match self.quant {
                    Some(_) => with_code(self.index, m, id, &mut Vec::new(), |c, _| Payload::Code(c.to_vec())),
                    None => with_element(self.index, id, |e| Payload::Vector(vector_of::<T>(&e, m))),
                }
            };
            self.vectors.borrow_mut().insert(id, p.unwrap_or(Payload::Vector(Vec::new())));
        }
    }
}

impl<T: SqlScalar> Store for PageStore<'_, T> {
    type Id = Id;
    fn m(&self) -> usize {
        self.meta.m as usize
    }
    fn rule(&self, layer: usize) -> ListRule {
        ListRule::page(layer, self.meta.m as usize)
    }
    fn is_deleted(&self, id: Id) -> bool {
        match self.deleted {
            Some(set) => set.contains(&id),
            None => unsafe { with_element(self.index, id, |e| e.deleted()) }.unwrap_or(true),
        }
    }
    fn list(&self, id: Id, layer: usize) -> Vec<Id> {
        let mut out = Vec::new();
        unsafe {
            // Every step of an insert's linking, of VACUUM's repair and of reconnect's walks over
            // the whole index reads a list first, with no page locked: the place to see a cancel
            // (and, in VACUUM, its cost delay).
            pg_sys::vacuum_delay_point();
            neighbours_into(self.index, self.meta.shape(), id, layer, &mut out);
        }
        out
    }
    fn floor(&self, id: Id) -> f32 {
        // Codes estimate a copy's distance with an error either way: no floor tells copies apart.
        if self.quant.is_some() {
            return f32::NEG_INFINITY;
        }
        vs_hnsw::select::copy_floor(self.between(id, id, f32::INFINITY))
    }
    fn between(&self, a: Id, b: Id, bound: f32) -> f32 {
        self.load(a);
        self.load(b);
        let vs = self.vectors.borrow();
        match (&vs[&a], &vs[&b], &self.quant) {
            (Payload::Code(ca), Payload::Code(cb), Some(q)) if q.fits(ca) && q.fits(cb) => q.between(ca, cb),
            // A vector that is gone (freed by an earlier VACUUM) is read as empty.
            (Payload::Vector(va), Payload::Vector(vb), _) if !va.is_empty() && va.len() == vb.len() => distance(self.meta.opclass, va, vb, bound),
            _ => f32::INFINITY,
        }
    }
}

impl<T: SqlScalar> StoreMut for PageStore<'_, T> {
    fn write(&mut self, id: Id, layer: usize, read: &[Id], list: &[Id]) -> Wrote {
        let (m, marked) = (self.meta.shape(), self.deleted);
        let mut wrote = Wrote::Gone;
        unsafe {
            with_list(self.index, m, id, layer, |lists, level| {
                // Under the lock: edges other inserts added since the list was read come first,
                // as those inserts counted on them (one cut off by a full list would leave its
                // new element without that way in); the given list's last choices give way. No
                // other page may be read here (this one is locked): only VACUUM's marks are seen.
                let mut out: Vec<Id> = tuple::neighbours(lists, level, m, layer)
                    .filter(|n| !read.contains(n) && !list.contains(n) && !marked.is_some_and(|d| d.contains(n)))
                    .collect();
                wrote = if out.is_empty() { Wrote::Replaced } else { Wrote::Merged };
                out.extend_from_slice(list);
                tuple::set_neighbours(lists, level, m, layer, &out);
                true
            });
        }
        wrote
    }
    fn begin(&mut self) {
        self.vectors.borrow_mut().clear();
    }
    fn search_own(&mut self, id: Id, level: usize) -> Vec<Vec<Scored<Id>>> {
        let v = self.vector(id);
        if v.is_empty() {
            return Vec::new();
        }
        let mut w = unsafe { Pages::new(self.index, *self.meta, &v) };
        w.salt = id;
        let layers = w.search(level, 0, self.meta.ef_construction as usize);
        let top = level.min(self.meta.entry_level as usize);
        let mut out = vec![Vec::new(); level + 1];
        for (i, found) in layers.into_iter().enumerate() {
            out[top - i] = found.into_iter().filter(|s| s.1 != id && !w.deleted.contains(&s.1) && !self.is_deleted(s.1)).collect();
        }
        out
    }
}
