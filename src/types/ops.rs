//! Operations shared by `embedding` and `halfembedding`, generic over the element type. The
//! SQL entry points that call them are stamped out per type by `vector_sql_functions!`.

use super::datum::{SqlScalar, VecRef, Vector};
use crate::glue::error::{error, raise};
use pgrx::datum::{AnyArray, Internal};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::cmp::Ordering;
use std::ffi::{CStr, CString};
use vs_vector::kernels;
use vs_vector::text::{check_f64, format_vector, parse_vector, VecError};

pub fn fail<T: SqlScalar>(e: VecError) -> ! {
    raise(e, T::TYPE_NAME, None)
}

pub fn check_typmod<T: SqlScalar>(dim: usize, typmod: i32) {
    if typmod >= 0 && dim != typmod as usize {
        fail::<T>(VecError::TypmodMismatch(typmod as usize, dim));
    }
}

pub fn same_dims<T: SqlScalar>(a: &VecRef<T>, b: &VecRef<T>) {
    if a.dim() != b.dim() {
        fail::<T>(VecError::DimMismatch(a.dim(), b.dim()));
    }
}

/// Converts checked f32 values to the element type.
pub fn from_values<T: SqlScalar>(values: impl IntoIterator<Item = f32>) -> Vector<T> {
    Vector(values.into_iter().map(T::from_f32).collect())
}

pub fn input<T: SqlScalar>(s: &CStr, typmod: i32) -> Vector<T> {
    let text = s.to_str().unwrap_or_else(|_| error(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, "input is not valid UTF-8"));
    let values = parse_vector(text, T::MAX).unwrap_or_else(|e| raise(e, T::TYPE_NAME, Some(text)));
    check_typmod::<T>(values.len(), typmod);
    from_values(values)
}

pub fn output<T: SqlScalar>(v: VecRef<T>) -> CString {
    CString::new(format_vector(v.data.iter().map(|x| x.to_f32()))).expect("no NUL in a formatted vector")
}

pub fn typmod_in<T: SqlScalar>(list: Array<&CStr>) -> i32 {
    let mods: Vec<Option<&CStr>> = list.iter().collect();
    let dims = match mods.as_slice() {
        [Some(m)] => m.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()),
        _ => None,
    };
    let name = T::TYPE_NAME;
    match dims {
        None => error(ERRCODE_INVALID_PARAMETER_VALUE, "invalid type modifier"),
        Some(d) if d < 1 => error(ERRCODE_INVALID_PARAMETER_VALUE, format!("dimensions for type {name} must be at least 1")),
        Some(d) if d > vs_vector::text::MAX_DIM as i64 => {
            error(ERRCODE_INVALID_PARAMETER_VALUE, format!("dimensions for type {name} cannot exceed {}", vs_vector::text::MAX_DIM))
        }
        Some(d) => d as i32,
    }
}

pub fn recv<T: SqlScalar>(buf: Internal, typmod: i32) -> Vector<T> {
    let buf = buf.unwrap().expect("recv buffer").cast_mut_ptr::<pg_sys::StringInfoData>();
    let (dim, unused) = unsafe { (pg_sys::pq_getmsgint(buf, 2) as usize, pg_sys::pq_getmsgint(buf, 2)) };
    if dim == 0 {
        fail::<T>(VecError::Empty);
    }
    check_typmod::<T>(dim, typmod);
    if unused != 0 {
        error(ERRCODE_DATA_EXCEPTION, format!("expected unused to be 0, not {unused}"));
    }
    let mut out = Vec::with_capacity(dim);
    for _ in 0..dim {
        let x = unsafe { T::read_msg(buf) };
        check_f64(x.to_f32() as f64, T::MAX).unwrap_or_else(|e| fail::<T>(e));
        out.push(x);
    }
    Vector(out)
}

