//! The beam search of HNSW (Malkov & Yashunin) over any storage that can be walked: greedy
//! descent through the upper layers, a beam with a visited set in the lower ones.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

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

/// An order for nodes at equal distances, different for every `salt` (the node being inserted, the
/// node whose list is pruned): splitmix64's finaliser. Ordering ties by id made every search and
/// every list prefer the same oldest nodes among exact duplicates, so the newer ones lost all
/// their incoming edges: of 1,000 identical vectors 967 were unreachable.
#[inline]
pub fn tie(salt: u64, id: u64) -> u64 {
    let mut z = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a beam search needs from a graph's storage: the in-memory `Graph` during a build, index
/// pages in shared buffers for inserts and scans.
pub trait Walk {
    type Id: Copy + Ord + Into<u64>;
    /// Orders this walk's ties (`tie`): the node being inserted, 0 for a query.
    fn salt(&self) -> u64 {
        0
    }
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

/// A node in a beam: its distance, then the walk's `tie`, then its id.
type Keyed<I> = Scored<(u64, I)>;

/// Beam search on one layer from `entry` points; returns up to `ef` nearest, nearest first.
/// Among nodes at equal distances it keeps those first in the walk's `tie` order, so inserts of
/// duplicates link to different copies.
pub fn beam<W: Walk>(w: &mut W, entry: &[Scored<W::Id>], ef: usize, layer: usize) -> Vec<Scored<W::Id>> {
    let salt = w.salt();
    let key = |d: f32, id: W::Id| Scored(d, (tie(salt, id.into()), id));
    let mut candidates: BinaryHeap<std::cmp::Reverse<Keyed<W::Id>>> = BinaryHeap::new();
    let mut best: BinaryHeap<Keyed<W::Id>> = BinaryHeap::new();
    for &e in entry {
        w.first_visit(e.1);
        candidates.push(std::cmp::Reverse(key(e.0, e.1)));
        best.push(key(e.0, e.1));
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
        w.neighbours(c.1 .1, layer, &mut ns);
        ns.retain(|&n| w.first_visit(n));
        w.prefetch(&ns);
        for &n in &ns {
            let bound = if best.len() >= ef { best.peek().map_or(f32::INFINITY, |b| b.0) } else { f32::INFINITY };
            let Some(d) = w.distance(n, bound) else { continue };
            if best.len() < ef || d < best.peek().map_or(f32::INFINITY, |b| b.0) {
                candidates.push(std::cmp::Reverse(key(d, n)));
                best.push(key(d, n));
                if best.len() > ef {
                    best.pop();
                }
            }
        }
    }
    best.into_sorted_vec().into_iter().map(|k| Scored(k.0, k.1 .1)).collect()
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
    pub(crate) fn first(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        let first = *m != self.generation;
        *m = self.generation;
        first
    }
}
