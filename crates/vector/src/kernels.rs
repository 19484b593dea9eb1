//! Distance kernels for f32 and f16 vectors, free of pgrx so plain `cargo test` covers them.
//!
//! The best implementation is picked once at first use from what the CPU offers at run time
//! (AVX-512F, then AVX2+FMA+F16C, then portable scalar code), because the extension binary is
//! built for baseline x86-64 and must still use the server's SIMD units.

use half::f16;
use std::sync::OnceLock;

/// A scalar type the kernels read vectors of.
pub trait Scalar: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
}
impl Scalar for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}
impl Scalar for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// Sums needed for the four distances; cosine needs three at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

type Pair<T> = unsafe fn(&[T], &[T]) -> f32;
type Triple<T> = unsafe fn(&[T], &[T]) -> (f32, f32, f32);

pub struct Kernels<T> {
    pub isa: Isa,
    pub l2_squared: Pair<T>,
    pub dot: Pair<T>,
    pub l1: Pair<T>,
    /// (a·b, a·a, b·b)
    pub cosine_parts: Triple<T>,
}

pub mod scalar {
    use super::Scalar;
    // Four partial sums let the compiler vectorise and keep rounding close to the SIMD versions.
    #[inline]
    fn reduce4<T: Scalar>(a: &[T], b: &[T], f: impl Fn(f32, f32) -> f32) -> f32 {
        let mut acc = [0f32; 4];
        let chunks = a.len() / 4 * 4;
        for i in (0..chunks).step_by(4) {
            for j in 0..4 {
                acc[j] += f(a[i + j].to_f32(), b[i + j].to_f32());
            }
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for i in chunks..a.len() {
            s += f(a[i].to_f32(), b[i].to_f32());
        }
        s
    }
    pub unsafe fn l2_squared<T: Scalar>(a: &[T], b: &[T]) -> f32 {
        reduce4(a, b, |x, y| (x - y) * (x - y))
    }
    pub unsafe fn dot<T: Scalar>(a: &[T], b: &[T]) -> f32 {
        reduce4(a, b, |x, y| x * y)
    }
    pub unsafe fn l1<T: Scalar>(a: &[T], b: &[T]) -> f32 {
        reduce4(a, b, |x, y| (x - y).abs())
    }
    pub unsafe fn cosine_parts<T: Scalar>(a: &[T], b: &[T]) -> (f32, f32, f32) {
        (reduce4(a, b, |x, y| x * y), reduce4(a, a, |x, y| x * y), reduce4(b, b, |x, y| x * y))
    }
}

/// Generates the four kernels of one instruction set for one element type. `$load` turns a
/// pointer to `$lanes` elements into one register of f32.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_kernels {
    ($feat:literal, $t:ty, $lanes:expr, $load:ident, $zero:ident, $fmadd:ident, $add:ident,
     $sub:ident, $abs:ident, $hsum:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn reduce<const OP: u8>(a: &[$t], b: &[$t]) -> f32 {
            #[inline(always)]
            unsafe fn step<const OP: u8>(acc: Reg, x: Reg, y: Reg) -> Reg {
                match OP {
                    0 => {
                        let d = $sub(x, y);
                        $fmadd(d, d, acc)
                    }
                    1 => $fmadd(x, y, acc),
                    _ => $add(acc, $abs($sub(x, y))),
                }
            }
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [$zero(), $zero(), $zero(), $zero()];
            let mut i = 0;
            while i + 4 * $lanes <= n {
                for j in 0..4 {
                    let o = i + j * $lanes;
                    acc[j] = step::<OP>(acc[j], $load(pa.add(o)), $load(pb.add(o)));
                }
                i += 4 * $lanes;
            }
            while i + $lanes <= n {
                acc[0] = step::<OP>(acc[0], $load(pa.add(i)), $load(pb.add(i)));
                i += $lanes;
            }
            let mut s = $hsum($add($add(acc[0], acc[1]), $add(acc[2], acc[3])));
            while i < n {
                let (x, y) = ((*pa.add(i)).to_f32(), (*pb.add(i)).to_f32());
                s += match OP {
                    0 => (x - y) * (x - y),
                    1 => x * y,
                    _ => (x - y).abs(),
                };
                i += 1;
            }
            s
        }
        pub unsafe fn l2_squared(a: &[$t], b: &[$t]) -> f32 {
            reduce::<0>(a, b)
        }
        pub unsafe fn dot(a: &[$t], b: &[$t]) -> f32 {
            reduce::<1>(a, b)
        }
        pub unsafe fn l1(a: &[$t], b: &[$t]) -> f32 {
            reduce::<2>(a, b)
        }
        #[target_feature(enable = $feat)]
        pub unsafe fn cosine_parts(a: &[$t], b: &[$t]) -> (f32, f32, f32) {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut ab, mut aa, mut bb) = ($zero(), $zero(), $zero());
            let mut i = 0;
            while i + $lanes <= n {
                let (x, y) = ($load(pa.add(i)), $load(pb.add(i)));
                ab = $fmadd(x, y, ab);
                aa = $fmadd(x, x, aa);
                bb = $fmadd(y, y, bb);
                i += $lanes;
            }
            let (mut s_ab, mut s_aa, mut s_bb) = ($hsum(ab), $hsum(aa), $hsum(bb));
            while i < n {
                let (x, y) = ((*pa.add(i)).to_f32(), (*pb.add(i)).to_f32());
                s_ab += x * y;
                s_aa += x * x;
                s_bb += y * y;
                i += 1;
            }
            (s_ab, s_aa, s_bb)
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Scalar;
    use core::arch::x86_64::*;
    type Reg = __m256;
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }
    #[inline(always)]
    unsafe fn abs(v: __m256) -> __m256 {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const half::f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    pub mod f32s {
        use super::*;
        simd_kernels!("avx2,fma", f32, 8, load_f32, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_sub_ps, abs, hsum);
    }
    pub mod f16s {
        use super::*;
        simd_kernels!("avx2,fma,f16c", half::f16, 8, load_f16, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_sub_ps, abs, hsum);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Scalar;
    use core::arch::x86_64::*;
    type Reg = __m512;
    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const half::f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    pub mod f32s {
        use super::*;
        simd_kernels!("avx512f", f32, 16, load_f32, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_abs_ps, _mm512_reduce_add_ps);
    }
    pub mod f16s {
        use super::*;
        simd_kernels!(
            "avx512f",
            half::f16,
            16,
            load_f16,
            _mm512_setzero_ps,
            _mm512_fmadd_ps,
            _mm512_add_ps,
            _mm512_sub_ps,
            _mm512_abs_ps,
            _mm512_reduce_add_ps
        );
    }
}

/// Which instruction set the running CPU supports best.
pub fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("VISUAL_SEARCH_FORCE_SCALAR").is_some() {
            return Isa::Scalar;
        }
        if is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

macro_rules! kernel_set {
    ($t:ty, $isa:expr, $($m:ident)::+) => {{
        #[allow(unused_imports)]
        use $($m)::+ as k;
        Kernels::<$t> {
            isa: $isa,
            l2_squared: k::l2_squared,
            dot: k::dot,
            l1: k::l1,
            cosine_parts: k::cosine_parts,
        }
    }};
}

fn scalar_kernels<T: Scalar>() -> Kernels<T> {
    Kernels { isa: Isa::Scalar, l2_squared: scalar::l2_squared::<T>, dot: scalar::dot::<T>, l1: scalar::l1::<T>, cosine_parts: scalar::cosine_parts::<T> }
}

/// Kernels for `isa`, which must be supported by this CPU (see [`detect`]).
pub fn f32_kernels_for(isa: Isa) -> Kernels<f32> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => kernel_set!(f32, isa, avx512::f32s),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => kernel_set!(f32, isa, avx2::f32s),
        _ => scalar_kernels(),
    }
}

