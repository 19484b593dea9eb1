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
/// Nodes nearest first.
type Nearest<I> = BinaryHeap<std::cmp::Reverse<Keyed<I>>>;

/// Beam search on one layer from `entry` points; returns up to `ef` nearest, nearest first.
/// Among nodes at equal distances it keeps those first in the walk's `tie` order, so inserts of
/// duplicates link to different copies.
pub fn beam<W: Walk>(w: &mut W, entry: &[Scored<W::Id>], ef: usize, layer: usize) -> Vec<Scored<W::Id>> {
    Beam::new(w, entry, ef, layer, false).next(w)
}

/// A beam search that can go on (iterative index scans): after `next` returned a beam, the next
/// call returns the nodes nearest after it, as far as the graph leads from where the beam
/// stopped, without searching again what it has seen. pgvector's iterative scans also resume;
/// ours searched again from the top with twice the beam, and answered filtered queries at 0.44×
/// its QPS (bench/iterative.py, 10,000 rows).
pub struct Beam<I: Ord> {
    salt: u64,
    ef: usize,
    layer: usize,
    candidates: Nearest<I>,
    best: BinaryHeap<Keyed<I>>,
    /// For a beam that goes on: the nodes it saw and did not keep, with their distances (such a
    /// beam takes every distance whole: taking the dropped ones' again read two elements a visit,
    /// 7,988 for 4,005). Evicted ones are in `candidates` or expanded; the others, passed over,
    /// nearest first, are neither.
    dropped: Option<(Vec<Keyed<I>>, Nearest<I>)>,
}

impl<I: Copy + Ord + Into<u64>> Beam<I> {
    pub fn new<W: Walk<Id = I>>(w: &mut W, entry: &[Scored<I>], ef: usize, layer: usize, goes_on: bool) -> Self {
        let mut b = Beam { salt: w.salt(), ef, layer, candidates: BinaryHeap::new(), best: BinaryHeap::new(), dropped: goes_on.then(Default::default) };
        for &e in entry {
            w.first_visit(e.1);
            b.candidates.push(std::cmp::Reverse(b.key(e.0, e.1)));
            b.keep(b.key(e.0, e.1));
        }
        b
    }

    fn key(&self, d: f32, id: I) -> Keyed<I> {
        Scored(d, (tie(self.salt, id.into()), id))
    }

    fn worst(&self) -> f32 {
        self.best.peek().map_or(f32::INFINITY, |b| b.0)
    }

    fn keep(&mut self, k: Keyed<I>) {
        self.best.push(k);
        if self.best.len() > self.ef {
            let out = self.best.pop().expect("a beam over ef holds a node");
            if let Some((evicted, _)) = &mut self.dropped {
                evicted.push(out);
            }
        }
    }

    /// Runs the beam to its end and returns it, nearest first; a beam that goes on then starts
    /// its next round from what it dropped.
    pub fn next<W: Walk<Id = I>>(&mut self, w: &mut W) -> Vec<Scored<I>> {
        let mut ns = Vec::new();
        while let Some(std::cmp::Reverse(c)) = self.candidates.pop() {
            if self.best.len() >= self.ef && c.0 > self.worst() {
                // Not expanded: a later round may.
                self.candidates.push(std::cmp::Reverse(c));
                break;
            }
            ns.clear();
            w.neighbours(c.1 .1, self.layer, &mut ns);
            ns.retain(|&n| w.first_visit(n));
            w.prefetch(&ns);
            for &n in &ns {
                let bound = if self.best.len() >= self.ef && self.dropped.is_none() { self.worst() } else { f32::INFINITY };
                let Some(d) = w.distance(n, bound) else { continue };
                let k = self.key(d, n);
                if self.best.len() < self.ef || d < self.worst() {
                    self.candidates.push(std::cmp::Reverse(k));
                    self.keep(k);
                } else if let Some((_, passed)) = &mut self.dropped {
                    passed.push(std::cmp::Reverse(k));
                }
            }
        }
        let out: Vec<Scored<I>> = std::mem::take(&mut self.best).into_sorted_vec().into_iter().map(|k| Scored(k.0, k.1 .1)).collect();
        if let Some((evicted, mut passed)) = self.dropped.take() {
            self.dropped = Some((Vec::new(), BinaryHeap::new()));
            // Evicted nodes are in `candidates` already, or expanded: pushing them again made a
            // scan expand the same nodes round after round (49,360 list reads for 2,541 rows).
            for k in evicted {
                self.keep(k);
            }
            // One past the round's beam stays for a later round.
            while passed.peek().is_some_and(|u| self.best.len() < self.ef || u.0 .0 < self.worst()) {
                let std::cmp::Reverse(k) = passed.pop().expect("peeked");
                self.candidates.push(std::cmp::Reverse(k));
                self.keep(k);
            }
            if let Some((_, rest)) = &mut self.dropped {
                *rest = passed;
            }
        } else {
            self.candidates.clear();
        }
        out
    }

    /// Nothing is left for another round: every node the graph leads to was returned.
    pub fn exhausted(&self) -> bool {
        self.best.is_empty() && self.candidates.is_empty()
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
    pub(crate) fn first(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        let first = *m != self.generation;
        *m = self.generation;
        first
    }
}
