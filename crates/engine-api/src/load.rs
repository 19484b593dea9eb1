//! Opening the engine library: in a backend (`visual_search.embed_in = 'backend'`) and in the
//! embedding service, the same way.

use crate::abi::{self, Engine};
use std::ffi::{c_void, CStr, CString};

fn dlerror() -> String {
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// Opens the library at `path` and checks its version; the error says why not. It is never
/// closed: libtorch cannot be unloaded safely, and the models stay cached.
pub fn open(path: &str) -> Result<&'static Engine, String> {
    let c = CString::new(path).map_err(|_| "the path holds a NUL byte".to_string())?;
    // RTLD_LOCAL: libtorch's and the engine's symbols stay out of the caller's namespace.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(dlerror());
    }
    let sym = unsafe { libc::dlsym(handle, abi::ENTRY.as_ptr()) };
    if sym.is_null() {
        return Err(format!("not an embedding engine library: {}", dlerror()));
    }
    let entry: abi::EntryFn = unsafe { std::mem::transmute::<*mut c_void, abi::EntryFn>(sym) };
    let engine = unsafe { entry().as_ref() }.ok_or("its entry point returned nothing")?;
    if engine.version != abi::VERSION {
        return Err(format!("it speaks version {} of the engine interface, this extension version {}", engine.version, abi::VERSION));
    }
    Ok(engine)
}
