//! The in-memory graph a CREATE INDEX fills before it writes the pages, and the batch insert
//! that spreads a build over threads or PostgreSQL's parallel workers (`Team`). Its lists grow
//! by `ListRule::memory`; what it shares with the pages is in `store`, `select` and `repair`.

use crate::beam::{beam, tie, Scored, Visited, Walk};
use crate::metric::Metric;
use crate::select::{capacity, random_level, select, ListRule};
use crate::store::{choose, link, Store, StoreMut, Wrote};
use half::f16;
use vs_vector::kernels;

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
    pub(crate) fn between(self, dim: usize, metric: Metric, a: u32, b: u32, bound: f32) -> f32 {
        let (ra, rb) = (Self::at(dim, a), Self::at(dim, b));
        match (self, metric) {
            (StoreRef::F32(s), m) => m.distance_bounded(&s[ra], &s[rb], bound),
            (StoreRef::F16(s), Metric::L2) => kernels::f16_bounded(&s[ra], &s[rb], false, bound),
            (StoreRef::F16(s), Metric::InnerProduct) => -kernels::f16_bounded(&s[ra], &s[rb], true, f32::INFINITY),
            (StoreRef::F16(s), Metric::Cosine) => kernels::cosine_distance(&s[ra], &s[rb]) as f32,
            (StoreRef::F16(s), Metric::L1) => kernels::l1(&s[ra], &s[rb]),
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
pub trait View: Store<Id = u32> + Sync {
    fn dim(&self) -> usize;
    fn metric(&self) -> Metric;
    /// Nodes there are.
    fn size(&self) -> usize;
    fn store(&self) -> StoreRef<'_>;
    /// `Store::list` without a new vector: a beam reads lists in its inner loop.
    fn neighbours_into(&self, id: u32, layer: usize, out: &mut Vec<u32>);

    fn dist(&self, q: &[f32], id: u32, bound: f32) -> f32 {
        self.store().dist(self.dim(), self.metric(), q, id, bound)
    }
}

/// A graph seen from one query.
struct Walker<'a, V: View + ?Sized> {
    view: &'a V,
    q: &'a [f32],
    visited: &'a mut Visited,
    salt: u64,
}

impl<V: View + ?Sized> Walk for Walker<'_, V> {
    type Id = u32;
    fn salt(&self) -> u64 {
        self.salt
    }
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
    /// One node inserted on its own (`Graph::insert`).
    pub serial: bool,
}

/// The neighbour lists (one per layer) of the batch's node `i`: a beam search of the graph as
/// it was, plus the batch's earlier nodes by brute force, then the selection heuristic.
pub fn plan_node<V: View + ?Sized>(v: &V, visited: &mut Visited, b: &Batch, i: usize) -> Vec<Vec<u32>> {
    plan_scored(v, visited, b, i).into_iter().map(|l| l.into_iter().map(|s| s.1).collect()).collect()
}

/// `plan_node` with each neighbour's distance.
fn plan_scored<V: View + ?Sized>(v: &V, visited: &mut Visited, b: &Batch, i: usize) -> Vec<Vec<Scored>> {
    let id = b.start + i as u32;
    let q = v.store().vector(v.dim(), id);
    let level = b.levels[i];
    let mut ep = vec![Scored(v.dist(&q, b.entry, f32::INFINITY), b.entry)];
    for layer in (level + 1..=b.top).rev() {
        visited.start(v.size());
        ep = beam(&mut Walker { view: v, q: &q, visited, salt: id as u64 }, &ep, 1, layer);
    }
    let mut lists = vec![Vec::new(); level + 1];
    for layer in (0..=level).rev() {
        let mut found = if layer <= b.top {
            visited.start(v.size());
            ep = beam(&mut Walker { view: v, q: &q, visited, salt: id as u64 }, &ep, b.ef, layer);
            ep.clone()
        } else {
            Vec::new()
        };
        found.extend((0..i).filter(|&j| b.levels[j] >= layer).map(|j| Scored(v.dist(&q, b.start + j as u32, f32::INFINITY), b.start + j as u32)));
        // A serial insert (a batch of one) keeps the beam's order, as `Graph::insert` did before
        // it shared this code, and a batch sorts as it did: both build the graphs they built.
        // A batch's node chooses from the ef nearest, as a serial insert does, and all its
        // copies (the heuristic spreads them by its own tie order): the heuristic over all the
        // batch's earlier nodes (up to 575 candidates, most compared with every neighbour kept)
        // made a batch cost 2× a serial insert (100,000 × 128, one thread: 23.3 s, 11.7 s).
        let floor = v.floor(id);
        if !b.serial {
            // The cut takes ties in the node's own order (`tie`), as `select` does: by id it
            // kept the oldest nodes and dropped the batch's own. Then by id again: `widen`
            // takes the oldest copies first, whose lists lead out (the batch's have none yet).
            found.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| tie(id as u64, x.1 as u64).cmp(&tie(id as u64, y.1 as u64))));
            found.truncate(found.iter().take_while(|s| s.0 <= floor).count().max(b.ef));
            found.sort();
        }
        // The batch's own nodes get their lists while the batch is planned: reading them would
        // make the graph depend on the workers' timing.
        lists[layer] = choose(v, id as u64, Some(id), floor, layer, found, |c| c >= b.start);
    }
    lists
}