pub fn send<T: SqlScalar>(v: VecRef<T>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + v.dim() * size_of::<T>());
    out.extend_from_slice(&(v.dim() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for x in v.data {
        x.write_be(&mut out);
    }
    out
}

/// Applies a typmod (the cast PostgreSQL calls on assignment to `embedding(n)`).
pub fn coerce<T: SqlScalar>(v: VecRef<T>, typmod: i32) -> Vector<T> {
    check_typmod::<T>(v.dim(), typmod);
    Vector(v.data.to_vec())
}

/// Reads a one-dimensional array of real, double precision, integer or numeric.
pub fn from_array<T: SqlScalar>(arr: AnyArray, typmod: i32) -> Vector<T> {
    let values = unsafe { array_values(arr) }.unwrap_or_else(|e| fail::<T>(e));
    if values.is_empty() {
        fail::<T>(VecError::Empty);
    }
    if values.len() > vs_vector::text::MAX_DIM {
        fail::<T>(VecError::TooManyDims(values.len()));
    }
    let checked: Vec<f32> = values.into_iter().map(|x| check_f64(x, T::MAX).unwrap_or_else(|e| fail::<T>(e))).collect();
    check_typmod::<T>(checked.len(), typmod);
    from_values(checked)
}

unsafe fn array_values(arr: AnyArray) -> Result<Vec<f64>, VecError> {
    unsafe {
        let a = pg_sys::pg_detoast_datum(arr.datum().cast_mut_ptr()) as *mut pg_sys::ArrayType;
        match (*a).ndim {
            0 => return Err(VecError::Empty),
            1 => {}
            _ => return Err(VecError::NotOneDimensional),
        }
        let elem = (*a).elemtype;
        let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(elem, &mut len, &mut byval, &mut align);
        let (mut datums, mut nulls, mut n) = (std::ptr::null_mut(), std::ptr::null_mut(), 0);
        pg_sys::deconstruct_array(a, elem, len as i32, byval, align, &mut datums, &mut nulls, &mut n);
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            if *nulls.add(i) {
                return Err(VecError::NullElement);
            }
            let d = *datums.add(i);
            out.push(match elem {
                pg_sys::FLOAT4OID => f32::from_datum(d, false).unwrap() as f64,
                pg_sys::FLOAT8OID => f64::from_datum(d, false).unwrap(),
                pg_sys::INT4OID => i32::from_datum(d, false).unwrap() as f64,
                pg_sys::NUMERICOID => {
                    let num = AnyNumeric::from_datum(d, false).unwrap();
                    f64::try_from(num).map_err(|_| VecError::OutOfRange("numeric".into()))?
                }
                _ => error(ERRCODE_DATATYPE_MISMATCH, "only arrays of real, double precision, integer or numeric can be cast to a vector"),
            });
        }
        Ok(out)
    }
}

pub fn to_f32s<T: SqlScalar>(v: VecRef<T>) -> Vec<f32> {
    v.data.iter().map(|x| x.to_f32()).collect()
}

pub fn to_f64s<T: SqlScalar>(v: VecRef<T>) -> Vec<f64> {
    v.data.iter().map(|x| x.to_f32() as f64).collect()
}

/// Rounds to integers as PostgreSQL's float4 → integer cast does.
pub fn to_i32s<T: SqlScalar>(v: VecRef<T>) -> Vec<i32> {
    v.data
        .iter()
        .map(|x| {
            let r = (x.to_f32() as f64).round_ties_even();
            if !(i32::MIN as f64..=i32::MAX as f64).contains(&r) {
                error(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range");
            }
            r as i32
        })
        .collect()
}

pub fn l2_squared<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> f64 {
    same_dims(&a, &b);
    kernels::l2_squared(a.data, b.data) as f64
}
pub fn l2<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> f64 {
    l2_squared(a, b).sqrt()
}
pub fn inner_product<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> f64 {
    same_dims(&a, &b);
    kernels::dot(a.data, b.data) as f64
}
pub fn cosine<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> f64 {
    same_dims(&a, &b);
    kernels::cosine_distance(a.data, b.data)
}
pub fn l1<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> f64 {
    same_dims(&a, &b);
    kernels::l1(a.data, b.data) as f64
}
pub fn norm<T: SqlScalar>(v: VecRef<T>) -> f64 {
    v.data.iter().map(|x| (x.to_f32() as f64).powi(2)).sum::<f64>().sqrt()
}
pub fn normalize<T: SqlScalar>(v: VecRef<T>) -> Vector<T> {
    let n = norm(VecRef { data: v.data });
    if n == 0.0 {
        return Vector(v.data.to_vec());
    }
    from_values(v.data.iter().map(|x| (x.to_f32() as f64 / n) as f32))
}

/// Elementwise arithmetic; an overflow of the element type is an error, as in pgvector.
pub fn elementwise<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>, f: impl Fn(f32, f32) -> f32) -> Vector<T> {
    same_dims(&a, &b);
    let out = a.data.iter().zip(b.data).map(|(x, y)| {
        let r = f(x.to_f32(), y.to_f32());
        if r.is_infinite() || r.abs() > T::MAX {
            fail::<T>(VecError::Overflow)
        }
        r
    });
    from_values(out.collect::<Vec<_>>())
}

