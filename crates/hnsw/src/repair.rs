//! The lists after deletes, over any `StoreMut`: VACUUM on the pages, and the in-memory graph
//! of the tests. Written once, so that what the tests measure is what VACUUM does.

use crate::beam::Scored;
use crate::select::{copy_floor, select, select_onto};
use crate::store::{Store, StoreMut};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One repair of the lists after deletes. `node` chooses a new list, by the heuristic, for each
/// live node that lost a neighbour, from its live neighbours, the live nodes its lost ones led
/// to and what a search for its own vector finds (as pgvector's VACUUM does), and notes which of
/// the nodes the deleted ones led to a live node's edge now leads to; `adopt` then links each
/// one left over from the nearest live node that had led to it through a deleted one. Refilling
/// lists from two hops by plain nearest truncation cut live nodes off: 15 rounds of deleting and
/// inserting 6 % of 10,000 Fashion-MNIST rows left 704 unreachable (13 after a fresh build).
/// Keeping the live edges and adding only lost ones' neighbours left own-vector lookups missing
/// 10 of 1,218 rows in `churn_keeps_the_graph_as_connected_as_a_fresh_build` (a fresh build 4);
/// with the search and the heuristic over all of them, 4, at three times the repair's time.
pub struct Mending<I> {
    /// (deleted node, layer) → the live nodes its edges led to, and the live nodes whose edges
    /// led to it.
    gone: BTreeMap<(I, usize), (Vec<I>, Vec<I>)>,
    /// (live node, layer) a deleted node's edge led to → whether a live node's edge leads there.
    led: HashMap<(I, usize), bool>,
    /// Whether a node's live edges all stay. Needed when no `reconnect` follows: a live edge the
    /// heuristic drops may have been the only way to the node it led to, which `adopt` does not
    /// see (it links only what deleted nodes led to).
    keep_live: bool,
}

impl<I: Copy + Ord + Into<u64> + std::hash::Hash> Mending<I> {
    /// Starts a repair of the `deleted` nodes (with their levels); `reconnects` says whether
    /// `reconnect` will run after it (see `keep_live`).
    pub fn new<M: Store<Id = I>>(g: &M, deleted: impl IntoIterator<Item = (I, usize)>, reconnects: bool) -> Self {
        let (mut gone, mut led) = (BTreeMap::new(), HashMap::new());
        for (d, level) in deleted {
            for layer in 0..=level {
                let to: Vec<I> = g.list(d, layer).into_iter().filter(|&n| !g.is_deleted(n)).collect();
                for &n in &to {
                    led.insert((n, layer), false);
                }
                gone.insert((d, layer), (to, Vec::new()));
            }
        }
        Mending { gone, led, keep_live: !reconnects }
    }

    /// Repairs the lists of live node `id` (on `level` and below) that lead to deleted nodes.
    pub fn node<M: StoreMut<Id = I>>(&mut self, g: &mut M, id: I, level: usize) {
        g.begin();
        let mut floor = None;
        let mut found: Option<Vec<Vec<Scored<I>>>> = None;
        for layer in 0..=level {
            let read = g.list(id, layer);
            let (mut kept, mut pool) = (Vec::new(), Vec::new());
            for &n in &read {
                if !g.is_deleted(n) {
                    kept.push(n);
                } else if let Some((to, from)) = self.gone.get_mut(&(n, layer)) {
                    from.push(id);
                    pool.extend_from_slice(to);
                }
            }
            if kept.len() == read.len() {
                self.note(&read, layer);
                continue;
            }
            let searched = found.get_or_insert_with(|| g.search_own(id, level));
            pool.extend(searched.get(layer).into_iter().flatten().map(|s| s.1));
            pool.sort_unstable();
            pool.dedup();
            pool.retain(|&x| x != id && !kept.contains(&x) && !g.is_deleted(x));
            let floor = *floor.get_or_insert_with(|| copy_floor(g.between(id, id, f32::INFINITY)));
            let scored = |xs: &[I]| {
                let mut s: Vec<Scored<I>> = xs.iter().map(|&x| Scored(g.between(id, x, f32::INFINITY), x)).collect();
                s.sort();
                s
            };
            let dist = |a, b, bound| g.between(a, b, bound);
            let list = if self.keep_live {
                select_onto(id.into(), scored(&kept), &scored(&pool), g.capacity(layer), floor, dist)
            } else {
                pool.extend_from_slice(&kept);
                select(id.into(), &scored(&pool), g.capacity(layer), floor, dist)
            };
            let ids: Vec<I> = list.iter().map(|s| s.1).collect();
            self.note(&ids, layer);
            put(g, id, layer, &read, &list);
        }
    }

    fn note(&mut self, list: &[I], layer: usize) {
        for &n in list {
            if let Some(linked) = self.led.get_mut(&(n, layer)) {
                *linked = true;
            }
        }
    }

