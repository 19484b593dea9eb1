use super::*;
use crate::beam::Beam;
use crate::repair::{reconnect, Mending};

use vs_vector::kernels::random_vectors as random;

impl Graph {
    /// The `k` nearest nodes to `q` that `gone` does not name, nearest first, by a beam of `ef`.
    fn search_except(&mut self, q: &[f32], k: usize, ef: usize, gone: impl Fn(u32) -> bool) -> Vec<Scored> {
        let Some(entry) = self.entry else { return Vec::new() };
        let mut ep = vec![Scored(self.dist(q, entry), entry)];
        for layer in (1..=self.level(entry)).rev() {
            ep = self.search_layer(q, &ep, 1, layer, 0);
        }
        let mut found = self.search_layer(q, &ep, ef.max(k), 0, 0);
        found.retain(|s| !gone(s.1));
        found.truncate(k);
        found
    }

    fn search(&mut self, q: &[f32], k: usize, ef: usize) -> Vec<Scored> {
        self.search_except(q, k, ef, |_| false)
    }
}

/// A build graph with deletes, as VACUUM sees the pages: deleted nodes are walked through but
/// never returned, until `repair` (VACUUM's, `Mending` and `reconnect`) takes them out.
struct Churned {
    g: Graph,
    deleted: Vec<bool>,
}

impl Churned {
    fn new(g: Graph) -> Churned {
        Churned { deleted: vec![false; g.len()], g }
    }

    fn insert(&mut self, v: &[f32]) -> u32 {
        self.deleted.push(false);
        self.g.insert(v)
    }

    fn mark_deleted(&mut self, id: u32) {
        self.deleted[id as usize] = true;
    }

    fn live(&self) -> usize {
        self.deleted.iter().filter(|d| !**d).count()
    }

    fn search(&mut self, q: &[f32], k: usize, ef: usize) -> Vec<Scored> {
        let Churned { g, deleted } = self;
        g.search_except(q, k, ef, |i| deleted[i as usize])
    }

    /// What VACUUM does on the pages: a new list for each live node that lost neighbours
    /// (`Mending`), the deleted entry point replaced by the live node on the highest layer, then
    /// every node still unreachable linked again (`reconnect`, when `reconnects`).
    fn repair(&mut self, reconnects: bool) {
        let n = self.g.len() as u32;
        let deleted: Vec<(u32, usize)> =
            (0..n).filter(|&i| self.is_deleted(i) && self.g.neighbours[i as usize].iter().any(|l| !l.is_empty())).map(|i| (i, self.g.level(i))).collect();
        let mut mending = Mending::new(&*self, deleted, reconnects);
        for id in 0..n {
            if !self.is_deleted(id) {
                let level = self.g.level(id);
                mending.node(self, id, level);
            }
        }
        mending.adopt(self);
        for (lists, _) in self.g.neighbours.iter_mut().zip(&self.deleted).filter(|(_, d)| **d) {
            lists.iter_mut().for_each(|l| l.clear());
        }
        if self.g.entry.is_some_and(|e| self.is_deleted(e)) {
            self.g.entry = (0..n).filter(|&i| !self.is_deleted(i)).max_by_key(|&i| (self.g.level(i), std::cmp::Reverse(i)));
        }
        if let Some(entry) = self.g.entry.filter(|_| reconnects) {
            for layer in 0..=self.g.level(entry) {
                let live: Vec<u32> = (0..n).filter(|&i| !self.is_deleted(i) && self.g.level(i) >= layer).collect();
                reconnect(self, entry, layer, &live);
            }
        }
    }
}

impl Store for Churned {
    type Id = u32;
    fn m(&self) -> usize {
        self.g.m()
    }
    fn rule(&self, layer: usize) -> ListRule {
        self.g.rule(layer)
    }
    fn is_deleted(&self, id: u32) -> bool {
        self.deleted[id as usize]
    }
    fn list(&self, id: u32, layer: usize) -> Vec<u32> {
        self.g.list(id, layer)
    }
    fn between(&self, a: u32, b: u32, bound: f32) -> f32 {
        self.g.between(a, b, bound)
    }
}

