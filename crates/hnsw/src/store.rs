//! The one storage the graph algorithm runs over, and the updates written once over it. The
//! in-memory build graph (`graph::Graph`), its shared-memory mirror for parallel workers
//! (`mirror::Mirror`) and the index pages (`src/index/pages.rs`) implement `Store`; those that
//! change lists in place (the build graph, the pages) implement `StoreMut`. Over them:
//! - `choose`: the list a new element gets from what a search found (build, batch, INSERT);
//! - `add_edge`: one edge added to a list, a full list pruned by the heuristic (`ListRule`);
//! - `link`: a new element's reverse edges (build and INSERT);
//! - `repair::Mending` and `repair::reconnect`: the lists after deletes (VACUUM).

use crate::beam::Scored;
use crate::select::{capacity, copy_floor, select, widen, ListRule};

pub trait Store {
    type Id: Copy + Ord + Into<u64> + std::hash::Hash;
    fn m(&self) -> usize;
    /// How its lists grow: past capacity between prunings in memory, within fixed slots on pages.
    fn rule(&self, layer: usize) -> ListRule;
    fn capacity(&self, layer: usize) -> usize {
        capacity(layer, self.m())
    }
    /// Deleted nodes are still walked through, never returned or linked to (pages, VACUUM).
    fn is_deleted(&self, _id: Self::Id) -> bool {
        false
    }
    /// The neighbours of `id` on `layer`, deleted ones too.
    fn list(&self, id: Self::Id, layer: usize) -> Vec<Self::Id>;
    /// `list` with each neighbour's distance from `id`.
    fn scored(&self, id: Self::Id, layer: usize) -> Vec<Scored<Self::Id>> {
        self.list(id, layer).into_iter().map(|x| Scored(self.between(id, x, f32::INFINITY), x)).collect()
    }
    /// Distance between two nodes, possibly stopping early above `bound`.
    fn between(&self, a: Self::Id, b: Self::Id, bound: f32) -> f32;
    /// Distances to node `id`'s copies are at most this (`copy_floor`).
    fn floor(&self, id: Self::Id) -> f32 {
        copy_floor(self.between(id, id, f32::INFINITY))
    }
}

/// What a `StoreMut::write` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrote {
    /// The list is the one given.
    Replaced,
    /// Others added edges since it was read (concurrent inserts on pages): those come first,
    /// the given list's last choices gave way.
    Merged,
    /// The node is gone, deleted or not on that layer: nothing was written.
    Gone,
}

pub trait StoreMut: Store {
    /// Replaces `id`'s list on `layer`, read as `read`, by `list`.
    fn write(&mut self, id: Self::Id, layer: usize, read: &[Self::Id], list: &[Self::Id]) -> Wrote;
    /// Called before each step that reads vectors (the pages drop those read for the last one).
    fn begin(&mut self) {}
    /// The live nodes a search for `id`'s own vector finds on layers `level` down to 0 (one
    /// beam of ef_construction each, as an insert's), nearest first; index = layer.
    fn search_own(&mut self, id: Self::Id, level: usize) -> Vec<Vec<Scored<Self::Id>>>;
}

/// The list on `layer` of a new node (`owner` orders its ties, `floor` bounds its copies) from
/// the nodes a search found, sorted by distance from it: `widen` through its copies (but not
/// through those `skip` names), then the selection heuristic down to capacity. `exclude` is
/// the node itself when it is already stored.
pub fn choose<S: Store + ?Sized>(
    s: &S,
    owner: u64,
    exclude: Option<S::Id>,
    floor: f32,
    layer: usize,
    mut found: Vec<Scored<S::Id>>,
    skip: impl Fn(S::Id) -> bool,
) -> Vec<Scored<S::Id>> {
    // A copy's edges are as long from the new node as from the copy.
    widen(&mut found, floor, |c| {
        if skip(c) {
            return Vec::new();
        }
        s.scored(c, layer).into_iter().filter(|x| Some(x.1) != exclude && !s.is_deleted(x.1)).collect()
    });
    select(owner, &found, s.capacity(layer), floor, |a, b, bound| s.between(a, b, bound))
}

/// Adds the edge `owner` → `edge` on `layer` by the store's
/// `ListRule`; with `force` a full list gives up its farthest edge for it instead. A list
/// changed meanwhile (a concurrent insert on pages) is read again, at most three times.
/// Returns whether the edge is in the list.
pub fn add_edge<S: StoreMut + ?Sized>(s: &mut S, owner: S::Id, layer: usize, edge: S::Id, force: bool) -> bool {
    let rule = s.rule(layer);
    for _ in 0..3 {
        s.begin();
        let read = s.list(owner, layer);
        if read.contains(&edge) {
            return true;
        }
        // Distances only when the list is pruned: most added edges fit, and computing a list's
        // distances for each would cost more than the insert's search. The new edge's too: in
        // a quantized index the search's distance estimates from the new vector itself,
        // `between` from two codes, and a list is ordered by one kind.
        let dist = |x: S::Id| s.between(owner, x, f32::INFINITY);
        let list: Vec<S::Id> = if rule.fits(read.len() + 1) {
            read.iter().copied().chain([edge]).collect()
        } else if force {
            let far = read.iter().map(|&x| Scored(dist(x), x)).max().expect("a full list has edges").1;
            read.iter().map(|&x| if x == far { edge } else { x }).collect()
        } else {
            rule.add(owner, &read, &[edge], || s.floor(owner), dist, |a, b, bound| s.between(a, b, bound))
        };
        match s.write(owner, layer, &read, &list) {
            Wrote::Replaced => return list.contains(&edge),
            Wrote::Gone => return false,
            Wrote::Merged => {}
        }
    }
    false
}

/// Links new node `id` from the neighbours it chose (`lists`, by layer, with their distances):
/// each adds the reverse edge (`add_edge`). Where none keeps it, its nearest neighbour on that
/// layer takes it in place of its farthest edge: a node no neighbour leads to is unreachable.
pub fn link<S: StoreMut + ?Sized>(s: &mut S, id: S::Id, lists: &[Vec<Scored<S::Id>>]) {
    for (layer, list) in lists.iter().enumerate() {
        let mut linked = false;
        for &Scored(_, n) in list {
            linked |= add_edge(s, n, layer, id, false);
        }
        if let (false, Some(&Scored(_, n))) = (linked, list.first()) {
            add_edge(s, n, layer, id, true);
        }
    }
}
