//! Maps vector errors to PostgreSQL errors with the SQLSTATE the server itself uses for the
//! same kind of problem (22P02 for bad literals, 22003 for out-of-range values, ...).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use vs_vector::text::{VecError, MAX_DIM};

pub fn raise(e: VecError, type_name: &str, input: Option<&str>) -> ! {
    let (code, msg) = match e {
        VecError::Syntax => (ERRCODE_INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type {type_name}: \"{}\"", input.unwrap_or(""))),
        VecError::Empty => (ERRCODE_DATA_EXCEPTION, format!("{type_name} must have at least 1 dimension")),
        VecError::NaN => (ERRCODE_DATA_EXCEPTION, format!("NaN not allowed in {type_name}")),
        VecError::Infinite => (ERRCODE_DATA_EXCEPTION, format!("infinite value not allowed in {type_name}")),
        VecError::OutOfRange(lit) => (ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, format!("\"{lit}\" is out of range for type {type_name}")),
        VecError::TooManyDims(_) => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("{type_name} cannot have more than {MAX_DIM} dimensions")),
        VecError::DimMismatch(a, b) => (ERRCODE_DATA_EXCEPTION, format!("different {type_name} dimensions {a} and {b}")),
        VecError::TypmodMismatch(want, got) => (ERRCODE_DATA_EXCEPTION, format!("expected {want} dimensions, not {got}")),
        VecError::Overflow => (ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: overflow".to_string()),
        VecError::NullElement => (ERRCODE_NULL_VALUE_NOT_ALLOWED, "array must not contain nulls".to_string()),
        VecError::NotOneDimensional => (ERRCODE_DATA_EXCEPTION, "array must be 1-D".to_string()),
    };
    ErrorReport::new(code, msg, "visual_search").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises `msg` with `code` at ERROR.
pub fn error(code: PgSqlErrorCode, msg: impl Into<String>) -> ! {
    ErrorReport::new(code, msg.into(), "visual_search").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
