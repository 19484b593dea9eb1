//! The HNSW graph (Malkov & Yashunin): layers of proximity graphs, greedy descent through the
//! upper layers, beam search with a visited set in the lower ones, and the neighbour-selection
//! heuristic that keeps edges pointing in diverse directions. Free of pgrx: the vs_hnsw access
//! method maps it onto index pages and WAL; `cargo test` checks it against brute force.

use crate::types::kernels;
use half::f16;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Squared L2: the same order as L2, without the square root.
    L2,
    /// Negative inner product.
    InnerProduct,
    /// 1 − cosine similarity.
    Cosine,
}

impl Metric {
    /// `distance`, or any value above `bound` when the distance is above it.
    pub fn distance_bounded(self, a: &[f32], b: &[f32], bound: f32) -> f32 {
        match self {
            Metric::L2 => kernels::l2_squared_bounded(a, b, bound),
            _ => self.distance(a, b),
        }
    }

    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => kernels::l2_squared(a, b),
            Metric::InnerProduct => -kernels::dot(a, b),
            Metric::Cosine => kernels::cosine_distance(a, b) as f32,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Neighbours per node on the upper layers; twice that on layer 0.
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params { m: 16, ef_construction: 64, seed: 42 }
    }
}

/// A candidate: distance and node, ordered by distance (ties by node, for determinism).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored<I = u32>(pub f32, pub I);
impl<I: Ord> Eq for Scored<I> {}
impl<I: Ord> PartialOrd for Scored<I> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<I: Ord> Ord for Scored<I> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// What a beam search needs from a graph's storage: the in-memory `Graph` during a build, index
/// pages in shared buffers for inserts and scans.
pub trait Walk {
    type Id: Copy + Ord;
    /// Marks `id` visited; false when it already was.
    fn first_visit(&mut self, id: Self::Id) -> bool;
    /// Appends the neighbours of `id` on `layer` to `out`.
    fn neighbours(&mut self, id: Self::Id, layer: usize, out: &mut Vec<Self::Id>);
    /// Distance from the query to `id`; None when the node is gone (freed by VACUUM). Any value
    /// above `bound` may be returned for a node farther than `bound`: it will not be kept.
    fn distance(&mut self, id: Self::Id, bound: f32) -> Option<f32>;
    /// A hint that the distances to `ids` come next (to start loading them).
    fn prefetch(&mut self, _ids: &[Self::Id]) {}
}

/// Beam search on one layer from `entry` points; returns up to `ef` nearest, nearest first.
pub fn beam<W: Walk>(w: &mut W, entry: &[Scored<W::Id>], ef: usize, layer: usize) -> Vec<Scored<W::Id>> {
    let mut candidates: BinaryHeap<std::cmp::Reverse<Scored<W::Id>>> = BinaryHeap::new();
    let mut best: BinaryHeap<Scored<W::Id>> = BinaryHeap::new();
    for &e in entry {
        w.first_visit(e.1);
        candidates.push(std::cmp::Reverse(e));
        best.push(e);
    }
    while best.len() > ef {
        best.pop();
    }
    let mut ns = Vec::new();
    while let Some(std::cmp::Reverse(c)) = candidates.pop() {
        if best.len() >= ef && c.0 > best.peek().map_or(f32::INFINITY, |b| b.0) {
            break;
        }
        ns.clear();
        w.neighbours(c.1, layer, &mut ns);
        ns.retain(|&n| w.first_visit(n));
        w.prefetch(&ns);
        for &n in &ns {
            let bound = if best.len() >= ef { best.peek().map_or(f32::INFINITY, |b| b.0) } else { f32::INFINITY };
            let Some(d) = w.distance(n, bound) else { continue };
            if best.len() < ef || d < best.peek().map_or(f32::INFINITY, |b| b.0) {
                candidates.push(std::cmp::Reverse(Scored(d, n)));
                best.push(Scored(d, n));
                if best.len() > ef {
                    best.pop();
                }
            }
        }
    }
    best.into_sorted_vec()
}