    /// After `node` has seen every live node: links each node that no live edge leads to any
    /// more from the nearest live node whose edge led to a deleted node that led to it, in place
    /// of the edge the heuristic values least. Returns how many it linked.
    pub fn adopt<M: StoreMut<Id = I>>(self, g: &mut M) -> usize {
        let Mending { gone, mut led, .. } = self;
        let mut linked = 0;
        for ((_, layer), (to, from)) in gone {
            for n in to {
                if led.get(&(n, layer)) != Some(&false) {
                    continue;
                }
                g.begin();
                let Some(Scored(d, e)) = from.iter().filter(|&&e| e != n).map(|&e| Scored(g.between(n, e, f32::INFINITY), e)).min() else { continue };
                let read = g.list(e, layer);
                let mut others: Vec<Scored<I>> =
                    read.iter().filter(|&&x| x != n && !g.is_deleted(x)).map(|&x| Scored(g.between(e, x, f32::INFINITY), x)).collect();
                others.sort();
                let floor = copy_floor(g.between(e, e, f32::INFINITY));
                let list = select_onto(e.into(), vec![Scored(d, n)], &others, g.capacity(layer), floor, |a, b, bound| g.between(a, b, bound));
                put(g, e, layer, &read, &list);
                led.insert((n, layer), true);
                linked += 1;
            }
        }
        linked
    }
}

/// Links every `live` node of `layer` that a walk from `entry` cannot reach on that layer from
/// its nearest reachable neighbour (by its own edges), where the edge the heuristic then drops
/// leaves its target another incoming edge. Inserts orphan a few nodes as they prune lists, and nothing
/// ever links an orphan again (no search finds it): over 15 churn rounds they added up to three
/// times a fresh build's. Returns how many nodes it linked.
pub fn reconnect<M: StoreMut>(g: &mut M, entry: M::Id, layer: usize, live: &[M::Id]) -> usize {
    let (mut reached, mut into) = (HashSet::new(), HashMap::new());
    reach(g, entry, layer, &mut reached, &mut into);
    let mut linked = 0;
    loop {
        let before = linked;
        for &u in live {
            if reached.contains(&u) {
                continue;
            }
            g.begin();
            let mut near: Vec<Scored<M::Id>> =
                g.list(u, layer).into_iter().filter(|x| reached.contains(x) && !g.is_deleted(*x)).map(|r| Scored(g.between(u, r, f32::INFINITY), r)).collect();
            near.sort();
            let mut best = None;
            for &Scored(d, r) in &near {
                let read = g.list(r, layer);
                let mut others: Vec<Scored<M::Id>> =
                    read.iter().filter(|&&x| x != u && !g.is_deleted(x)).map(|&x| Scored(g.between(r, x, f32::INFINITY), x)).collect();
                others.sort();
                let floor = copy_floor(g.between(r, r, f32::INFINITY));
                let list = select_onto(r.into(), vec![Scored(d, u)], &others, g.capacity(layer), floor, |a, b, bound| g.between(a, b, bound));
                let dropped: Vec<M::Id> = others.iter().map(|s| s.1).filter(|x| !list.iter().any(|s| s.1 == *x)).collect();
                let safe = dropped.iter().all(|x| into.get(x).is_some_and(|&n: &u32| n >= 2));
                if safe || best.is_none() {
                    best = Some((r, read, list, dropped));
                }
                if safe {
                    break;
                }
            }
            let Some((r, read, list, dropped)) = best else { continue };
            put(g, r, layer, &read, &list);
            for x in dropped {
                into.entry(x).and_modify(|n| *n -= 1);
            }
            reach(g, u, layer, &mut reached, &mut into);
            linked += 1;
        }
        if linked == before {
            return linked;
        }
    }
}

/// Marks what a walk from `from` reaches on `layer`, counting the edges into each node.
fn reach<M: Store>(g: &M, from: M::Id, layer: usize, reached: &mut HashSet<M::Id>, into: &mut HashMap<M::Id, u32>) {
    *into.entry(from).or_insert(0) += 1;
    if !reached.insert(from) {
        return;
    }
    let mut stack = vec![from];
    while let Some(n) = stack.pop() {
        for x in g.list(n, layer) {
            if g.is_deleted(x) {
                continue;
            }
            *into.entry(x).or_insert(0) += 1;
            if reached.insert(x) {
                stack.push(x);
            }
        }
    }
}

/// Writes a chosen list.
fn put<M: StoreMut>(g: &mut M, id: M::Id, layer: usize, read: &[M::Id], list: &[Scored<M::Id>]) {
    let ids: Vec<M::Id> = list.iter().map(|s| s.1).collect();
    g.write(id, layer, read, &ids);
}