/// Elementwise product: as in pgvector, also an error when non-zero factors round to zero
/// (`[1e-37] * [1e-37]`), so that a product never loses a dimension's sign silently.
pub fn multiply<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> Vector<T> {
    let product = elementwise(VecRef { data: a.data }, VecRef { data: b.data }, |x, y| x * y);
    let lost = product.0.iter().zip(a.data.iter().zip(b.data)).any(|(r, (x, y))| r.to_f32() == 0.0 && x.to_f32() != 0.0 && y.to_f32() != 0.0);
    if lost {
        fail::<T>(VecError::Underflow)
    }
    product
}

/// `a || b`: the elements of both, within the type's dimension limit.
pub fn concat<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> Vector<T> {
    let dim = a.dim() + b.dim();
    if dim > vs_vector::text::MAX_DIM {
        fail::<T>(VecError::TooManyDims(dim));
    }
    Vector(a.data.iter().chain(b.data).copied().collect())
}

/// `subvector(v, start, count)`: 1-based, clipped to the vector like `substring`.
pub fn subvector<T: SqlScalar>(v: VecRef<T>, start: i32, count: i32) -> Vector<T> {
    let range = vs_vector::slice::subvector_range(v.dim(), start, count).unwrap_or_else(|e| fail::<T>(e));
    Vector(v.data[range].to_vec())
}

/// Lexicographic order on the elements, then shorter first (the btree order).
pub fn compare<T: SqlScalar>(a: VecRef<T>, b: VecRef<T>) -> Ordering {
    for (x, y) in a.data.iter().zip(b.data) {
        match x.to_f32().partial_cmp(&y.to_f32()) {
            Some(Ordering::Equal) | None => {}
            Some(o) => return o,
        }
    }
    a.dim().cmp(&b.dim())
}

/// Aggregate state: [count, sum_1, ..., sum_dim] in double precision.
pub fn accum<T: SqlScalar>(mut state: Vec<f64>, v: VecRef<T>) -> Vec<f64> {
    if state.len() <= 1 {
        state = vec![0.0; v.dim() + 1];
    } else if state.len() != v.dim() + 1 {
        fail::<T>(VecError::DimMismatch(state.len() - 1, v.dim()));
    }
    state[0] += 1.0;
    for (s, x) in state[1..].iter_mut().zip(v.data) {
        *s += x.to_f32() as f64;
    }
    state
}

