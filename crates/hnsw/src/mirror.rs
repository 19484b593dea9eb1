//! A copy of the in-memory graph in one flat block of memory that other processes can map (a
//! PostgreSQL DSM segment during a parallel build): vectors, levels and fixed-size neighbour
//! slots, addressed by offsets so that it reads the same at any address. The leader keeps it in
//! step with its `Graph` (`sync`); participants run a batch's steps on it through `View`,
//! claiming items one at a time, and write their results into it. Free of pgrx: the processes,
//! the segment and the sleeping are `index::parallel`'s.

use crate::beam::Visited;
use crate::graph::{merge_list, plan_node, Batch, Graph, StoreRef, View};
use crate::metric::Metric;
use crate::select::{capacity, max_level, overrun, ListRule};
use crate::store::Store;
use half::f16;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

pub const PLAN: u32 = 1;
pub const MERGE: u32 = 2;
pub const DONE: u32 = 3;

/// The mutable part of the header. `ticket` packs generation (22 bits), step (2), items (20) and
/// the next item to claim (20) into one word, so that a claim can never mix two steps.
#[repr(C)]
struct Header {
    dim: u32,
    metric: u32,
    m: u32,
    f16: u32,
    cap_nodes: u32,
    batch: u32,
    len: AtomicU32,
    slots_used: AtomicU32,
    done: AtomicU32,
    start: AtomicU32,
    entry: AtomicU32,
    top: AtomicU32,
    ef: AtomicU32,
    ticket: AtomicU64,
}

fn pack(generation: u64, step: u32, items: usize, next: usize) -> u64 {
    (generation & 0x3f_ffff) << 42 | (step as u64 & 3) << 40 | (items as u64) << 20 | next as u64
}

/// Where each region starts, in bytes from the base.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    dim: usize,
    esize: usize,
    cap_nodes: usize,
    cap_slots: usize,
    cap_work: usize,
    batch: usize,
    offsets: usize,
    levels: usize,
    vectors: usize,
    slots: usize,
    work_index: usize,
    work: usize,
    pub total: usize,
}

/// Slots a node's lists take: a length and `capacity + overrun` ids per layer (lists may run
/// over between prunings).
fn slot_room(layer: usize, m: usize) -> usize {
    let c = capacity(layer, m);
    1 + c + overrun(c)
}

fn node_slots(level: usize, m: usize) -> usize {
    slot_room(0, m) + level * slot_room(1, m)
}

impl Layout {
    pub fn new(dim: usize, f16: bool, m: usize, cap_nodes: usize, batch: usize) -> Layout {
        let up = |x: usize| (x + 63) & !63;
        // Upper layers hold about n / (m - 1) lists; twice that, and room for the tallest node.
        let upper = 2 * cap_nodes / (m.max(2) - 1) + 4 * max_level(m);
        let cap_slots = cap_nodes * slot_room(0, m) + upper * slot_room(1, m);
        // A batch adds at most this many reverse edges; each merge item is (node, layer, count).
        let edges = batch * (capacity(0, m) + max_level(m) * capacity(1, m));
        let esize = if f16 { 2 } else { 4 };
        let offsets = up(std::mem::size_of::<Header>());
        let levels = up(offsets + 4 * cap_nodes);
        let vectors = up(levels + 4 * cap_nodes);
        let slots = up(vectors + esize * dim * cap_nodes);
        let work_index = up(slots + 4 * cap_slots);
        let work = up(work_index + 4 * (edges + 1));
        let total = up(work + 4 * 4 * edges);
        Layout { dim, esize, cap_nodes, cap_slots, cap_work: 4 * edges, batch, offsets, levels, vectors, slots, work_index, work, total }
    }
}

pub struct Mirror {
    base: *mut u8,
    layout: Layout,
    metric: Metric,
    m: usize,
}

// The regions are written only as the protocol allows: the leader between steps, a participant
// only into the slots of the items it claimed.
unsafe impl Send for Mirror {}
unsafe impl Sync for Mirror {}