/// Node `nb`'s list on `layer` with the reverse edges `new` added (`ListRule::memory`).
pub fn merge_list<V: View + ?Sized>(v: &V, nb: u32, layer: usize, new: &[u32]) -> Vec<u32> {
    let list = v.list(nb, layer);
    let between = |a, b, bound| v.between(a, b, bound);
    // The floor (a distance) only when the list is pruned: most added edges fit.
    v.rule(layer).add(nb, &list, new, || v.floor(nb), |x| v.between(nb, x, f32::INFINITY), between)
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

/// The graph's vectors: f16 while every vector inserted converts exactly (pixel values, say),
/// which halves the memory a build streams through; f32 from the first one that does not.
enum Vectors {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

pub struct Graph {
    pub dim: usize,
    pub metric: Metric,
    pub params: Params,
    store: Vectors,
    /// neighbours[node][layer]
    neighbours: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    rng: u64,
    visited: Visited,
}

impl Graph {
    pub fn new(dim: usize, metric: Metric, params: Params) -> Graph {
        Graph { dim, metric, params, store: Vectors::F16(Vec::new()), neighbours: Vec::new(), entry: None, rng: params.seed | 1, visited: Visited::default() }
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
        if let Vectors::F16(s) = &self.store {
            if kernels::exact_as_f16(v.iter().copied()) {
                let Vectors::F16(s) = &mut self.store else { unreachable!() };
                let cap = s.capacity();
                s.extend(v.iter().map(|&x| f16::from_f32(x)));
                if s.capacity() != cap {
                    huge_pages(s);
                }
                return;
            }
            self.store = Vectors::F32(s.iter().map(|x| x.to_f32()).collect());
        }
        let Vectors::F32(s) = &mut self.store else { unreachable!() };
        let cap = s.capacity();
        s.extend_from_slice(v);
        if s.capacity() != cap {
            huge_pages(s);
        }
    }

    fn store_ref(&self) -> StoreRef<'_> {
        match &self.store {
            Vectors::F32(s) => StoreRef::F32(s),
            Vectors::F16(s) => StoreRef::F16(s),
        }
    }

    /// Whether the vectors are kept as f16 (all of them convert exactly).
    pub fn is_f16(&self) -> bool {
        matches!(self.store, Vectors::F16(_))
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

    /// A beam on `layer`, ordering ties by `salt` (see `Walk::salt`).
    fn search_layer(&mut self, q: &[f32], entry: &[Scored], ef: usize, layer: usize, salt: u64) -> Vec<Scored> {
        let mut visited = std::mem::take(&mut self.visited);
        visited.start(self.len());
        let found = beam(&mut Walker { view: &*self, q, visited: &mut visited, salt }, entry, ef, layer);
        self.visited = visited;
        found
    }

    /// Adds a vector; returns its node id.
    pub fn insert(&mut self, v: &[f32]) -> u32 {
        assert_eq!(v.len(), self.dim, "vector of the wrong dimension");
        let id = self.len() as u32;
        let level = self.random_level();
        self.push_vector(v);
        self.neighbours.push(vec![Vec::new(); level + 1]);
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            return id;
        };
        // The one insert of the build, shared with batches and the parallel workers: a batch of one.
        let top = self.level(entry);
        let batch = Batch { start: id, levels: &[level], entry, top, ef: self.params.ef_construction, serial: true };
        let mut visited = std::mem::take(&mut self.visited);
        let lists = plan_scored(&*self, &mut visited, &batch, 0);
        self.visited = visited;
        for (layer, list) in lists.iter().enumerate() {
            self.neighbours[id as usize][layer] = list.iter().map(|s| s.1).collect();
        }
        link(self, id, &lists);
        if level > top {
            self.entry = Some(id);
        }
        id
    }

    /// Node `n`'s list on `layer` cut down to `max` with the selection heuristic.
    fn pruned(&self, n: u32, layer: usize, max: usize) -> Vec<u32> {
        let mut scored = self.scored(n, layer);
        scored.sort();
        let floor = self.floor(n);
        select(n as u64, &scored, max, floor, |a, b, bound| self.between(a, b, bound)).into_iter().map(|s| s.1).collect()
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
        }
        let entry = self.entry.expect("a graph of 1,000 nodes has an entry");
        let top = self.level(entry);
        let batch = Batch { start, levels: &levels, entry, top, ef: self.params.ef_construction, serial: false };
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
        self.finish_on(None);
    }

    /// `finish` on a pool's threads: a list is cut by its own vectors' distances alone, so
    /// the graph is the same (serial, 0.8 s after 11 s of inserting 100,000 × 128).
    pub fn finish_on(&mut self, pool: Option<&rayon::ThreadPool>) {
        use rayon::prelude::*;
        let over: Vec<(u32, usize)> = (0..self.len() as u32)
            .flat_map(|n| (0..=self.level(n)).map(move |layer| (n, layer)))
            .filter(|&(n, layer)| self.neighbours[n as usize][layer].len() > self.max_neighbours(layer))
            .collect();
        let cut = |&(n, layer): &(u32, usize)| self.pruned(n, layer, self.max_neighbours(layer));
        let lists: Vec<Vec<u32>> = match pool {
            Some(p) => p.install(|| over.par_iter().map(cut).collect()),
            None => over.iter().map(cut).collect(),
        };
        for ((n, layer), list) in over.into_iter().zip(lists) {
            self.neighbours[n as usize][layer] = list;
        }
    }
}