pub fn combine<T: SqlScalar>(a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    if a.len() <= 1 {
        return b;
    }
    if b.len() <= 1 {
        return a;
    }
    if a.len() != b.len() {
        fail::<T>(VecError::DimMismatch(a.len() - 1, b.len() - 1));
    }
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

pub fn average<T: SqlScalar>(state: Vec<f64>) -> Option<Vector<T>> {
    if state.len() <= 1 || state[0] == 0.0 {
        return None;
    }
    let n = state[0];
    Some(from_values(state[1..].iter().map(|s| check_f64(s / n, T::MAX).unwrap_or_else(|e| fail::<T>(e)))))
}

/// Defines the SQL entry points of one vector type. The hand-written install script in `sql/`
/// binds them by their C symbol (`<name>_wrapper`).
#[macro_export]
macro_rules! vector_sql_functions {
    ($p:ident, $t:ty) => {
        paste::paste! {
            use $crate::types::datum::{VecRef, Vector};
            use $crate::types::ops;
            #[allow(unused_imports)]
            use ::vs_vector::kernels::Scalar as _;
            use pgrx::datum::{AnyArray, Internal};
            use pgrx::prelude::*;
            use std::ffi::{CStr, CString};

            #[pg_extern(sql = false)]
            fn [<$p _in>](input: &CStr, _oid: pg_sys::Oid, typmod: i32) -> Vector<$t> { ops::input(input, typmod) }
            #[pg_extern(sql = false)]
            fn [<$p _out>](v: VecRef<$t>) -> CString { ops::output(v) }
            #[pg_extern(sql = false)]
            fn [<$p _typmod_in>](list: Array<&CStr>) -> i32 { ops::typmod_in::<$t>(list) }
            #[pg_extern(sql = false)]
            fn [<$p _recv>](buf: Internal, _oid: pg_sys::Oid, typmod: i32) -> Vector<$t> { ops::recv(buf, typmod) }
            #[pg_extern(sql = false)]
            fn [<$p _send>](v: VecRef<$t>) -> Vec<u8> { ops::send(v) }
            #[pg_extern(sql = false)]
            fn [<$p _coerce>](v: VecRef<$t>, typmod: i32, _explicit: bool) -> Vector<$t> { ops::coerce(v, typmod) }
            #[pg_extern(sql = false)]
            fn [<array_to_ $p>](a: AnyArray, typmod: i32, _explicit: bool) -> Vector<$t> { ops::from_array(a, typmod) }
            #[pg_extern(sql = false)]
            fn [<$p _to_float4>](v: VecRef<$t>, _typmod: i32, _explicit: bool) -> Vec<f32> { ops::to_f32s(v) }
            #[pg_extern(sql = false)]
            fn [<$p _to_float8>](v: VecRef<$t>, _typmod: i32, _explicit: bool) -> Vec<f64> { ops::to_f64s(v) }
            #[pg_extern(sql = false)]
            fn [<$p _to_int4>](v: VecRef<$t>, _typmod: i32, _explicit: bool) -> Vec<i32> { ops::to_i32s(v) }

            #[pg_extern(sql = false)]
            fn [<$p _l2_distance>](a: VecRef<$t>, b: VecRef<$t>) -> f64 { ops::l2(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _l2_squared_distance>](a: VecRef<$t>, b: VecRef<$t>) -> f64 { ops::l2_squared(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _inner_product>](a: VecRef<$t>, b: VecRef<$t>) -> f64 { ops::inner_product(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _negative_inner_product>](a: VecRef<$t>, b: VecRef<$t>) -> f64 { -ops::inner_product(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _cosine_distance>](a: VecRef<$t>, b: VecRef<$t>) -> f64 { ops::cosine(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _l1_distance>](a: VecRef<$t>, b: VecRef<$t>) -> f64 { ops::l1(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _dims>](v: VecRef<$t>) -> i32 { v.dim() as i32 }
            #[pg_extern(sql = false)]
            fn [<$p _norm>](v: VecRef<$t>) -> f64 { ops::norm(v) }
            #[pg_extern(sql = false)]
            fn [<$p _l2_normalize>](v: VecRef<$t>) -> Vector<$t> { ops::normalize(v) }
            #[pg_extern(sql = false)]
            fn [<$p _binary_quantize>](v: VecRef<$t>) -> $crate::types::bits::BitString {
                $crate::types::bits::quantize(v.data.iter().map(|x| x.to_f32()))
            }

            #[pg_extern(sql = false)]
            fn [<$p _add>](a: VecRef<$t>, b: VecRef<$t>) -> Vector<$t> { ops::elementwise(a, b, |x, y| x + y) }
            #[pg_extern(sql = false)]
            fn [<$p _sub>](a: VecRef<$t>, b: VecRef<$t>) -> Vector<$t> { ops::elementwise(a, b, |x, y| x - y) }
            #[pg_extern(sql = false)]
            fn [<$p _mul>](a: VecRef<$t>, b: VecRef<$t>) -> Vector<$t> { ops::multiply(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _concat>](a: VecRef<$t>, b: VecRef<$t>) -> Vector<$t> { ops::concat(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _subvector>](v: VecRef<$t>, start: i32, count: i32) -> Vector<$t> { ops::subvector(v, start, count) }

            #[pg_extern(sql = false)]
            fn [<$p _cmp>](a: VecRef<$t>, b: VecRef<$t>) -> i32 { ops::compare(a, b) as i32 }
            #[pg_extern(sql = false)]
            fn [<$p _lt>](a: VecRef<$t>, b: VecRef<$t>) -> bool { ops::compare(a, b).is_lt() }
            #[pg_extern(sql = false)]
            fn [<$p _le>](a: VecRef<$t>, b: VecRef<$t>) -> bool { ops::compare(a, b).is_le() }
            #[pg_extern(sql = false)]
            fn [<$p _eq>](a: VecRef<$t>, b: VecRef<$t>) -> bool { ops::compare(a, b).is_eq() }
            #[pg_extern(sql = false)]
            fn [<$p _ne>](a: VecRef<$t>, b: VecRef<$t>) -> bool { ops::compare(a, b).is_ne() }
            #[pg_extern(sql = false)]
            fn [<$p _ge>](a: VecRef<$t>, b: VecRef<$t>) -> bool { ops::compare(a, b).is_ge() }
            #[pg_extern(sql = false)]
            fn [<$p _gt>](a: VecRef<$t>, b: VecRef<$t>) -> bool { ops::compare(a, b).is_gt() }

            #[pg_extern(sql = false)]
            fn [<$p _accum>](state: Vec<f64>, v: VecRef<$t>) -> Vec<f64> { ops::accum(state, v) }
            #[pg_extern(sql = false)]
            fn [<$p _combine>](a: Vec<f64>, b: Vec<f64>) -> Vec<f64> { ops::combine::<$t>(a, b) }
            #[pg_extern(sql = false)]
            fn [<$p _avg>](state: Vec<f64>) -> Option<Vector<$t>> { ops::average(state) }
        }
    };
}