/// The heuristic of the HNSW paper: take candidates (sorted, nearest first), keeping one only if
/// it is closer to the new node than to every neighbour already kept; fill up with the rest.
/// `dist(a, b, bound)` may stop early above `bound`: only "farther than bound?" is asked.
pub fn select<I: Copy + Ord>(candidates: &[Scored<I>], max: usize, dist: impl Fn(I, I, f32) -> f32) -> Vec<Scored<I>> {
    let mut kept: Vec<Scored<I>> = Vec::with_capacity(max);
    let mut pruned = Vec::new();
    for &c in candidates {
        if kept.len() >= max {
            break;
        }
        let diverse = kept.iter().all(|k| dist(c.1, k.1, c.0) > c.0);
        if diverse { kept.push(c) } else { pruned.push(c) }
    }
    for c in pruned {
        if kept.len() >= max {
            break;
        }
        kept.push(c);
    }
    kept
}

/// A level drawn from the exponential distribution with scale 1/ln(m), from a xorshift state.
pub fn random_level(rng: &mut u64, m: usize) -> usize {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let u = ((*rng >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let ml = 1.0 / (m.max(2) as f64).ln();
    ((-u.ln() * ml) as usize).min(max_level(m))
}

/// The highest level a node gets: at most 16, and low enough that its neighbour lists (12 bytes
/// an edge in the index) stay within half a page even for a large m.
pub fn max_level(m: usize) -> usize {
    let (layer0, above) = (4 + 2 * m * 12, 4 + m * 12);
    (4000usize.saturating_sub(layer0) / above).min(16)
}

/// How far a list may run over `max` between prunings in a build: one pruning (~500 distances)
/// per few edges instead of one per edge.
pub fn overrun(max: usize) -> usize {
    max / 4
}

/// Neighbours a node keeps on `layer`: 2m on layer 0, m above.
pub fn capacity(layer: usize, m: usize) -> usize {
    if layer == 0 { 2 * m } else { m }
}

/// Asks for transparent huge pages under a vector store: a build reads vectors at random, and
/// with 4 KiB pages nearly every read also missed the TLB.
fn huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    unsafe {
        let (start, len) = (v.as_ptr() as usize, v.capacity() * std::mem::size_of::<T>());
        let aligned = (start + (2 << 20) - 1) & !((2 << 20) - 1);
        if len > 4 << 20 && aligned < start + len {
            libc::madvise(aligned as *mut libc::c_void, (start + len - aligned) & !((2 << 20) - 1), libc::MADV_HUGEPAGE);
        }
    }
}

/// A graph's vectors, borrowed: from the in-memory `Graph` or from its copy in shared memory.
#[derive(Clone, Copy)]
pub enum StoreRef<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl<'a> StoreRef<'a> {
    fn at(dim: usize, id: u32) -> std::ops::Range<usize> {
        id as usize * dim..(id as usize + 1) * dim
    }

    pub fn vector(self, dim: usize, id: u32) -> std::borrow::Cow<'a, [f32]> {
        match self {
            StoreRef::F32(s) => std::borrow::Cow::Borrowed(&s[Self::at(dim, id)]),
            StoreRef::F16(s) => std::borrow::Cow::Owned(s[Self::at(dim, id)].iter().map(|x| x.to_f32()).collect()),
        }
    }

    /// Distance from `q` to node `id`, possibly stopping early above `bound`.
    fn dist(self, dim: usize, metric: Metric, q: &[f32], id: u32, bound: f32) -> f32 {
        let at = Self::at(dim, id);
        match (self, metric) {
            (StoreRef::F32(s), m) => m.distance_bounded(q, &s[at], bound),
            (StoreRef::F16(s), Metric::L2) => kernels::mixed_bounded(q, &s[at], false, bound),
            (StoreRef::F16(s), Metric::InnerProduct) => -kernels::mixed_bounded(q, &s[at], true, bound),
            (StoreRef::F16(_), m) => m.distance(q, &self.vector(dim, id)),
        }
    }

    /// Distance between two nodes, possibly stopping early above `bound`.
    fn between(self, dim: usize, metric: Metric, a: u32, b: u32, bound: f32) -> f32 {
        let (ra, rb) = (Self::at(dim, a), Self::at(dim, b));
        match (self, metric) {
            (StoreRef::F32(s), m) => m.distance_bounded(&s[ra], &s[rb], bound),
            (StoreRef::F16(s), Metric::L2) => kernels::f16_bounded(&s[ra], &s[rb], false, bound),
            (StoreRef::F16(s), Metric::InnerProduct) => -kernels::f16_bounded(&s[ra], &s[rb], true, f32::INFINITY),
            (StoreRef::F16(s), Metric::Cosine) => kernels::cosine_distance(&s[ra], &s[rb]) as f32,
        }
    }

    /// Starts loading the first cache lines of these nodes' vectors: a beam reads them next, and
    /// their misses then overlap instead of coming one by one (the build is bound by them).
    fn prefetch(self, dim: usize, ids: &[u32]) {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let (base, size) = match self {
                StoreRef::F32(s) => (s.as_ptr() as *const i8, 4),
                StoreRef::F16(s) => (s.as_ptr() as *const i8, 2),
            };
            let bytes = dim * size;
            for &id in ids {
                let p = base.add(id as usize * bytes);
                for line in (0..bytes).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(p.add(line));
                }
            }
        }
    }
}

