//! `binary_quantize(vector) → bit` and Hamming distance on `bit`, the original design's
//! alternative metric. Uses PostgreSQL's own varbit layout: header, bit length, bits MSB first.

use crate::glue::error::error;
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

const VARBIT_HEADER: usize = 8;

/// A bit string to return: `len` bits packed MSB first.
pub struct BitString {
    pub len: usize,
    pub bytes: Vec<u8>,
}

/// A `bit` argument.
pub struct BitRef<'a> {
    pub len: usize,
    pub bytes: &'a [u8],
}

/// One bit per dimension: set where the value is positive.
pub fn quantize(values: impl ExactSizeIterator<Item = f32>) -> BitString {
    let len = values.len();
    let mut bytes = vec![0u8; len.div_ceil(8)];
    for (i, x) in values.enumerate() {
        if x > 0.0 {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    BitString { len, bytes }
}

pub fn hamming(a: &BitRef, b: &BitRef) -> u64 {
    a.bytes.iter().zip(b.bytes).map(|(x, y)| (x ^ y).count_ones() as u64).sum()
}

#[pg_extern(sql = false)]
fn bit_hamming_distance(a: BitRef, b: BitRef) -> f64 {
    if a.len != b.len {
        error(ERRCODE_DATA_EXCEPTION, format!("different bit lengths {} and {}", a.len, b.len));
    }
    hamming(&a, &b) as f64
}

impl<'a> FromDatum for BitRef<'a> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            return None;
        }
        unsafe {
            let p = pg_sys::pg_detoast_datum(datum.cast_mut_ptr::<pg_sys::varlena>()) as *const u8;
            let size = pgrx::varlena::varsize_any(p.cast());
            let len = (p.add(4) as *const i32).read_unaligned() as usize;
            let bytes = std::slice::from_raw_parts(p.add(VARBIT_HEADER), size - VARBIT_HEADER);
            Some(BitRef { len, bytes })
        }
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for BitRef<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        unsafe { arg.unbox_arg_using_from_datum() }.expect("bit argument must not be null")
    }
}

unsafe impl BoxRet for BitString {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        let size = VARBIT_HEADER + self.bytes.len();
        unsafe {
            let p = pg_sys::palloc0(size) as *mut u8;
            pgrx::varlena::set_varsize_4b(p.cast(), size as i32);
            (p.add(4) as *mut i32).write(self.len as i32);
            std::ptr::copy_nonoverlapping(self.bytes.as_ptr(), p.add(VARBIT_HEADER), self.bytes.len());
            fcinfo.return_raw_datum(pg_sys::Datum::from(p))
        }
    }
}

macro_rules! bit_sql {
    ($t:ty) => {
        unsafe impl SqlTranslatable for $t {
            const TYPE_IDENT: &'static str = "visual_search::bit";
            const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
            const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::As("bit"));
            const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::As("bit")));
        }
    };
}
bit_sql!(BitString);
bit_sql!(BitRef<'_>);
