//! RaBitQ estimates against exact distances, in the same run: ns per estimate from a one-bit
//! code and per exact f32 squared L2 (vs_vector's best kernel on this CPU), the bytes each reads,
//! and what preparing a query costs (its rotation), at 128, 784 and 25,088 dimensions. Run with
//! `make bench-rabitq`; writes bench/results/rabitq.json.

use std::hint::black_box;
use std::time::Instant;
use vs_rabitq::code::{Code, Quantizer};
use vs_rabitq::estimate::Query;
use vs_rabitq::rotation::Rotation;
use vs_vector::kernels::{l2_squared, random_vectors};

/// Median of 5 runs of ns per call of `f` over `n` items, each run at least ~50 ms.
fn time_ns(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut reps = 1usize;
    let run = |reps: usize, f: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        for _ in 0..reps {
            (0..n).for_each(&mut *f);
        }
        t.elapsed().as_nanos() as f64 / (reps * n) as f64
    };
    while run(reps, &mut f) * ((reps * n) as f64) < 5e7 {
        reps *= 2;
    }
    let mut t: Vec<f64> = (0..5).map(|_| run(reps, &mut f)).collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

fn main() {
    println!("{:>6} {:>12} {:>12} {:>8} {:>11} {:>11} {:>12}", "dims", "estimate ns", "exact ns", "speedup", "code bytes", "f32 bytes", "query µs");
    let mut rows = Vec::new();
    for dims in [128usize, 784, 25_088] {
        let n = if dims > 10_000 { 64 } else { 1024 };
        let data = random_vectors(n, dims, dims as u64);
        let q = random_vectors(1, dims, 9).remove(0);
        let quantizer = Quantizer::mean(Rotation::new(dims, 1), data.iter().map(|v| v.as_slice()));
        let codes: Vec<Code> = data.iter().map(|v| quantizer.encode(v)).collect();
        let query = Query::new(&quantizer, &q, 0);
        let est = time_ns(n, |i| {
            black_box(query.l2_squared(black_box(codes[i].as_ref())));
        });
        let exact = time_ns(n, |i| {
            black_box(l2_squared(black_box(&data[i]), black_box(&q)));
        });
        let prep = time_ns(1, |_| {
            black_box(Query::new(&quantizer, black_box(&q), 0));
        }) / 1000.0;
        let (code_bytes, f32_bytes) = (codes[0].0.len(), dims * 4);
        println!("{dims:>6} {est:>12.1} {exact:>12.1} {:>7.1}x {code_bytes:>11} {f32_bytes:>11} {prep:>12.1}", exact / est);
        rows.push(format!(
            "{{\"dims\": {dims}, \"estimate_ns\": {est:.1}, \"exact_f32_l2_ns\": {exact:.1}, \"code_bytes\": {code_bytes}, \"f32_bytes\": {f32_bytes}, \"query_prepare_us\": {prep:.1}}}"
        ));
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results/rabitq.json");
    std::fs::write(&out, format!("[\n  {}\n]\n", rows.join(",\n  "))).expect("bench/results is writable");
    println!("wrote {}", out.display());
}