pub fn f16_kernels_for(isa: Isa) -> Kernels<f16> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => kernel_set!(f16, isa, avx512::f16s),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => kernel_set!(f16, isa, avx2::f16s),
        _ => scalar_kernels(),
    }
}

/// Element types with a kernel table chosen for this CPU.
pub trait Distance: Scalar {
    fn kernels() -> &'static Kernels<Self>;
}
impl Distance for f32 {
    fn kernels() -> &'static Kernels<f32> {
        static K: OnceLock<Kernels<f32>> = OnceLock::new();
        K.get_or_init(|| f32_kernels_for(detect()))
    }
}
impl Distance for f16 {
    fn kernels() -> &'static Kernels<f16> {
        static K: OnceLock<Kernels<f16>> = OnceLock::new();
        K.get_or_init(|| f16_kernels_for(detect()))
    }
}

/// Whether a vector is exactly f16 values: then it is stored as f16 (half the bytes to read per
/// distance) and widened back to the same f32s.
pub fn exact_as_f16(v: impl IntoIterator<Item = f32>) -> bool {
    v.into_iter().all(|x| f16::from_f32(x).to_f32() == x)
}

/// Seeded pseudo-random vectors with elements in [-0.5, 0.5), for tests and benchmarks.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect()
}

// Safe entry points: lengths are checked here, once, so the kernels can index freely.
#[inline]
fn check<T>(a: &[T], b: &[T]) {
    assert_eq!(a.len(), b.len(), "kernel called on vectors of different lengths");
}
#[inline]
pub fn l2_squared<T: Distance>(a: &[T], b: &[T]) -> f32 {
    check(a, b);
    unsafe { (T::kernels().l2_squared)(a, b) }
}
#[inline]
pub fn dot<T: Distance>(a: &[T], b: &[T]) -> f32 {
    check(a, b);
    unsafe { (T::kernels().dot)(a, b) }
}
#[inline]
pub fn l1<T: Distance>(a: &[T], b: &[T]) -> f32 {
    check(a, b);
    unsafe { (T::kernels().l1)(a, b) }
}
/// Smallest squared norm the f32 sums are trusted for: below it, products of small elements
/// that underflowed f32 (|x| < 1.1e-19) could weigh in the sum.
pub const MIN_F32_SQUARED_NORM: f32 = 1e-20;