/// What a batch insert reads of a graph: the in-memory `Graph`, or its copy in shared memory
/// that PostgreSQL's parallel workers read (`mirror.rs`). Both give the same answers.
pub trait View: Sync {
    fn dim(&self) -> usize;
    fn metric(&self) -> Metric;
    fn m(&self) -> usize;
    /// Nodes there are.
    fn size(&self) -> usize;
    fn store(&self) -> StoreRef<'_>;
    fn neighbours_into(&self, id: u32, layer: usize, out: &mut Vec<u32>);

    fn dist(&self, q: &[f32], id: u32, bound: f32) -> f32 {
        self.store().dist(self.dim(), self.metric(), q, id, bound)
    }
    fn between(&self, a: u32, b: u32, bound: f32) -> f32 {
        self.store().between(self.dim(), self.metric(), a, b, bound)
    }
    fn select_ids(&self, candidates: &[Scored], max: usize) -> Vec<u32> {
        select(candidates, max, |a, b, bound| self.between(a, b, bound)).into_iter().map(|s| s.1).collect()
    }
    /// `list` cut down to `max` neighbours of `n` by the selection heuristic.
    fn pruned(&self, n: u32, list: &[u32], max: usize) -> Vec<u32> {
        let mut scored: Vec<Scored> = list.iter().map(|&x| Scored(self.between(n, x, f32::INFINITY), x)).collect();
        scored.sort();
        self.select_ids(&scored, max)
    }
}

/// A graph seen from one query.
struct Walker<'a, V: View + ?Sized> {
    view: &'a V,
    q: &'a [f32],
    visited: &'a mut Visited,
}

impl<V: View + ?Sized> Walk for Walker<'_, V> {
    type Id = u32;
    fn first_visit(&mut self, id: u32) -> bool {
        self.visited.first(id)
    }
    fn neighbours(&mut self, id: u32, layer: usize, out: &mut Vec<u32>) {
        self.view.neighbours_into(id, layer, out);
    }
    fn distance(&mut self, id: u32, bound: f32) -> Option<f32> {
        Some(self.view.dist(self.q, id, bound))
    }
    fn prefetch(&mut self, ids: &[u32]) {
        self.view.store().prefetch(self.view.dim(), ids);
    }
}

/// A batch of nodes being inserted together: nodes `start..start + levels.len()`, their vectors
/// already in the store, searching the graph as it was before the batch from `entry` (on `top`).
pub struct Batch<'a> {
    pub start: u32,
    pub levels: &'a [usize],
    pub entry: u32,
    pub top: usize,
    pub ef: usize,
}

/// The neighbour lists (one per layer) of the batch's node `i`: a beam search of the graph as
/// it was, plus the batch's earlier nodes by brute force, then the selection heuristic.
pub fn plan_node<V: View + ?Sized>(v: &V, visited: &mut Visited, b: &Batch, i: usize) -> Vec<Vec<u32>> {
    let id = b.start + i as u32;
    let q = v.store().vector(v.dim(), id);
    let level = b.levels[i];
    let mut ep = vec![Scored(v.dist(&q, b.entry, f32::INFINITY), b.entry)];
    for layer in (level + 1..=b.top).rev() {
        visited.start(v.size());
        ep = beam(&mut Walker { view: v, q: &q, visited }, &ep, 1, layer);
    }
    let mut lists = vec![Vec::new(); level + 1];
    for layer in (0..=level).rev() {
        let mut found = if layer <= b.top {
            visited.start(v.size());
            ep = beam(&mut Walker { view: v, q: &q, visited }, &ep, b.ef, layer);
            ep.clone()
        } else {
            Vec::new()
        };
        found.extend((0..i).filter(|&j| b.levels[j] >= layer).map(|j| Scored(v.dist(&q, b.start + j as u32, f32::INFINITY), b.start + j as u32)));
        found.sort();
        lists[layer] = v.select_ids(&found, capacity(layer, v.m()));
    }
    lists
}

