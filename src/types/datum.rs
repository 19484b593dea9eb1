//! The on-disk form of `embedding` (f32) and `halfembedding` (f16) and its pgrx plumbing.
//!
//! Layout, the same as pgvector's `vector`/`halfvec`: varlena header (4 bytes), `dim: u16`,
//! `unused: u16`, then `dim` elements. No per-element overhead.

use crate::glue::error::{error, raise};
use half::f16;
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use vs_vector::kernels::Distance;
use vs_vector::text::{VecError, MAX_DIM};

pub const HEADER: usize = 8;

/// An element type a stored vector can hold.
pub trait SqlScalar: Distance + Copy + Default + PartialOrd + std::fmt::Debug {
    /// SQL type name.
    const TYPE_NAME: &'static str;
    const TYPE_IDENT: &'static str;
    /// Largest magnitude that stays finite in the element type.
    const MAX: f32;
    fn from_f32(x: f32) -> Self;
    /// Big-endian bytes for the binary send format.
    fn write_be(self, out: &mut Vec<u8>);
    /// Reads one element from a binary message (PostgreSQL's own reader raises on short input).
    unsafe fn read_msg(buf: pg_sys::StringInfo) -> Self;
}

impl SqlScalar for f32 {
    const TYPE_NAME: &'static str = "embedding";
    const TYPE_IDENT: &'static str = "visual_search::embedding";
    const MAX: f32 = f32::MAX;
    fn from_f32(x: f32) -> Self {
        x
    }
    fn write_be(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    unsafe fn read_msg(buf: pg_sys::StringInfo) -> Self {
        unsafe { pg_sys::pq_getmsgfloat4(buf) }
    }
}

impl SqlScalar for f16 {
    const TYPE_NAME: &'static str = "halfembedding";
    const TYPE_IDENT: &'static str = "visual_search::halfembedding";
    /// The largest f32 below 65,520: up to there a value rounds to f16's largest, 65,504 (as
    /// pgvector's halfvec accepts it); from there on it rounds to infinity.
    const MAX: f32 = f32::from_bits(0x477f_efff);
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn write_be(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bits().to_be_bytes());
    }
    unsafe fn read_msg(buf: pg_sys::StringInfo) -> Self {
        f16::from_bits(unsafe { pg_sys::pq_getmsgint(buf, 2) } as u16)
    }
}

/// A vector argument, detoasted, borrowed for the duration of the call.
pub struct VecRef<'a, T> {
    pub data: &'a [T],
}

impl<T> VecRef<'_, T> {
    pub fn dim(&self) -> usize {
        self.data.len()
    }
}

/// A vector result; copied into a palloc'd varlena when returned.
pub struct Vector<T>(pub Vec<T>);

/// An array of vectors (`embedding[]`) to return; `None` elements are NULL.
pub struct VectorArray<T>(pub Vec<Option<Vec<T>>>);

impl<'a, T: SqlScalar> FromDatum for VecRef<'a, T> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            return None;
        }
        unsafe {
            let raw = datum.cast_mut_ptr::<pg_sys::varlena>();
            // A plain value with a 4-byte header (every stored vector under ≈ 2 kB) is read in
            // place: pg_detoast_datum would only hand it back, through pgrx's guard of every call
            // into PostgreSQL (a sigsetjmp each), once per row and operand of a distance.
            let mut p = if pgrx::varlena::varatt_is_4b_u(raw) { raw as *const u8 } else { pg_sys::pg_detoast_datum(raw) as *const u8 };
            let size = pgrx::varlena::varsize_any(p.cast());
            // Datums in a tuple are 4-byte aligned by the type's alignment; anything else is copied.
            if !(p as usize).is_multiple_of(4) {
                let copy = pg_sys::palloc(size) as *mut u8;
                std::ptr::copy_nonoverlapping(p, copy, size);
                p = copy;
            }
            let dim = (p.add(4) as *const u16).read() as usize;
            if size != HEADER + dim * size_of::<T>() {
                error(ERRCODE_DATA_CORRUPTED, format!("corrupt {} datum: {size} bytes for {dim} dimensions", T::TYPE_NAME));
            }
            Some(VecRef { data: std::slice::from_raw_parts(p.add(HEADER) as *const T, dim) })
        }
    }
}