impl Mirror {
    /// Lays out an empty mirror at `base`, which must hold `layout.total` bytes, 64-aligned.
    pub unsafe fn init(base: *mut u8, layout: Layout, metric: Metric, m: usize) -> Mirror {
        unsafe {
            std::ptr::write_bytes(base, 0, layout.offsets);
            let h = &mut *(base as *mut Header);
            h.dim = layout.dim as u32;
            h.metric = metric.code();
            h.m = m as u32;
            h.f16 = (layout.esize == 2) as u32;
            h.cap_nodes = layout.cap_nodes as u32;
            h.batch = layout.batch as u32;
        }
        Mirror { base, layout, metric, m }
    }

    /// The mirror another process laid out at `base`.
    pub unsafe fn attach(base: *mut u8) -> Mirror {
        unsafe {
            let h = &*(base as *const Header);
            // Written by `init` in the leader, from a Metric.
            let metric = Metric::from_code(h.metric).expect("the leader wrote a metric code");
            let layout = Layout::new(h.dim as usize, h.f16 == 1, h.m as usize, h.cap_nodes as usize, h.batch as usize);
            Mirror { base, layout, metric, m: h.m as usize }
        }
    }

    fn header(&self) -> &Header {
        unsafe { &*(self.base as *const Header) }
    }

    fn words(&self, at: usize, len: usize) -> &[AtomicU32] {
        unsafe { std::slice::from_raw_parts(self.base.add(at) as *const AtomicU32, len) }
    }

    fn slot(&self, id: u32, layer: usize) -> &[AtomicU32] {
        let first = self.words(self.layout.offsets, self.layout.cap_nodes)[id as usize].load(SeqCst) as usize;
        let at = first + if layer == 0 { 0 } else { slot_room(0, self.m) + (layer - 1) * slot_room(1, self.m) };
        &self.words(self.layout.slots, self.layout.cap_slots)[at..at + slot_room(layer, self.m)]
    }

    fn write_list(&self, id: u32, layer: usize, list: &[u32]) {
        let s = self.slot(id, layer);
        assert!(list.len() < s.len(), "neighbour list longer than its slot");
        for (w, &x) in s[1..].iter().zip(list) {
            w.store(x, SeqCst);
        }
        s[0].store(list.len() as u32, SeqCst);
    }

    fn level(&self, id: u32) -> usize {
        self.words(self.layout.levels, self.layout.cap_nodes)[id as usize].load(SeqCst) as usize
    }

    /// Copies the graph's nodes the mirror does not have yet. False when they do not fit, or
    /// the graph's vectors are no longer stored as the mirror stores them.
    pub fn sync(&self, g: &Graph) -> bool {
        let h = self.header();
        let have = h.len.load(SeqCst) as usize;
        if g.len() > self.layout.cap_nodes || g.is_f16() != (self.layout.esize == 2) {
            return false;
        }
        let need: usize = (have..g.len()).map(|i| node_slots(g.level(i as u32), self.m)).sum();
        let used = h.slots_used.load(SeqCst) as usize;
        if used + need > self.layout.cap_slots {
            return false;
        }
        let bytes = self.layout.esize * self.layout.dim;
        let (from, to) = match g.store() {
            StoreRef::F32(s) => (s.as_ptr() as *const u8, have * bytes),
            StoreRef::F16(s) => (s.as_ptr() as *const u8, have * bytes),
        };
        unsafe {
            std::ptr::copy_nonoverlapping(from.add(to), self.base.add(self.layout.vectors + to), (g.len() - have) * bytes);
        }
        let (offsets, levels) = (self.words(self.layout.offsets, self.layout.cap_nodes), self.words(self.layout.levels, self.layout.cap_nodes));
        let mut next = used;
        for i in have..g.len() {
            let level = g.level(i as u32);
            offsets[i].store(next as u32, SeqCst);
            levels[i].store(level as u32, SeqCst);
            next += node_slots(level, self.m);
            for layer in 0..=level {
                self.write_list(i as u32, layer, g.neighbours(i as u32, layer));
            }
        }
        h.slots_used.store(next as u32, SeqCst);
        h.len.store(g.len() as u32, SeqCst);
        true
    }