/// Whether a squared norm summed in f32 is accurate: finite (no element beyond about 1.8e19
/// overflowed) and not so small that underflow counts.
#[inline]
pub fn f32_norm_is_exact(squared: f32) -> bool {
    squared.is_finite() && squared >= MIN_F32_SQUARED_NORM
}

/// (a·b, a·a, b·b) summed in f64, which holds the products of any two f32 values (up to 1.2e77
/// and down to 2e-90) without overflow or underflow, for any number of dimensions.
pub fn cosine_parts_f64<T: Scalar>(a: &[T], b: &[T]) -> (f64, f64, f64) {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f32() as f64, y.to_f32() as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

/// Squared L2 norm in f64 (see `cosine_parts_f64`).
pub fn squared_norm_f64<T: Scalar>(a: &[T]) -> f64 {
    a.iter().map(|x| (x.to_f32() as f64) * (x.to_f32() as f64)).sum()
}

/// 1 − cos(a, b), NaN when either vector is zero (as pgvector). The SIMD kernel's f32 sums are
/// used when they are accurate; vectors whose squared norms overflow or underflow f32 (values
/// near f32::MAX, or all below 1e-19) are summed again in f64, so they get their true distance.
#[inline]
pub fn cosine_distance<T: Distance>(a: &[T], b: &[T]) -> f64 {
    check(a, b);
    let (ab, aa, bb) = unsafe { (T::kernels().cosine_parts)(a, b) };
    let (ab, aa, bb) =
        if f32_norm_is_exact(aa) && f32_norm_is_exact(bb) && ab.is_finite() { (ab as f64, aa as f64, bb as f64) } else { cosine_parts_f64(a, b) };
    let sim = ab / (aa * bb).sqrt();
    if sim.is_nan() {
        return f64::NAN;
    }
    1.0 - sim.clamp(-1.0, 1.0)
}

/// Elements per block of the bounded and mixed kernels: 512 bytes of f32, a few cache lines.
const BLOCK: usize = 128;

/// Squared L2 that may stop once the partial sum passes `bound`: then any value above `bound`
/// is returned. Index searches reject most candidates, and stop reading them half way.
pub fn l2_squared_bounded<T: Distance>(a: &[T], b: &[T], bound: f32) -> f32 {
    check(a, b);
    if bound == f32::INFINITY || a.len() <= 2 * BLOCK {
        return l2_squared(a, b);
    }
    let mut s = 0.0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        s += l2_squared(x, y);
        if s > bound {
            break;
        }
    }
    s
}

/// `l2_squared_bounded` (or `dot` when `ip`) between f32 and f16 vectors.
#[inline]
pub fn mixed_bounded(a: &[f32], b: &[f16], ip: bool, bound: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel called on vectors of different lengths");
    #[cfg(target_arch = "x86_64")]
    if f32::kernels().isa == Isa::Avx512 {
        return unsafe { avx512_bounded(a.as_ptr() as *const u16, false, b, ip, bound) };
    }
    use half::slice::HalfFloatSliceExt;
    let mut buf = [0f32; BLOCK];
    let mut s = 0.0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let w = &mut buf[..y.len()];
        y.convert_to_f32_slice(w);
        if ip {
            s += dot(x, w);
        } else {
            s += l2_squared(x, w);
            if s > bound {
                break;
            }
        }
    }
    s
}