impl<T: SqlScalar> Vector<T> {
    /// Writes the varlena into palloc'd memory of the current memory context. Every datum of
    /// the two types is built here (casts, aggregates, arithmetic, recv, image_embed, arrays of
    /// vectors), so this is where a vector longer than the 16-bit count can hold is refused
    /// (54000), instead of being stored with a wrapped count that no later read accepts.
    pub fn to_varlena(&self) -> *mut pg_sys::varlena {
        if self.0.len() > MAX_DIM {
            raise(VecError::TooManyDims(self.0.len()), T::TYPE_NAME, None);
        }
        let size = HEADER + self.0.len() * size_of::<T>();
        unsafe {
            let p = pg_sys::palloc0(size) as *mut u8;
            pgrx::varlena::set_varsize_4b(p.cast(), size as i32);
            (p.add(4) as *mut u16).write(self.0.len() as u16);
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), p.add(HEADER) as *mut T, self.0.len());
            p.cast()
        }
    }
}

unsafe impl<'fcx, T: SqlScalar> ArgAbi<'fcx> for VecRef<'fcx, T> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

unsafe impl<T: SqlScalar> BoxRet for Vector<T> {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(pg_sys::Datum::from(self.to_varlena())) }
    }
}

unsafe impl<T: SqlScalar> BoxRet for VectorArray<T> {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        unsafe {
            // The element type is whatever the SQL declaration returns an array of.
            let raw = fcinfo.as_mut_ptr();
            let array_type = pg_sys::get_fn_expr_rettype((*raw).flinfo);
            let elem = pg_sys::get_element_type(array_type);
            if elem == pg_sys::InvalidOid {
                error(ERRCODE_DATATYPE_MISMATCH, "function must be declared to return an array of vectors");
            }
            fcinfo.return_raw_datum(vector_array(self.0.into_iter(), elem))
        }
    }
}

unsafe impl<T: SqlScalar> SqlTranslatable for VectorArray<T> {
    const TYPE_IDENT: &'static str = T::TYPE_IDENT;
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::As(T::TYPE_NAME));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::As(T::TYPE_NAME)));
}

unsafe impl<'a, T: SqlScalar> SqlTranslatable for VecRef<'a, T> {
    const TYPE_IDENT: &'static str = T::TYPE_IDENT;
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::As(T::TYPE_NAME));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::As(T::TYPE_NAME)));
}

unsafe impl<T: SqlScalar> SqlTranslatable for Vector<T> {
    const TYPE_IDENT: &'static str = T::TYPE_IDENT;
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::As(T::TYPE_NAME));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::As(T::TYPE_NAME)));
}

/// A one-dimensional array of vectors whose element type is `elem` (NULL where an item is None),
/// in the current memory context.
pub fn vector_array<T: SqlScalar>(items: impl ExactSizeIterator<Item = Option<Vec<T>>>, elem: pg_sys::Oid) -> pg_sys::Datum {
    let n = items.len();
    let mut datums: Vec<pg_sys::Datum> = Vec::with_capacity(n);
    let mut nulls: Vec<bool> = Vec::with_capacity(n);
    for v in items {
        nulls.push(v.is_none());
        datums.push(v.map_or(pg_sys::Datum::from(0usize), |v| pg_sys::Datum::from(Vector(v).to_varlena())));
    }
    let mut dims = [n as i32];
    let mut lbs = [1i32];
    let arr = unsafe {
        pg_sys::construct_md_array(
            datums.as_mut_ptr(),
            nulls.as_mut_ptr(),
            1,
            dims.as_mut_ptr(),
            lbs.as_mut_ptr(),
            elem,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
        )
    };
    pg_sys::Datum::from(arr)
}