    /// Leader: the batch the next PLAN step works on.
    pub fn set_batch(&self, b: &Batch) {
        let h = self.header();
        h.start.store(b.start, SeqCst);
        h.entry.store(b.entry, SeqCst);
        h.top.store(b.top as u32, SeqCst);
        h.ef.store(b.ef as u32, SeqCst);
    }

    /// Leader: the items of the next MERGE step.
    pub fn set_work(&self, work: &[(u32, usize, Vec<u32>)]) -> bool {
        let index = self.words(self.layout.work_index, self.layout.cap_work / 4 + 1);
        let words = self.words(self.layout.work, self.layout.cap_work);
        if work.len() >= index.len() || work.iter().map(|w| 3 + w.2.len()).sum::<usize>() > words.len() {
            return false;
        }
        let mut at = 0;
        for (k, (nb, layer, new)) in work.iter().enumerate() {
            index[k].store(at as u32, SeqCst);
            for (i, x) in [*nb, *layer as u32, new.len() as u32].into_iter().chain(new.iter().copied()).enumerate() {
                words[at + i].store(x, SeqCst);
            }
            at += 3 + new.len();
        }
        true
    }

    /// Leader: opens a step of `items` items to claim; returns its generation.
    pub fn publish(&self, step: u32, items: usize) -> u64 {
        let h = self.header();
        assert!(items < 1 << 20, "too many items in one step");
        h.done.store(0, SeqCst);
        let generation = (h.ticket.load(SeqCst) >> 42) + 1;
        h.ticket.store(pack(generation, step, items, 0), SeqCst);
        generation & 0x3f_ffff
    }

    /// The step now open: (generation, step).
    pub fn current(&self) -> (u64, u32) {
        let t = self.header().ticket.load(SeqCst);
        (t >> 42, (t >> 40 & 3) as u32)
    }

    /// Whether every item of the step has been done.
    pub fn finished(&self) -> bool {
        let t = self.header().ticket.load(SeqCst);
        self.header().done.load(SeqCst) as u64 == (t >> 20 & 0xf_ffff)
    }

    /// Claims and does items of step `generation` until none is left. `last` is called by the
    /// participant that finishes the step's last item (to wake the leader).
    pub fn work(&self, generation: u64, visited: &mut Visited, last: impl Fn()) {
        let h = self.header();
        let mut batch: Option<(Vec<usize>, u32)> = None;
        loop {
            let t = h.ticket.load(SeqCst);
            let (items, next) = ((t >> 20 & 0xf_ffff) as usize, (t & 0xf_ffff) as usize);
            if t >> 42 != generation || next >= items {
                return;
            }
            if h.ticket.compare_exchange(t, t + 1, SeqCst, SeqCst).is_err() {
                continue;
            }
            match (t >> 40 & 3) as u32 {
                PLAN => {
                    let start = h.start.load(SeqCst);
                    let (levels, _) = batch.get_or_insert_with(|| ((0..items).map(|i| self.level(start + i as u32)).collect(), start));
                    let b =
                        Batch { start, levels, entry: h.entry.load(SeqCst), top: h.top.load(SeqCst) as usize, ef: h.ef.load(SeqCst) as usize, serial: false };
                    let lists = plan_node(self, visited, &b, next);
                    for (layer, l) in lists.iter().enumerate() {
                        self.write_list(start + next as u32, layer, l);
                    }
                }
                MERGE => {
                    let (nb, layer, new) = self.work_item(next);
                    let list = merge_list(self, nb, layer, &new);
                    self.write_list(nb, layer, &list);
                }
                _ => return,
            }
            if h.done.fetch_add(1, SeqCst) as usize + 1 == items {
                last();
            }
        }
    }

    fn work_item(&self, k: usize) -> (u32, usize, Vec<u32>) {
        let at = self.words(self.layout.work_index, self.layout.cap_work / 4 + 1)[k].load(SeqCst) as usize;
        let w = self.words(self.layout.work, self.layout.cap_work);
        let n = w[at + 2].load(SeqCst) as usize;
        (w[at].load(SeqCst), w[at + 1].load(SeqCst) as usize, w[at + 3..at + 3 + n].iter().map(|x| x.load(SeqCst)).collect())
    }