/// `l2_squared_bounded` (or `dot` when `ip`) between two f16 vectors: the graph's own pairs.
#[inline]
pub fn f16_bounded(a: &[f16], b: &[f16], ip: bool, bound: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel called on vectors of different lengths");
    #[cfg(target_arch = "x86_64")]
    if f32::kernels().isa == Isa::Avx512 {
        return unsafe { avx512_bounded(a.as_ptr() as *const u16, true, b, ip, bound) };
    }
    if ip {
        dot(a, b)
    } else {
        l2_squared_bounded(a, b, bound)
    }
}

/// Widens 16 halves per step in registers, four independent sums at a time (one sum would
/// wait on each multiply-add); checks the bound every BLOCK elements. `a` is f32 or, with
/// `a_half`, f16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_bounded(a: *const u16, a_half: bool, b: &[f16], ip: bool, bound: f32) -> f32 {
    use std::arch::x86_64::*;
    let n = b.len();
    let pb = b.as_ptr() as *const u16;
    unsafe {
        let load_a = |i: usize| {
            if a_half {
                _mm512_cvtph_ps(_mm256_loadu_si256(a.add(i) as *const __m256i))
            } else {
                _mm512_loadu_ps((a as *const f32).add(i))
            }
        };
        let step = |acc: __m512, i: usize| {
            let (x, y) = (load_a(i), _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i) as *const __m256i)));
            if ip {
                _mm512_fmadd_ps(x, y, acc)
            } else {
                let d = _mm512_sub_ps(x, y);
                _mm512_fmadd_ps(d, d, acc)
            }
        };
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = step(*a, i + 16 * j);
            }
            i += 64;
            if !ip && i % BLOCK == 0 && i < n {
                let s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
                if s > bound {
                    return s;
                }
            }
        }
        let mut sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        while i + 16 <= n {
            sum = step(sum, i);
            i += 16;
        }
        let mut s = _mm512_reduce_add_ps(sum);
        for (j, y) in b.iter().enumerate().take(n).skip(i) {
            let x = if a_half { f16::from_bits(*a.add(j)).to_f32() } else { *(a as *const f32).add(j) };
            let y = y.to_f32();
            s += if ip { x * y } else { (x - y) * (x - y) };
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_mixed_kernels_agree_with_the_plain_ones() {
        for n in [1, 15, 16, 127, 128, 129, 300, 784, 2000] {
            let v = random_vectors(2, n, n as u64);
            let (a, b) = (&v[0], &v[1]);
            let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let bw: Vec<f32> = bh.iter().map(|x| x.to_f32()).collect();
            let full = l2_squared(a, b);
            assert_eq!(l2_squared_bounded(a, b, f32::INFINITY), full);
            assert!((l2_squared_bounded(a, b, full * 2.0) - full).abs() <= 1e-4 * full.max(1.0));
            assert!(l2_squared_bounded(a, b, full / 4.0) > full / 4.0, "a bounded result above the bound stays above it");
            let (l2w, dotw) = (l2_squared(a, &bw), dot(a, &bw));
            assert!((mixed_bounded(a, &bh, false, f32::INFINITY) - l2w).abs() <= 1e-4 * l2w.max(1.0), "n={n}");
            assert!((mixed_bounded(a, &bh, true, f32::INFINITY) - dotw).abs() <= 1e-4 * dotw.abs().max(1.0), "n={n}");
            assert!(mixed_bounded(a, &bh, false, l2w / 4.0) > l2w / 4.0);
            let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
            let (l2h, doth) = (l2_squared(&ah, &bh), dot(&ah, &bh));
            assert!((f16_bounded(&ah, &bh, false, f32::INFINITY) - l2h).abs() <= 1e-4 * l2h.max(1.0), "n={n}");
            assert!((f16_bounded(&ah, &bh, true, f32::INFINITY) - doth).abs() <= 1e-4 * doth.abs().max(1.0), "n={n}");
            assert!(f16_bounded(&ah, &bh, false, l2h / 4.0) > l2h / 4.0);
        }
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    }

    fn reference(a: &[f32], b: &[f32]) -> [f64; 6] {
        let mut r = [0f64; 6];
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (*x as f64, *y as f64);
            r[0] += (x - y) * (x - y);
            r[1] += x * y;
            r[2] += (x - y).abs();
            r[3] += x * x;
            r[4] += y * y;
        }
        r
    }

    fn close(got: f32, want: f64, scale: f64) -> bool {
        ((got as f64) - want).abs() <= 1e-5 * scale.max(1.0)
    }

    fn isas() -> Vec<Isa> {
        let best = detect();
        [Isa::Scalar, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| matches!((i, best), (Isa::Scalar, _) | (Isa::Avx2, Isa::Avx2 | Isa::Avx512) | (Isa::Avx512, Isa::Avx512)))
            .collect()
    }

    #[test]
    fn every_isa_matches_reference_on_odd_and_even_lengths() {
        let mut seed = 42;
        for n in [1usize, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 784, 1001, 4096, 25088] {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
            let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let r = reference(&a, &b);
            let rh = reference(&ah.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), &bh.iter().map(|x| x.to_f32()).collect::<Vec<_>>());
            // Rounding error grows with the sum of magnitudes, not with the (possibly tiny) result.
            let scale = r[3] + r[4];
            for isa in isas() {
                let k = f32_kernels_for(isa);
                let kh = f16_kernels_for(isa);
                assert_eq!(k.isa, isa);
                unsafe {
                    assert!(close((k.l2_squared)(&a, &b), r[0], scale), "{isa:?} l2 n={n}");
                    assert!(close((k.dot)(&a, &b), r[1], scale), "{isa:?} dot n={n}");
                    assert!(close((k.l1)(&a, &b), r[2], r[2] * 10.0), "{isa:?} l1 n={n}");
                    let (ab, aa, bb) = (k.cosine_parts)(&a, &b);
                    assert!(close(ab, r[1], scale) && close(aa, r[3], scale) && close(bb, r[4], scale));
                    assert!(close((kh.l2_squared)(&ah, &bh), rh[0], scale), "{isa:?} f16 l2 n={n}");
                    assert!(close((kh.dot)(&ah, &bh), rh[1], scale), "{isa:?} f16 dot n={n}");
                    assert!(close((kh.l1)(&ah, &bh), rh[2], rh[2] * 10.0), "{isa:?} f16 l1 n={n}");
                    let (ab, aa, bb) = (kh.cosine_parts)(&ah, &bh);
                    assert!(close(ab, rh[1], scale) && close(aa, rh[3], scale) && close(bb, rh[4], scale));
                }
            }
        }
    }

    #[test]
    fn cosine_of_zero_vector_is_nan_and_of_parallel_vectors_is_zero() {
        assert!(cosine_distance(&[0f32, 0.0], &[1.0, 2.0]).is_nan());
        assert!(cosine_distance(&[1f32, 2.0, 3.0], &[2.0, 4.0, 6.0]).abs() < 1e-7);
        assert!((cosine_distance(&[1f32, 0.0], &[-1.0, 0.0]) - 2.0).abs() < 1e-7);
    }

    #[test]
    fn cosine_of_vectors_whose_norms_overflow_or_underflow_f32_has_an_answer() {
        let d = |a: &[f32], b: &[f32]| cosine_distance(a, b);
        assert!(d(&[3e38], &[3e38]).abs() < 1e-12, "{}", d(&[3e38], &[3e38]));
        assert!(d(&[1e-30, 1e-30], &[1e-30, 1e-30]).abs() < 1e-12);
        assert!(d(&[3e38, 3e38], &[1.0, 1.0]).abs() < 1e-12);
        assert!((d(&[3e38, -3e38], &[1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((d(&[-3e38], &[1e-30]) - 2.0).abs() < 1e-12);
        assert!((d(&[1e-40, 0.0], &[0.0, 1e-40]) - 1.0).abs() < 1e-12, "subnormals");
        assert!(d(&[0.0, 0.0], &[3e38, 0.0]).is_nan(), "the zero vector has no direction");
        // long vectors of huge values, every SIMD width and tail
        for n in [1usize, 7, 16, 33, 100, 2000] {
            let a: Vec<f32> = (0..n).map(|i| 3e38 * if i % 3 == 0 { -1.0 } else { 0.5 }).collect();
            let b: Vec<f32> = a.iter().map(|x| x * 1e-34 * 1e-34).collect();
            assert!(d(&a, &a).abs() < 1e-12, "n={n}");
            assert!(d(&a, &b).abs() < 1e-9, "n={n}: {}", d(&a, &b));
            let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x / 1e34)).collect();
            assert!(cosine_distance(&ah, &ah).abs() < 1e-7, "f16 n={n}");
        }
        // ordinary vectors still take the f32 sums
        let v = random_vectors(2, 64, 9);
        let (ab, aa, bb) = cosine_parts_f64(&v[0], &v[1]);
        assert!((d(&v[0], &v[1]) - (1.0 - ab / (aa * bb).sqrt())).abs() < 1e-6);
    }

    #[test]
    #[should_panic(expected = "different lengths")]
    fn mismatched_lengths_are_refused() {
        l2_squared(&[1f32, 2.0], &[1.0]);
    }
}
