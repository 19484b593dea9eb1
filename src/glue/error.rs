//! Maps vector errors and the embedding engine's statuses to PostgreSQL errors with the
//! SQLSTATE the server itself uses for the same kind of problem (22P02 for bad literals, 22003
//! for out-of-range values, 54000 for limits, ...).

use crate::guc;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::{self, *};
use vs_engine_api::abi::Status;
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
        VecError::Underflow => (ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: underflow".to_string()),
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

/// Work stopped for a pending interrupt: PostgreSQL raises its own error for it (57014 with the
/// cancel's or the timeout's message, or FATAL for a termination).
pub fn cancelled() -> ! {
    pg_sys::check_for_interrupts!();
    // Interrupts held off here: the work is abandoned all the same.
    error(ERRCODE_QUERY_CANCELED, "canceling statement due to user request")
}

/// Where a limit applies only because a superuser's ceiling is below the role's own setting,
/// the message says so.
fn capped(setting: &pgrx::guc::GucSetting<i32>, ceiling: &pgrx::guc::GucSetting<i32>, name: &str) -> String {
    if setting.get() > ceiling.get() {
        format!(", capped by visual_search.{name}_ceiling")
    } else {
        String::new()
    }
}

/// The SQLSTATE of an engine or service status, and what the message adds to it. The one
/// mapping of statuses: `engine` raises with it, the auto-embed drainer records it for a row.
/// `Cancelled` is not an error of its own (the caller turns it into the pending interrupt).
pub fn engine_sqlstate(status: Status) -> (PgSqlErrorCode, String) {
    match status {
        Status::ImageTooManyBytes => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, capped(&guc::MAX_IMAGE_BYTES, &guc::MAX_IMAGE_BYTES_CEILING, "max_image_bytes")),
        Status::ImageTooManyPixels => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, capped(&guc::MAX_IMAGE_PIXELS, &guc::MAX_IMAGE_PIXELS_CEILING, "max_image_pixels")),
        Status::ImageInvalid => (ERRCODE_INVALID_BINARY_REPRESENTATION, String::new()),
        Status::ResizedTooLarge => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, String::new()),
        Status::OutOfMemory => (ERRCODE_OUT_OF_MEMORY, String::new()),
        Status::ModelBadName => (ERRCODE_INVALID_NAME, String::new()),
        Status::ModelUnknown => (ERRCODE_UNDEFINED_OBJECT, String::new()),
        Status::ModelManifest => (ERRCODE_CONFIG_FILE_ERROR, String::new()),
        Status::WeightsMissing => (ERRCODE_UNDEFINED_FILE, String::new()),
        Status::WeightsCorrupt => (ERRCODE_DATA_CORRUPTED, String::new()),
        Status::Device | Status::EngineUnusable => (ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, String::new()),
        Status::EngineMissing => (ERRCODE_UNDEFINED_FILE, String::new()),
        Status::ServiceLost => (ERRCODE_SYSTEM_ERROR, String::new()),
        Status::ServiceUnavailable => (ERRCODE_INSUFFICIENT_RESOURCES, String::new()),
        Status::Cancelled => (ERRCODE_QUERY_CANCELED, String::new()),
        Status::Torch | Status::Internal | Status::Ok => (ERRCODE_INTERNAL_ERROR, String::new()),
    }
}

/// The five characters of a SQLSTATE, as SQLSTATE and the views show it.
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let c = code as i32;
    (0..5).map(|i| (((c >> (6 * i)) & 0x3f) as u8 + b'0') as char).collect()
}

/// Raises what the embedding engine answered: `message` is its text, `image` the image of the
/// batch it is about (named in the message when the call took an array).
pub fn engine(status: Status, image: Option<usize>, message: &str, in_array: bool) -> ! {
    if status == Status::Cancelled {
        cancelled();
    }
    let (code, note) = engine_sqlstate(status);
    match image.filter(|_| in_array) {
        Some(i) => error(code, format!("image {} of the array: {message}{note}", i + 1)),
        None => error(code, format!("{message}{note}")),
    }
}
