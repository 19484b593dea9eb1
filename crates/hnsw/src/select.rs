//! Which neighbours a node keeps: the selection heuristic of the HNSW paper that keeps edges
//! pointing in diverse directions, the rule lists grow by, and the levels nodes get.

use crate::beam::{tie, Scored};
use std::collections::BTreeSet;

/// Candidates at most this far from a node are its copies (see `select`). An exact copy is at
/// 0 under L2 in every kernel; under inner products (cosine too: the graph sees normalised
/// vectors' inner products) at the node's distance to itself, give or take the rounding of
/// kernels that sum in other orders.
#[inline]
pub fn copy_floor(self_distance: f32) -> f32 {
    self_distance + self_distance.abs() * 1e-5
}

/// The heuristic of the HNSW paper for the list of node `owner`: take candidates nearest first,
/// keeping one only if it is closer to the owner than to every neighbour already kept; fill up
/// with the rest. Candidates at equal distances come in the owner's own `tie` order.
/// `dist(a, b, bound)` may stop early above `bound`: only "farther than bound?" is asked.
///
/// Copies of the owner (candidates at most `floor` away, see `copy_floor`) point in no
/// direction: they take at most half the list, and shadow no other candidate. By the paper's
/// test a copy (exactly as far from every candidate as the owner) pruned all of them, so 2,000
/// copies of one Fashion-MNIST image kept edges only among themselves: a search that entered
/// them found 34 rows and no way out.
pub fn select<I: Copy + Ord + Into<u64>>(owner: u64, candidates: &[Scored<I>], max: usize, floor: f32, dist: impl Fn(I, I, f32) -> f32) -> Vec<Scored<I>> {
    select_onto(owner, Vec::new(), candidates, max, floor, dist)
}

/// `select` with the neighbours in `kept` taken first, whatever the heuristic says of them
/// (`candidates` holds none of them).
pub fn select_onto<I: Copy + Ord + Into<u64>>(
    owner: u64,
    mut kept: Vec<Scored<I>>,
    candidates: &[Scored<I>],
    max: usize,
    floor: f32,
    dist: impl Fn(I, I, f32) -> f32,
) -> Vec<Scored<I>> {
    let mut sorted = candidates.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| tie(owner, a.1.into()).cmp(&tie(owner, b.1.into()))));
    let mut copies = kept.iter().filter(|k| k.0 <= floor).count();
    let mut pruned = Vec::new();
    for c in sorted {
        if kept.len() >= max {
            break;
        }
        let keep = if c.0 <= floor {
            copies += 1;
            copies <= max / 2
        } else {
            kept.iter().all(|k| k.0 <= floor || dist(c.1, k.1, c.0) > c.0)
        };
        if keep {
            kept.push(c)
        } else {
            pruned.push(c)
        }
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

/// The highest level a node gets: at most 16, and low enough that its neighbour lists stay
/// within half a page even for a large m, at the 12 bytes an edge took in indexes written
/// before 0.7 (`tuple::Shape::wide`), which take new elements too.
pub fn max_level(m: usize) -> usize {
    let (layer0, above) = (4 + 2 * m * 12, 4 + m * 12);
    (4000usize.saturating_sub(layer0) / above).min(16)
}

/// How far a list may run over `max` between prunings in a build: one pruning (~500 distances)
/// per few edges instead of one per edge.
#[inline]
pub fn overrun(max: usize) -> usize {
    max / 4
}

/// The one rule for adding edges to a neighbour list, in memory and on pages: a list holds at
/// most `room` edges; edges that do not fit make the selection heuristic cut the list, new
/// edges included, to `room` less a quarter of the capacity. So the heuristic runs once per
/// several edges, and a node in a sparse direction keeps its incoming edges (replacing the
/// farthest edge instead left about 2 % of the nodes unreachable). In memory a list may run
/// over its capacity by that quarter (`finish` prunes it back); a page's slots are fixed.
#[derive(Clone, Copy, Debug)]
pub struct ListRule {
    pub room: usize,
    pub cut: usize,
}

impl ListRule {
    /// Lists of a build graph (and its shared-memory mirror).
    pub fn memory(layer: usize, m: usize) -> ListRule {
        let max = capacity(layer, m);
        ListRule { room: max + overrun(max), cut: max }
    }

    /// Lists on index pages, `capacity` slots each.
    pub fn page(layer: usize, m: usize) -> ListRule {
        let max = capacity(layer, m);
        ListRule { room: max, cut: max - overrun(max) }
    }

    pub fn fits(self, len: usize) -> bool {
        len <= self.room
    }

    /// `list` (node `owner`'s, at the distances `score` gives) with `new` added, cut by the
    /// heuristic when it does not fit.
    pub fn add<I: Copy + Ord + Into<u64>>(
        self,
        owner: I,
        list: &[I],
        new: &[I],
        floor: impl FnOnce() -> f32,
        score: impl Fn(I) -> f32,
        dist: impl Fn(I, I, f32) -> f32,
    ) -> Vec<I> {
        let mut out = list.to_vec();
        out.extend(new.iter().filter(|x| !list.contains(x)));
        if self.fits(out.len()) {
            return out;
        }
        let mut scored: Vec<Scored<I>> = out.iter().map(|&x| Scored(score(x), x)).collect();
        scored.sort();
        select(owner.into(), &scored, self.cut, floor(), dist).into_iter().map(|s| s.1).collect()
    }
}

/// Neighbours a node keeps on `layer`: 2m on layer 0, m above.
#[inline]
pub fn capacity(layer: usize, m: usize) -> usize {
    if layer == 0 {
        2 * m
    } else {
        m
    }
}

/// Copies whose neighbours `widen` adds: the lists of a few are enough, as every copy takes its
/// way out from the copies found before it.
const WIDEN: usize = 4;

/// Adds to a node's candidates (`found`, sorted) the neighbours of its copies among them
/// (`neighbours` gives them with their distances to the node). A beam among more copies than
/// ef finds nothing else, and the node would get no edge leading away from its copies.
pub fn widen<I: Copy + Ord>(found: &mut Vec<Scored<I>>, floor: f32, mut neighbours: impl FnMut(I) -> Vec<Scored<I>>) {
    let copies: Vec<I> = found.iter().take_while(|s| s.0 <= floor).take(WIDEN).map(|s| s.1).collect();
    if copies.is_empty() {
        return;
    }
    let mut seen: BTreeSet<I> = found.iter().map(|s| s.1).collect();
    for c in copies {
        for s in neighbours(c) {
            if seen.insert(s.1) {
                found.push(s);
            }
        }
    }
    found.sort();
}
