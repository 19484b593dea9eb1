//! Distance-kernel benchmark: ns per distance at 784, 4096 and 25,088 dimensions (Fashion-MNIST
//! pixels, a mid-size embedding, VGG16's flattened conv5), for each instruction set this CPU has.
//! Run with `make bench-kernels`; writes bench/results/kernels.json.

use half::f16;
use std::hint::black_box;
use std::time::Instant;
use vs_vector::kernels::{detect, f16_kernels_for, f32_kernels_for, random_vectors, Isa};

/// Median over 5 runs of the time per call, each run long enough (~50 ms) to dwarf timer noise.
fn time_ns<T, R>(set: &[Vec<T>], q: &[T], f: impl Fn(&[T], &[T]) -> R) -> f64 {
    let mut per_call = Vec::new();
    let mut reps = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            for v in set {
                black_box(f(black_box(v), black_box(q)));
            }
        }
        if t.elapsed().as_millis() >= 50 {
            break;
        }
        reps *= 2;
    }
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            for v in set {
                black_box(f(black_box(v), black_box(q)));
            }
        }
        per_call.push(t.elapsed().as_nanos() as f64 / (reps * set.len()) as f64);
    }
    per_call.sort_by(|a, b| a.partial_cmp(b).unwrap());
    per_call[2]
}

fn main() {
    let best = detect();
    let isas: Vec<Isa> =
        [Isa::Scalar, Isa::Avx2, Isa::Avx512].into_iter().filter(|i| *i == Isa::Scalar || *i == best || (*i == Isa::Avx2 && best == Isa::Avx512)).collect();
    println!("best instruction set on this CPU: {best:?}");
    println!("{:>6} {:>5} {:>8} {:>10} {:>10} {:>10} {:>9}", "dims", "type", "isa", "l2 ns", "dot ns", "cos ns", "speedup");
    let mut rows = Vec::new();
    for dims in [784usize, 4096, 25088] {
        // A set small enough to stay in L2 for 784 dims; larger vectors measure memory too.
        let set = random_vectors(64, dims, dims as u64);
        let q = random_vectors(1, dims, 7).remove(0);
        let set16: Vec<Vec<f16>> = set.iter().map(|v| v.iter().map(|&x| f16::from_f32(x)).collect()).collect();
        let q16: Vec<f16> = q.iter().map(|&x| f16::from_f32(x)).collect();
        for ty in ["f32", "f16"] {
            let mut scalar_l2 = 0.0;
            for &isa in &isas {
                // SAFETY: only instruction sets this CPU supports are in `isas`.
                let (l2, dot, cos) = if ty == "f32" {
                    let k = f32_kernels_for(isa);
                    (
                        time_ns(&set, &q, |a, b| unsafe { (k.l2_squared)(a, b) }),
                        time_ns(&set, &q, |a, b| unsafe { (k.dot)(a, b) }),
                        time_ns(&set, &q, |a, b| unsafe { (k.cosine_parts)(a, b) }),
                    )
                } else {
                    let k = f16_kernels_for(isa);
                    (
                        time_ns(&set16, &q16, |a, b| unsafe { (k.l2_squared)(a, b) }),
                        time_ns(&set16, &q16, |a, b| unsafe { (k.dot)(a, b) }),
                        time_ns(&set16, &q16, |a, b| unsafe { (k.cosine_parts)(a, b) }),
                    )
                };
                if isa == Isa::Scalar {
                    scalar_l2 = l2;
                }
                let speedup = scalar_l2 / l2;
                println!("{dims:>6} {ty:>5} {:>8} {l2:>10.1} {dot:>10.1} {cos:>10.1} {speedup:>8.1}x", format!("{isa:?}"));
                rows.push(format!(
                    "{{\"dims\":{dims},\"type\":\"{ty}\",\"isa\":\"{isa:?}\",\"l2_ns\":{l2:.2},\"dot_ns\":{dot:.2},\"cosine_ns\":{cos:.2},\"l2_speedup_vs_scalar\":{speedup:.2}}}"
                ));
            }
        }
    }
    let out = format!("{{\"benchmark\":\"distance kernels\",\"best_isa\":\"{best:?}\",\"rows\":[\n{}\n]}}\n", rows.join(",\n"));
    // cargo runs a bench in its crate's folder; the results live with the others at the root.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kernels.json"), out).unwrap();
    println!("wrote bench/results/kernels.json");
}