/// Node `nb`'s list on `layer` with the reverse edges `new` added, pruned by the heuristic when
/// it runs over by more than a quarter (see `Graph::insert`).
pub fn merge_list<V: View + ?Sized>(v: &V, nb: u32, layer: usize, new: &[u32]) -> Vec<u32> {
    let mut list = Vec::new();
    v.neighbours_into(nb, layer, &mut list);
    let old = list.len();
    for &x in new {
        if !list[..old].contains(&x) {
            list.push(x);
        }
    }
    let max = capacity(layer, v.m());
    if list.len() > max + overrun(max) {
        list = v.pruned(nb, &list, max);
    }
    list
}

/// Who does a batch's two parallel steps: threads of this process (`Threads`), or PostgreSQL's
/// parallel workers reading a copy of the graph in shared memory (`index::parallel`).
pub trait Team {
    /// `plan_node` for every node of the batch, in order.
    fn plan(&mut self, g: &Graph, b: &Batch) -> Vec<Vec<Vec<u32>>>;
    /// `merge_list` for every (node, layer, new edges), in order.
    fn merge(&mut self, g: &Graph, work: &[(u32, usize, Vec<u32>)]) -> Vec<Vec<u32>>;
}

/// A batch's steps on a rayon pool.
pub struct Threads<'a>(pub &'a rayon::ThreadPool);

impl Team for Threads<'_> {
    fn plan(&mut self, g: &Graph, b: &Batch) -> Vec<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        self.0.install(|| (0..b.levels.len()).into_par_iter().map_init(Visited::default, |vis, i| plan_node(g, vis, b, i)).collect())
    }
    fn merge(&mut self, g: &Graph, work: &[(u32, usize, Vec<u32>)]) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        self.0.install(|| work.par_iter().map(|(nb, layer, new)| merge_list(g, *nb, *layer, new)).collect())
    }
}

/// Visited marks by search generation, so a search clears nothing.
#[derive(Default)]
pub struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

impl Visited {
    pub fn start(&mut self, n: usize) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|v| *v = 0);
            self.generation = 1;
        }
        self.marks.resize(n, 0);
    }
    fn first(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        let first = *m != self.generation;
        *m = self.generation;
        first
    }
}

/// The graph's vectors: f16 while every vector inserted converts exactly (pixel values, say),
/// which halves the memory a build streams through; f32 from the first one that does not.
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

pub struct Graph {
    pub dim: usize,
    pub metric: Metric,
    pub params: Params,
    store: Store,
    /// neighbours[node][layer]
    neighbours: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    rng: u64,
    visited: Visited,
    /// Deleted nodes are still walked through (their edges keep the graph connected) but never
    /// returned; `repair` then removes them, as VACUUM does for the index.
    deleted: Vec<bool>,
}

impl Graph {
    pub fn new(dim: usize, metric: Metric, params: Params) -> Graph {
        Graph {
            dim,
            metric,
            params,
            store: Store::F16(Vec::new()),
            neighbours: Vec::new(),
            entry: None,
            rng: params.seed | 1,
            visited: Visited::default(),
            deleted: Vec::new(),
        }
    }

    pub fn is_deleted(&self, id: u32) -> bool {
        self.deleted[id as usize]
    }

    pub fn mark_deleted(&mut self, id: u32) {
        self.deleted[id as usize] = true;
    }

    pub fn live(&self) -> usize {
        self.deleted.iter().filter(|d| !**d).count()
    }

