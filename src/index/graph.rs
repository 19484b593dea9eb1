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

/// The in-memory graph seen from one query.
struct InMemory<'a> {
    graph: &'a Graph,
    q: &'a [f32],
    visited: &'a mut Visited,
}

impl Walk for InMemory<'_> {
    type Id = u32;
    fn first_visit(&mut self, id: u32) -> bool {
        self.visited.first(id)
    }
    fn neighbours(&mut self, id: u32, layer: usize, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.graph.neighbours[id as usize][layer]);
    }
    fn distance(&mut self, id: u32, bound: f32) -> Option<f32> {
        Some(self.graph.dist_bounded(self.q, id, bound))
    }
    fn prefetch(&mut self, ids: &[u32]) {
        self.graph.prefetch(ids);
    }
}

/// Visited marks by search generation, so a search clears nothing.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

impl Visited {
    fn start(&mut self, n: usize) {
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
        let at = id as usize * self.dim..(id as usize + 1) * self.dim;
        match &self.store {
            Store::F32(s) => std::borrow::Cow::Borrowed(&s[at]),
            Store::F16(s) => std::borrow::Cow::Owned(s[at].iter().map(|x| x.to_f32()).collect()),
        }
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

    /// Starts loading the first cache lines of these nodes' vectors: a beam reads them next, and
    /// their misses then overlap instead of coming one by one (the build is bound by them).
    fn prefetch(&self, ids: &[u32]) {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let (base, size) = match &self.store {
                Store::F32(s) => (s.as_ptr() as *const i8, 4),
                Store::F16(s) => (s.as_ptr() as *const i8, 2),
            };
            let bytes = self.dim * size;
            for &id in ids {
                let p = base.add(id as usize * bytes);
                for line in (0..bytes.min(512)).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(p.add(line));
                }
            }
        }
    }

    /// Distance from `q` to node `id`, possibly stopping early above `bound`.
    fn dist_bounded(&self, q: &[f32], id: u32, bound: f32) -> f32 {
        let at = id as usize * self.dim..(id as usize + 1) * self.dim;
        match (&self.store, self.metric) {
            (Store::F32(s), m) => m.distance_bounded(q, &s[at], bound),
            (Store::F16(s), Metric::L2) => kernels::mixed_bounded(q, &s[at], false, bound),
            (Store::F16(s), Metric::InnerProduct) => -kernels::mixed_bounded(q, &s[at], true, bound),
            (Store::F16(_), m) => m.distance(q, &self.vector(id)),
        }
    }

    /// Distance between two nodes, possibly stopping early above `bound`.
    pub fn distance_between(&self, a: u32, b: u32, bound: f32) -> f32 {
        let (ra, rb) = (a as usize * self.dim..(a as usize + 1) * self.dim, b as usize * self.dim..(b as usize + 1) * self.dim);
        match (&self.store, self.metric) {
            (Store::F32(s), m) => m.distance_bounded(&s[ra], &s[rb], bound),
            (Store::F16(s), Metric::L2) => kernels::l2_squared_bounded(&s[ra], &s[rb], bound),
            (Store::F16(s), Metric::InnerProduct) => -kernels::dot(&s[ra], &s[rb]),
            (Store::F16(s), Metric::Cosine) => kernels::cosine_distance(&s[ra], &s[rb]) as f32,
        }
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
        let found = beam(&mut InMemory { graph: self, q, visited: &mut visited }, entry, ef, layer);
        self.visited = visited;
        found
    }

    fn select(&self, candidates: &[Scored], max: usize) -> Vec<u32> {
        select(candidates, max, |a, b, bound| self.distance_between(a, b, bound)).into_iter().map(|s| s.1).collect()
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
                if self.neighbours[n as usize][layer].len() > max + max / 4 {
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

    fn pruned(&self, n: u32, list: &[u32], max: usize) -> Vec<u32> {
        let mut scored: Vec<Scored> = list.iter().map(|&x| Scored(self.distance_between(n, x, f32::INFINITY), x)).collect();
        scored.sort();
        self.select(&scored, max)
    }

    /// Inserts `vectors` (concatenated) as `insert` would one after another, with the work
    /// spread over `pool`'s threads: each new node searches the graph as it was before the
    /// batch, plus the batch's earlier nodes by brute force; then the reverse edges are added
    /// and pruned per receiving node in parallel. The result does not depend on the number of
    /// threads.
    pub fn insert_batch(&mut self, vectors: &[f32], pool: &rayon::ThreadPool) {
        use rayon::prelude::*;
        let dim = self.dim;
        let n = vectors.len() / dim;
        if self.len() < 1000 || n < 2 {
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
        let ef = self.params.ef_construction;
        let this = &*self;
        let lists: Vec<Vec<Vec<u32>>> = pool.install(|| {
            (0..n)
                .into_par_iter()
                .map_init(Visited::default, |visited, i| {
                    let (q, level) = (&vectors[i * dim..(i + 1) * dim], levels[i]);
                    let mut ep = vec![Scored(this.dist(q, entry), entry)];
                    for layer in (level + 1..=top).rev() {
                        visited.start(this.len());
                        ep = beam(&mut InMemory { graph: this, q, visited }, &ep, 1, layer);
                    }
                    let mut lists = vec![Vec::new(); level + 1];
                    for layer in (0..=level).rev() {
                        let mut found = if layer <= top {
                            visited.start(this.len());
                            ep = beam(&mut InMemory { graph: this, q, visited }, &ep, ef, layer);
                            ep.clone()
                        } else {
                            Vec::new()
                        };
                        found.extend((0..i).filter(|&j| levels[j] >= layer).map(|j| Scored(this.dist(q, start + j as u32), start + j as u32)));
                        found.sort();
                        lists[layer] = this.select(&found, this.max_neighbours(layer));
                    }
                    lists
                })
                .collect()
        });
        let mut adds: std::collections::HashMap<(u32, usize), Vec<u32>> = std::collections::HashMap::new();
        for (i, ls) in lists.into_iter().enumerate() {
            let id = start + i as u32;
            for (layer, l) in ls.into_iter().enumerate() {
                for &nb in &l {
                    adds.entry((nb, layer)).or_default().push(id);
                }
                self.neighbours[id as usize][layer] = l;
            }
        }
        let this = &*self;
        let updates: Vec<((u32, usize), Vec<u32>)> = pool.install(|| {
            adds.into_par_iter()
                .map(|((nb, layer), new)| {
                    let mut list = this.neighbours[nb as usize][layer].clone();
                    list.extend(new.into_iter().filter(|x| !this.neighbours[nb as usize][layer].contains(x)));
                    let max = this.max_neighbours(layer);
                    if list.len() > max + max / 4 {
                        list = this.pruned(nb, &list, max);
                    }
                    ((nb, layer), list)
                })
                .collect()
        });
        for ((nb, layer), list) in updates {
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
                    Some(p) => g.insert_batch(&chunk.concat(), p),
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