impl Store for Graph {
    type Id = u32;
    fn m(&self) -> usize {
        self.params.m
    }
    fn rule(&self, layer: usize) -> ListRule {
        ListRule::memory(layer, self.params.m)
    }
    fn list(&self, id: u32, layer: usize) -> Vec<u32> {
        self.neighbours[id as usize][layer].clone()
    }
    fn between(&self, a: u32, b: u32, bound: f32) -> f32 {
        self.distance_between(a, b, bound)
    }
}

impl StoreMut for Graph {
    fn write(&mut self, id: u32, layer: usize, _read: &[u32], list: &[u32]) -> Wrote {
        self.neighbours[id as usize][layer] = list.to_vec();
        Wrote::Replaced
    }
    fn search_own(&mut self, id: u32, level: usize) -> Vec<Vec<Scored>> {
        let (Some(entry), v) = (self.entry, self.vector(id).into_owned()) else { return Vec::new() };
        let top = self.level(entry);
        let mut ep = vec![Scored(self.dist(&v, entry), entry)];
        for layer in (level + 1..=top).rev() {
            ep = self.search_layer(&v, &ep, 1, layer, id as u64);
        }
        let mut out = vec![Vec::new(); level + 1];
        for layer in (0..=level.min(top)).rev() {
            ep = self.search_layer(&v, &ep, self.params.ef_construction, layer, id as u64);
            out[layer] = ep.iter().copied().filter(|s| s.1 != id).collect();
        }
        out
    }
}

impl View for Graph {
    fn dim(&self) -> usize {
        self.dim
    }
    fn metric(&self) -> Metric {
        self.metric
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
mod tests;