    /// Removes deleted nodes from every neighbour list. A live node that lost neighbours gets
    /// new ones, chosen by the same heuristic among its remaining neighbours and the neighbours
    /// of the ones it lost (two hops away, where the lost edges led). A deleted entry point is
    /// replaced by the live node on the highest layer.
    pub fn repair(&mut self) {
        for id in 0..self.len() as u32 {
            if self.is_deleted(id) {
                continue;
            }
            for layer in 0..=self.level(id) {
                let ns = &self.neighbours[id as usize][layer];
                if !ns.iter().any(|&n| self.deleted[n as usize]) {
                    continue;
                }
                let mut pool: Vec<u32> = Vec::new();
                for &n in ns {
                    if !self.deleted[n as usize] {
                        pool.push(n);
                    } else {
                        pool.extend(self.neighbours[n as usize][layer].iter().copied().filter(|&x| !self.deleted[x as usize] && x != id));
                    }
                }
                pool.sort_unstable();
                pool.dedup();
                let v = self.vector(id).into_owned();
                let mut scored: Vec<Scored> = pool.into_iter().map(|x| Scored(self.dist(&v, x), x)).collect();
                scored.sort();
                self.neighbours[id as usize][layer] = self.select(&scored, self.max_neighbours(layer));
            }
        }
        for id in 0..self.len() {
            if self.deleted[id] {
                self.neighbours[id].iter_mut().for_each(|l| l.clear());
            }
        }
        if self.entry.is_some_and(|e| self.is_deleted(e)) {
            self.entry = (0..self.len() as u32).filter(|&i| !self.is_deleted(i)).max_by_key(|&i| (self.level(i), std::cmp::Reverse(i)));
        }
    }

    pub fn len(&self) -> usize {
        self.neighbours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
    }