    /// Leader, after a step: the lists of node `id` as the mirror has them.
    pub fn lists(&self, id: u32) -> Vec<Vec<u32>> {
        (0..=self.level(id)).map(|layer| self.list(id, layer)).collect()
    }

    pub fn list(&self, id: u32, layer: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.neighbours_into(id, layer, &mut out);
        out
    }
}

/// Read only: the leader writes it (`sync`), the workers plan and merge from it.
impl Store for Mirror {
    type Id = u32;
    fn m(&self) -> usize {
        self.m
    }
    fn rule(&self, layer: usize) -> ListRule {
        ListRule::memory(layer, self.m)
    }
    fn list(&self, id: u32, layer: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.neighbours_into(id, layer, &mut out);
        out
    }
    fn between(&self, a: u32, b: u32, bound: f32) -> f32 {
        self.store().between(self.layout.dim, self.metric, a, b, bound)
    }
}

impl View for Mirror {
    fn dim(&self) -> usize {
        self.layout.dim
    }
    fn metric(&self) -> Metric {
        self.metric
    }
    fn size(&self) -> usize {
        self.header().len.load(SeqCst) as usize
    }
    fn store(&self) -> StoreRef<'_> {
        let n = self.layout.cap_nodes * self.layout.dim;
        unsafe {
            let p = self.base.add(self.layout.vectors);
            if self.layout.esize == 2 {
                StoreRef::F16(std::slice::from_raw_parts(p as *const f16, n))
            } else {
                StoreRef::F32(std::slice::from_raw_parts(p as *const f32, n))
            }
        }
    }
    fn neighbours_into(&self, id: u32, layer: usize, out: &mut Vec<u32>) {
        let s = self.slot(id, layer);
        let n = s[0].load(SeqCst) as usize;
        out.extend(s[1..1 + n].iter().map(|x| x.load(SeqCst)));
    }
}

/// The two steps of a batch run by a team whose members share a `Mirror`: the leader copies new
/// nodes in, opens the step, works on it too, waits (`wait`), and reads the results back.
pub fn plan_on(mirror: &Mirror, g: &Graph, b: &Batch, work_too: &mut impl FnMut(u64), wait: &mut impl FnMut()) -> Option<Vec<Vec<Vec<u32>>>> {
    if !mirror.sync(g) {
        return None;
    }
    mirror.set_batch(b);
    let generation = mirror.publish(PLAN, b.levels.len());
    work_too(generation);
    wait();
    Some((0..b.levels.len()).map(|i| mirror.lists(b.start + i as u32)).collect())
}

