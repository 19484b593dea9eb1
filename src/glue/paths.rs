//! PostgreSQL's installation folders, as the running server sees them.

use pgrx::pg_sys;
use std::ffi::{c_char, CStr};

type Getter = unsafe fn(*const c_char, *mut c_char);

fn dir(get: Getter) -> String {
    let mut buf = [0 as c_char; pg_sys::MAXPGPATH as usize];
    unsafe { get(std::ptr::addr_of!(pg_sys::my_exec_path).cast(), buf.as_mut_ptr()) };
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// `$libdir`: the main library, the engine library and the service executable.
pub fn pkglib() -> String {
    dir(pg_sys::get_pkglib_path)
}

/// The share directory: the installed models live in its `visual_search/models`.
pub fn share() -> String {
    dir(pg_sys::get_share_path)
}

/// `$libdir/…` with `$libdir` expanded, as PostgreSQL does for libraries.
pub fn expand_libdir(path: &str) -> String {
    match path.strip_prefix("$libdir") {
        Some(rest) => format!("{}{rest}", pkglib()),
        None => path.to_string(),
    }
}