impl StoreMut for Churned {
    fn write(&mut self, id: u32, layer: usize, read: &[u32], list: &[u32]) -> Wrote {
        self.g.write(id, layer, read, list)
    }
    fn search_own(&mut self, id: u32, level: usize) -> Vec<Vec<Scored>> {
        let mut found = self.g.search_own(id, level);
        found.iter_mut().for_each(|l| l.retain(|s| !self.deleted[s.1 as usize]));
        found
    }
}

fn fashion(split: &str, n: usize) -> Vec<Vec<f32>> {
    vs_fashion::load(std::path::Path::new(vs_fashion::DIR), split, Some(n)).unwrap().vectors()
}

fn recall(metric: Metric, data: &[Vec<f32>], queries: &[Vec<f32>], k: usize, ef: usize) -> f64 {
    let mut g = Graph::new(data[0].len(), metric, Params::default());
    for v in data {
        g.insert(v);
    }
    let mut hits = 0;
    for q in queries {
        let mut exact: Vec<Scored> = data.iter().enumerate().map(|(i, v)| Scored(metric.distance(q, v), i as u32)).collect();
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
    let data = fashion("train", 5000);
    let queries = fashion("t10k", 100);
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
    let mut g = Churned::new(g);
    for id in (0..2000u32).step_by(2) {
        g.mark_deleted(id);
    }
    let live: Vec<u32> = (1..2000u32).step_by(2).collect();
    let recall = |g: &mut Churned| {
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
    g.repair(true);
    let after = recall(&mut g);
    eprintln!("half deleted: recall@10 {before:.3} before repair, {after:.3} after");
    assert!(after >= 0.95, "recall after repair {after}");
    assert_eq!(g.live(), 1000);
    for id in live {
        for layer in 0..=g.g.level(id) {
            assert!(g.g.neighbours(id, layer).iter().all(|&n| !g.is_deleted(n)), "edge to a deleted node left");
        }
    }
    assert!(!g.is_deleted(g.g.entry.unwrap()));
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
        // Lists cut on the threads too, but for one thread: as `finish` cuts them.
        g.finish_on(threads.filter(|p| p.current_num_threads() > 1));
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
    assert!(matches!(g.store, Vectors::F16(_)));
    let odd = [0.1f32, 0.2, 0.3, 1e-7];
    let id = g.insert(&odd);
    assert!(matches!(g.store, Vectors::F32(_)));
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

/// Live nodes that a walk from the entry point cannot reach on layer 0.
fn unreachable(g: &Graph, gone: impl Fn(u32) -> bool) -> usize {
    let Some(e) = g.entry() else { return 0 };
    let mut seen = vec![false; g.len()];
    seen[e as usize] = true;
    let mut stack = vec![e];
    while let Some(n) = stack.pop() {
        for &x in g.neighbours(n, 0) {
            if !std::mem::replace(&mut seen[x as usize], true) {
                stack.push(x);
            }
        }
    }
    (0..g.len()).filter(|&i| !seen[i] && !gone(i as u32)).count()
}

/// Of the `k` nearest live nodes to `q` (among `data`), how many a search with `ef` returns,
/// ties counted as hits (any node at the k-th distance is a right answer).
fn hits(g: &mut Graph, data: &[Vec<f32>], q: &[f32], k: usize, ef: usize) -> usize {
    let mut exact: Vec<f32> = data.iter().map(|v| Metric::L2.distance(q, v)).collect();
    exact.sort_by(f32::total_cmp);
    let kth = exact[k - 1];
    g.search(q, k, ef).iter().filter(|s| s.0 <= kth).count()
}

#[test]
fn identical_vectors_are_all_reachable_and_found() {
    // The case: 1,000 copies of one 16-d vector, nothing else (inserted one by one).
    let copy = random(1, 16, 31).remove(0);
    let mut g = Graph::new(16, Metric::L2, Params::default());
    for _ in 0..1000 {
        g.insert(&copy);
    }
    g.finish();
    let (lost, found) = (unreachable(&g, |_| false), g.search(&copy, 100, 100));
    eprintln!("1,000 identical vectors: {lost} unreachable, {} of 100 found", found.len());
    assert_eq!(lost, 0, "unreachable copies");
    assert!(found.len() == 100 && found.iter().all(|s| s.0 == 0.0), "found {}", found.len());
    // The same copies among random vectors, in parallel batches.
    let mut data = random(1500, 16, 32);
    data.splice(500..500, std::iter::repeat_n(copy.clone(), 1000));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut g = Graph::new(16, Metric::L2, Params::default());
    for chunk in data.chunks(512) {
        g.insert_batch(&chunk.concat(), &mut Threads(&pool));
    }
    g.finish();
    let lost = unreachable(&g, |_| false);
    let found = g.search(&copy, 100, 100).iter().filter(|s| s.0 == 0.0).count();
    let others = hits(&mut g, &data, &random(1, 16, 33)[0], 10, 40);
    eprintln!("1,000 copies among 1,500 random vectors: {lost} unreachable, {found} of 100 copies found");
    assert!(lost == 0 && found == 100 && others >= 9, "{lost} unreachable, {found} copies found, {others} of 10 nearest");
}

#[test]
fn a_tenth_duplicates_keeps_recall_and_reachability() {
    let mut data = random(3000, 24, 41);
    let copy = data[7].clone();
    for i in (0..3000).step_by(10) {
        data[i] = copy.clone();
    }
    let queries = random(100, 24, 42);
    let mut g = Graph::new(24, Metric::L2, Params::default());
    for v in &data {
        g.insert(v);
    }
    g.finish();
    let lost = unreachable(&g, |_| false);
    let r = queries.iter().map(|q| hits(&mut g, &data, q, 10, 40)).sum::<usize>() as f64 / 1000.0;
    // Near the copies: a search must get out of them to the nearest other vectors (the
    // index's filtered queries need this), and return every copy.
    let mut near = copy.clone();
    near[0] += 0.01;
    let got = g.search(&near, 400, 400);
    let (copies, all) = (got.iter().filter(|s| data[s.1 as usize] == copy).count(), data.iter().filter(|v| **v == copy).count());
    let mut others: Vec<Scored> = (0..3000).filter(|&i| data[i] != copy).map(|i| Scored(Metric::L2.distance(&near, &data[i]), i as u32)).collect();
    others.sort();
    let truth: std::collections::HashSet<u32> = others[..100].iter().map(|s| s.1).collect();
    let out = got.iter().filter(|s| truth.contains(&s.1)).count();
    eprintln!("10 % copies: {lost} unreachable, recall@10 {r:.3}; near the copies {copies} of {all} copies and {out} of the 100 nearest others");
    assert!(lost <= 3, "{lost} unreachable");
    assert!(r >= 0.95, "recall {r}");
    assert!(copies == all && out >= 90, "{copies} of {all} copies, {out} others");
}

#[test]
fn churn_keeps_the_graph_as_connected_as_a_fresh_build() {
    let (churned, rebuilt, miss_c, miss_f) = churn(true);
    // Before `Mending` and `reconnect`: 11 unreachable, 11 misses; with lists refilled from
    // the lost neighbours' neighbours, 6 and 10; with a search, 1 and 4; a fresh build 3 and 4.
    assert!(churned <= 2 * rebuilt.max(1), "{churned} unreachable after churn, {rebuilt} after a fresh build");
    assert!(miss_c <= miss_f, "{miss_c} own-vector misses after churn, {miss_f} after a fresh build");
}

#[test]
fn churn_without_reconnect_keeps_live_edges_and_the_graph_connected() {
    // VACUUM of an index too big for `reconnect`: the repair keeps every live edge instead,
    // and what inserts orphan stays orphaned. Measured 9 unreachable and 12 misses (a fresh
    // build 3 and 4); letting the heuristic drop live edges here gave 13 and 14.
    let (churned, rebuilt, miss_c, miss_f) = churn(false);
    assert!(churned <= 4 * rebuilt.max(1), "{churned} unreachable after churn, {rebuilt} after a fresh build");
    assert!(miss_c <= 3 * miss_f + 1, "{miss_c} own-vector misses after churn, {miss_f} after a fresh build");
}

/// 15 rounds of deleting 6 % of the nodes, repairing and inserting as many new ones, on
/// Fashion-MNIST (pixel vectors have the hubs and sparse regions where nodes get cut off).
/// Returns the nodes unreachable after churn and after a fresh build of the same nodes, and
/// both graphs' own-vector misses of the nodes never deleted.
fn churn(reconnects: bool) -> (usize, usize, usize, usize) {
    let data = fashion("train", 6000);
    let (start, round) = (3000, 180);
    let mut g = Graph::new(784, Metric::L2, Params::default());
    for v in &data[..start] {
        g.insert(v);
    }
    let mut g = Churned::new(g);
    let mut rng = 7u64;
    let mut next = start;
    let mut ever_deleted = vec![false; data.len()];
    for _ in 0..15 {
        let live: Vec<u32> = (0..g.g.len() as u32).filter(|&i| !g.is_deleted(i)).collect();
        for _ in 0..round {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let id = live[(rng % live.len() as u64) as usize];
            g.mark_deleted(id);
            ever_deleted[id as usize] = true;
        }
        g.repair(reconnects);
        for v in &data[next..next + round] {
            g.insert(v);
        }
        next += round;
    }
    g.g.finish();
    let live: Vec<u32> = (0..g.g.len() as u32).filter(|&i| !g.is_deleted(i)).collect();
    let mut fresh = Graph::new(784, Metric::L2, Params::default());
    for &i in &live {
        fresh.insert(&data[i as usize]);
    }
    fresh.finish();
    // Own-vector lookups of the rows never deleted: the nearest found is at distance 0.
    let kept: Vec<usize> = (0..live.len()).filter(|&j| live[j] < start as u32 && !ever_deleted[live[j] as usize]).collect();
    let misses = |search: &mut dyn FnMut(&[f32]) -> Vec<Scored>| kept.iter().filter(|&&j| search(&data[live[j] as usize])[0].0 != 0.0).count();
    let (churned, rebuilt) = (unreachable(&g.g, |i| g.deleted[i as usize]), unreachable(&fresh, |_| false));
    let (miss_c, miss_f) = (misses(&mut |q| g.search(q, 1, 40)), misses(&mut |q| fresh.search(q, 1, 40)));
    eprintln!(
        "after churn (reconnect: {reconnects}): {churned} of {} unreachable, {miss_c} of {} own-vector misses; fresh build: {rebuilt}, {miss_f}",
        live.len(),
        kept.len()
    );
    (churned, rebuilt, miss_c, miss_f)
}

/// An iterative scan's beam: round after round returns each node it reaches once, nearest first
/// within a round, and the first rounds hold nearly all of the true nearest `rounds × ef`.
#[test]
fn a_beam_that_goes_on_returns_every_node_once_nearest_rounds_first() {
    let data = random(3000, 16, 11);
    let mut g = Graph::new(16, Metric::L2, Params::default());
    for v in &data {
        g.insert(v);
    }
    let q = &random(1, 16, 12)[0];
    let entry = g.entry.unwrap();
    let mut ep = vec![Scored(g.dist(q, entry), entry)];
    for layer in (1..=g.level(entry)).rev() {
        ep = g.search_layer(q, &ep, 1, layer, 0);
    }
    let mut visited = Visited::default();
    visited.start(g.len());
    let mut w = Walker { view: &g, q, visited: &mut visited, salt: 0 };
    let (ef, mut rounds) = (20, Vec::new());
    let mut b = Beam::new(&mut w, &ep, ef, 0, true);
    while !b.exhausted() {
        let round = b.next(&mut w);
        assert!(round.windows(2).all(|p| p[0].0 <= p[1].0), "a round nearest first");
        rounds.push(round);
    }
    let all: Vec<u32> = rounds.iter().flatten().map(|s| s.1).collect();
    let unique: std::collections::HashSet<u32> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a node returned twice");
    assert!(all.len() >= 2990, "the rounds reached {} of 3,000 nodes", all.len());
    let mut exact: Vec<Scored> = data.iter().enumerate().map(|(i, v)| Scored(Metric::L2.distance(q, v), i as u32)).collect();
    exact.sort();
    let first: std::collections::HashSet<u32> = rounds[..5].iter().flatten().map(|s| s.1).collect();
    let hits = exact[..100].iter().filter(|s| first.contains(&s.1)).count();
    assert!(hits >= 95, "5 rounds of 20 held {hits} of the nearest 100");
}