pub fn merge_on(mirror: &Mirror, work: &[(u32, usize, Vec<u32>)], work_too: &mut impl FnMut(u64), wait: &mut impl FnMut()) -> Option<Vec<Vec<u32>>> {
    if !mirror.set_work(work) {
        return None;
    }
    let generation = mirror.publish(MERGE, work.len());
    work_too(generation);
    wait();
    Some(work.iter().map(|(nb, layer, _)| mirror.list(*nb, *layer)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Params, Team, Threads};
    use vs_vector::kernels::random_vectors as random;

    /// A team of threads that share nothing but a mirror, as worker processes would.
    struct Shared {
        mirror: Mirror,
        helpers: usize,
    }

    impl Shared {
        fn run<R>(&self, step: impl FnOnce(&mut dyn FnMut(u64), &mut dyn FnMut()) -> R) -> R {
            let (tx, rx) = std::sync::mpsc::channel::<u64>();
            let rx = std::sync::Mutex::new(rx);
            std::thread::scope(|s| {
                for _ in 0..self.helpers {
                    s.spawn(|| {
                        let g = rx.lock().unwrap().recv().unwrap();
                        self.mirror.work(g, &mut Visited::default(), || {});
                    });
                }
                let mut work_too = |g: u64| {
                    for _ in 0..self.helpers {
                        tx.send(g).unwrap();
                    }
                    self.mirror.work(g, &mut Visited::default(), || {});
                };
                let mut wait = || {
                    while !self.mirror.finished() {
                        std::hint::spin_loop()
                    }
                };
                step(&mut work_too, &mut wait)
            })
        }
    }

    impl Team for Shared {
        fn plan(&mut self, g: &Graph, b: &Batch) -> Vec<Vec<Vec<u32>>> {
            let m = &self.mirror as *const Mirror;
            self.run(|w, wait| plan_on(unsafe { &*m }, g, b, &mut |x| w(x), &mut || wait()).expect("fits"))
        }
        fn merge(&mut self, _g: &Graph, work: &[(u32, usize, Vec<u32>)]) -> Vec<Vec<u32>> {
            let m = &self.mirror as *const Mirror;
            self.run(|w, wait| merge_on(unsafe { &*m }, work, &mut |x| w(x), &mut || wait()).expect("fits"))
        }
    }

    #[test]
    fn a_team_sharing_a_mirror_builds_the_same_graph_as_threads() {
        for (metric, ints) in [(Metric::L2, true), (Metric::InnerProduct, false)] {
            let mut data = random(3000, 20, 21);
            if ints {
                data.iter_mut().for_each(|v| v.iter_mut().for_each(|x| *x = (*x * 100.0).round()));
            }
            let layout = Layout::new(20, ints, 16, 3000, 512);
            let mut memory = vec![0u64; layout.total / 8 + 1];
            let mut team = Shared { mirror: unsafe { Mirror::init(memory.as_mut_ptr() as *mut u8, layout, metric, 16) }, helpers: 3 };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            let (mut a, mut b) = (Graph::new(20, metric, Params::default()), Graph::new(20, metric, Params::default()));
            for chunk in data.chunks(512) {
                a.insert_batch(&chunk.concat(), &mut Threads(&pool));
                b.insert_batch(&chunk.concat(), &mut team);
            }
            assert_eq!(a.is_f16(), ints);
            for id in 0..3000u32 {
                assert_eq!(a.level(id), b.level(id));
                for layer in 0..=a.level(id) {
                    assert_eq!(a.neighbours(id, layer), b.neighbours(id, layer), "node {id} layer {layer}");
                    assert_eq!(b.neighbours(id, layer), &team.mirror.list(id, layer)[..], "the mirror kept in step");
                }
            }
            // Another process sees the same graph through attach.
            let other = unsafe { Mirror::attach(memory.as_mut_ptr() as *mut u8) };
            assert_eq!(other.size(), 3000);
            assert_eq!(other.lists(2999), team.mirror.lists(2999));
        }
    }

    #[test]
    fn a_mirror_refuses_what_does_not_fit() {
        let data = random(1200, 8, 3);
        let mut g = Graph::new(8, Metric::L2, Params::default());
        data.iter().for_each(|v| {
            g.insert(v);
        });
        let layout = Layout::new(8, false, 16, 1000, 512);
        let mut memory = vec![0u64; layout.total / 8 + 1];
        let mirror = unsafe { Mirror::init(memory.as_mut_ptr() as *mut u8, layout, Metric::L2, 16) };
        assert!(!mirror.sync(&g), "1,200 nodes in room for 1,000");
        let layout = Layout::new(8, true, 16, 2000, 512);
        let mut memory = vec![0u64; layout.total / 8 + 1];
        let mirror = unsafe { Mirror::init(memory.as_mut_ptr() as *mut u8, layout, Metric::L2, 16) };
        assert!(!mirror.sync(&g), "f32 vectors in an f16 mirror");
    }

    #[test]
    fn tickets_of_a_finished_step_claim_nothing() {
        let layout = Layout::new(4, false, 16, 10, 8);
        let mut memory = vec![0u64; layout.total / 8 + 1];
        let mirror = unsafe { Mirror::init(memory.as_mut_ptr() as *mut u8, layout, Metric::L2, 16) };
        let g1 = mirror.publish(MERGE, 0);
        assert!(mirror.finished());
        let g2 = mirror.publish(MERGE, 0);
        assert_ne!(g1, g2);
        // a participant late for generation g1 claims nothing of g2
        mirror.work(g1, &mut Visited::default(), || panic!("nothing to finish"));
        assert_eq!(mirror.current(), (g2, MERGE));
    }
}