    pub fn vector(&self, id: u32) -> std::borrow::Cow<'_, [f32]> {
        self.store_ref().vector(self.dim, id)
    }

    fn push_vector(&mut self, v: &[f32]) {
        if let Store::F16(s) = &self.store {
            if super::tuple::packs(v.iter().copied()) {
                let Store::F16(s) = &mut self.store else { unreachable!() };
                let cap = s.capacity();
                s.extend(v.iter().map(|&x| f16::from_f32(x)));
                if s.capacity() != cap {
                    huge_pages(s);
                }
                return;
            }
            self.store = Store::F32(s.iter().map(|x| x.to_f32()).collect());
        }
        let Store::F32(s) = &mut self.store else { unreachable!() };
        let cap = s.capacity();
        s.extend_from_slice(v);
        if s.capacity() != cap {
            huge_pages(s);
        }
    }

    fn store_ref(&self) -> StoreRef<'_> {
        match &self.store {
            Store::F32(s) => StoreRef::F32(s),
            Store::F16(s) => StoreRef::F16(s),
        }
    }

    /// Whether the vectors are kept as f16 (all of them convert exactly).
    pub fn is_f16(&self) -> bool {
        matches!(self.store, Store::F16(_))
    }

    fn dist_bounded(&self, q: &[f32], id: u32, bound: f32) -> f32 {
        self.store_ref().dist(self.dim, self.metric, q, id, bound)
    }

    /// Distance between two nodes, possibly stopping early above `bound`.
    pub fn distance_between(&self, a: u32, b: u32, bound: f32) -> f32 {
        self.store_ref().between(self.dim, self.metric, a, b, bound)
    }

    pub fn neighbours(&self, id: u32, layer: usize) -> &[u32] {
        &self.neighbours[id as usize][layer]
    }

    pub fn level(&self, id: u32) -> usize {
        self.neighbours[id as usize].len() - 1
    }

    fn max_neighbours(&self, layer: usize) -> usize {
        capacity(layer, self.params.m)
    }

    fn random_level(&mut self) -> usize {
        random_level(&mut self.rng, self.params.m)
    }

    pub fn entry(&self) -> Option<u32> {
        self.entry
    }

    fn dist(&self, q: &[f32], id: u32) -> f32 {
        self.dist_bounded(q, id, f32::INFINITY)
    }

    fn search_layer(&mut self, q: &[f32], entry: &[Scored], ef: usize, layer: usize) -> Vec<Scored> {
        let mut visited = std::mem::take(&mut self.visited);
        visited.start(self.len());
        let found = beam(&mut Walker { view: &*self, q, visited: &mut visited }, entry, ef, layer);
        self.visited = visited;
        found
    }

    fn select(&self, candidates: &[Scored], max: usize) -> Vec<u32> {
        self.select_ids(candidates, max)
    }

    /// Adds a vector; returns its node id.
    pub fn insert(&mut self, v: &[f32]) -> u32 {
        assert_eq!(v.len(), self.dim, "vector of the wrong dimension");
        let id = self.len() as u32;
        let level = self.random_level();
        self.push_vector(v);
        self.neighbours.push(vec![Vec::new(); level + 1]);
        self.deleted.push(false);
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            return id;
        };
        let top = self.level(entry);
        let mut ep = vec![Scored(self.dist(v, entry), entry)];
        for layer in (level + 1..=top).rev() {
            ep = self.search_layer(v, &ep, 1, layer);
        }
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(v, &ep, self.params.ef_construction, layer);
            let max = self.max_neighbours(layer);
            let chosen = self.select(&found, max);
            for &n in &chosen {
                self.neighbours[n as usize][layer].push(id);
                // Lists may run over by a quarter before the heuristic prunes them: one
                // pruning (~500 distances) per few edges instead of one per edge.
                if self.neighbours[n as usize][layer].len() > max + overrun(max) {
                    self.prune(n, layer, max);
                }
            }
            self.neighbours[id as usize][layer] = chosen;
            ep = found;
        }
        if level > top {
            self.entry = Some(id);
        }
        id
    }

    /// Cuts a node's list on `layer` down to `max` with the selection heuristic.
    fn prune(&mut self, n: u32, layer: usize, max: usize) {
        self.neighbours[n as usize][layer] = self.pruned(n, &self.neighbours[n as usize][layer], max);
    }

    /// Inserts `vectors` (concatenated) as `insert` would one after another, with the work
    /// spread over a `Team`: each new node searches the graph as it was before the batch, plus
    /// the batch's earlier nodes by brute force; then the reverse edges are added and pruned per
    /// receiving node. The result depends neither on the team nor on its size.
    pub fn insert_batch(&mut self, vectors: &[f32], team: &mut dyn Team) {
        let dim = self.dim;
        let n = vectors.len() / dim;
        // Small graphs are built one node at a time: a batch would mostly search itself.
        if self.len() < 1000 {
            vectors.chunks(dim).for_each(|v| {
                self.insert(v);
            });
            return;
        }
        let start = self.len() as u32;
        let levels: Vec<usize> = (0..n).map(|_| self.random_level()).collect();
        for (v, &level) in vectors.chunks(dim).zip(&levels) {
            self.push_vector(v);
            self.neighbours.push(vec![Vec::new(); level + 1]);
            self.deleted.push(false);
        }
        let entry = self.entry.expect("a graph of 1,000 nodes has an entry");
        let top = self.level(entry);
        let batch = Batch { start, levels: &levels, entry, top, ef: self.params.ef_construction };
        let lists = team.plan(self, &batch);
        let mut adds: std::collections::BTreeMap<(u32, usize), Vec<u32>> = std::collections::BTreeMap::new();
        for (i, ls) in lists.into_iter().enumerate() {
            let id = start + i as u32;
            for (layer, l) in ls.into_iter().enumerate() {
                for &nb in &l {
                    adds.entry((nb, layer)).or_default().push(id);
                }
                self.neighbours[id as usize][layer] = l;
            }
        }
        let work: Vec<(u32, usize, Vec<u32>)> = adds.into_iter().map(|((nb, layer), new)| (nb, layer, new)).collect();
        let merged = team.merge(self, &work);
        for ((nb, layer, _), list) in work.into_iter().zip(merged) {
            self.neighbours[nb as usize][layer] = list;
        }
        if let Some(i) = (0..n).filter(|&i| levels[i] > top).max_by_key(|&i| (levels[i], std::cmp::Reverse(i))) {
            self.entry = Some(start + i as u32);
        }
    }

    /// Prunes the lists that ran over (see `insert`); done before the graph is written out.
    pub fn finish(&mut self) {
        for n in 0..self.len() as u32 {
            for layer in 0..=self.level(n) {
                let max = self.max_neighbours(layer);
                if self.neighbours[n as usize][layer].len() > max {
                    self.prune(n, layer, max);
                }
            }
        }
    }

    /// The `k` nearest live nodes to `q`, nearest first, searching with a beam of `ef` (≥ k).
    pub fn search(&mut self, q: &[f32], k: usize, ef: usize) -> Vec<Scored> {
        let Some(entry) = self.entry else { return Vec::new() };
        let mut ep = vec![Scored(self.dist(q, entry), entry)];
        for layer in (1..=self.level(entry)).rev() {
            ep = self.search_layer(q, &ep, 1, layer);
        }
        let mut found = self.search_layer(q, &ep, ef.max(k), 0);
        found.retain(|s| !self.deleted[s.1 as usize]);
        found.truncate(k);
        found
    }
}

impl View for Graph {
    fn dim(&self) -> usize {
        self.dim
    }
    fn metric(&self) -> Metric {
        self.metric
    }
    fn m(&self) -> usize {
        self.params.m
    }
    fn size(&self) -> usize {
        self.len()
    }
    fn store(&self) -> StoreRef<'_> {
        self.store_ref()
    }
    fn neighbours_into(&self, id: u32, layer: usize, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.neighbours[id as usize][layer]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::types::kernels::random_vectors as random;

    fn recall(metric: Metric, data: &[Vec<f32>], queries: &[Vec<f32>], k: usize, ef: usize) -> f64 {
        let mut g = Graph::new(data[0].len(), metric, Params::default());
        for v in data {
            g.insert(v);
        }
        let mut hits = 0;
        for q in queries {
            let mut exact: Vec<Scored> =
                data.iter().enumerate().map(|(i, v)| Scored(metric.distance(q, v), i as u32)).collect();
            exact.sort();
            let truth: std::collections::HashSet<u32> = exact[..k].iter().map(|s| s.1).collect();
            hits += g.search(q, k, ef).iter().filter(|s| truth.contains(&s.1)).count();
        }
        hits as f64 / (queries.len() * k) as f64
    }

    #[test]
    fn recall_against_brute_force_for_every_metric() {
        let data = random(3000, 24, 1);
        let queries = random(100, 24, 2);
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let r = recall(metric, &data, &queries, 10, 64);
            eprintln!("{metric:?}: recall@10 at ef 64 = {r:.3}");
            assert!(r >= 0.95, "{metric:?}: recall {r}");
        }
    }

    #[test]
    fn fashion_mnist_recall_at_ef_40() {
        let fm = crate::train::data::fashion_mnist(std::path::Path::new("/usr/share/datasets/fashion-mnist"), "train", Some(5000)).unwrap();
        let px = |img: &image::RgbImage| img.pixels().map(|p| p[0] as f32).collect::<Vec<f32>>();
        let data: Vec<Vec<f32>> = fm.images.iter().map(px).collect();
        let test = crate::train::data::fashion_mnist(std::path::Path::new("/usr/share/datasets/fashion-mnist"), "t10k", Some(100)).unwrap();
        let queries: Vec<Vec<f32>> = test.images.iter().map(px).collect();
        let r = recall(Metric::L2, &data, &queries, 10, 40);
        eprintln!("Fashion-MNIST 5,000 x 784: recall@10 at ef 40 = {r:.3}");
        assert!(r >= 0.95, "recall {r}");
    }

    #[test]
    fn deleted_nodes_are_never_returned_and_repair_keeps_recall() {
        let data = random(2000, 16, 5);
        let queries = random(100, 16, 6);
        let mut g = Graph::new(16, Metric::L2, Params::default());
        for v in &data {
            g.insert(v);
        }
        // delete every other node, the entry point among them if it is even
        for id in (0..2000u32).step_by(2) {
            g.mark_deleted(id);
        }
        let live: Vec<u32> = (1..2000u32).step_by(2).collect();
        let recall = |g: &mut Graph| {
            let mut hits = 0;
            for q in &queries {
                let mut exact: Vec<Scored> = live.iter().map(|&i| Scored(Metric::L2.distance(q, &data[i as usize]), i)).collect();
                exact.sort();
                let truth: std::collections::HashSet<u32> = exact[..10].iter().map(|s| s.1).collect();
                let got = g.search(q, 10, 64);
                assert!(got.iter().all(|s| !g.is_deleted(s.1)), "a deleted node was returned");
                hits += got.iter().filter(|s| truth.contains(&s.1)).count();
            }
            hits as f64 / (queries.len() * 10) as f64
        };
        let before = recall(&mut g);
        g.repair();
        let after = recall(&mut g);
        eprintln!("half deleted: recall@10 {before:.3} before repair, {after:.3} after");
        assert!(after >= 0.95, "recall after repair {after}");
        assert_eq!(g.live(), 1000);
        for id in live {
            for layer in 0..=g.level(id) {
                assert!(g.neighbours(id, layer).iter().all(|&n| !g.is_deleted(n)), "edge to a deleted node left");
            }
        }
        assert!(!g.is_deleted(g.entry.unwrap()));
        // inserting after a repair works as before
        let id = g.insert(&queries[0]);
        assert_eq!(g.search(&queries[0], 1, 16)[0].1, id);
    }

    #[test]
    fn batches_on_threads_find_what_serial_inserts_find() {
        let data = random(4000, 24, 11);
        let queries = random(100, 24, 12);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let build = |threads: Option<&rayon::ThreadPool>| {
            let mut g = Graph::new(24, Metric::L2, Params::default());
            for chunk in data.chunks(512) {
                match threads {
                    Some(p) => g.insert_batch(&chunk.concat(), &mut Threads(p)),
                    None => chunk.iter().for_each(|v| {
                        g.insert(v);
                    }),
                }
            }
            g.finish();
            g
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (mut serial, mut batched, mut batched1) = (build(None), build(Some(&pool)), build(Some(&one)));
        assert_eq!(batched.neighbours, batched1.neighbours, "the thread count does not change the graph");
        let recall = |g: &mut Graph| {
            let mut hits = 0;
            for q in &queries {
                let mut exact: Vec<Scored> = data.iter().enumerate().map(|(i, v)| Scored(Metric::L2.distance(q, v), i as u32)).collect();
                exact.sort();
                let truth: std::collections::HashSet<u32> = exact[..10].iter().map(|s| s.1).collect();
                hits += g.search(q, 10, 40).iter().filter(|s| truth.contains(&s.1)).count();
            }
            hits as f64 / 1000.0
        };
        let (rs, rb) = (recall(&mut serial), recall(&mut batched));
        let _ = recall(&mut batched1);
        eprintln!("recall@10 at ef 40: serial {rs:.3}, batched {rb:.3}");
        assert!(rb >= rs - 0.02 && rb >= 0.9, "batched {rb} vs serial {rs}");
    }

    #[test]
    fn vectors_stay_exact_when_the_store_widens_from_f16() {
        let mut g = Graph::new(4, Metric::L2, Params::default());
        let ints: Vec<Vec<f32>> = (0..50).map(|i| vec![i as f32, 1.0, 2.0, (i % 7) as f32]).collect();
        ints.iter().for_each(|v| {
            g.insert(v);
        });
        assert!(matches!(g.store, Store::F16(_)));
        let odd = [0.1f32, 0.2, 0.3, 1e-7];
        let id = g.insert(&odd);
        assert!(matches!(g.store, Store::F32(_)));
        assert_eq!(&*g.vector(id), &odd[..]);
        assert_eq!(&*g.vector(7), &ints[7][..]);
        assert_eq!(g.search(&odd, 1, 16)[0].1, id);
        assert_eq!(g.search(&ints[20], 1, 16)[0].1, 20);
    }

    #[test]
    fn structure_holds_its_invariants() {
        let data = random(1500, 8, 3);
        let mut g = Graph::new(8, Metric::L2, Params { m: 8, ..Default::default() });
        for v in &data {
            g.insert(v);
        }
        g.finish();
        for id in 0..g.len() as u32 {
            for layer in 0..=g.level(id) {
                let ns = g.neighbours(id, layer);
                assert!(ns.len() <= g.max_neighbours(layer));
                assert!(!ns.contains(&id), "no self loops");
                for &n in ns {
                    assert!(g.level(n) >= layer, "edges stay within a layer both nodes are on");
                }
            }
        }
        // every vector finds itself first
        for (i, v) in data.iter().enumerate().step_by(97) {
            assert_eq!(g.search(v, 1, 32)[0].1, i as u32);
        }
        assert!(Graph::new(3, Metric::L2, Params::default()).search(&[0.0; 3], 5, 10).is_empty());
    }
}
