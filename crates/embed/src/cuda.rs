//! libtorch's CUDA backend, opened at run time. The engine links libtorch_cpu only: it is built on
//! machines without a GPU, against a libtorch folder that leaves libtorch_cuda.so out (tch would
//! otherwise link the whole CUDA stack, see TOOLCHAIN). On a GPU machine whose PyTorch 2.11 (the
//! same build) is on the library path, opening the libtorch_cuda.so that sits beside the loaded
//! libtorch_cpu.so registers CUDA with it, so one engine file serves both kinds of machine.
use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// Why CUDA's backend is not there: None when it was opened, or was never beside libtorch_cpu.
static PROBLEM: OnceLock<Option<String>> = OnceLock::new();

/// The folder of the libtorch_cpu.so this process has loaded.
fn libtorch_dir() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    // The path is the rest of the line from its first '/' (it may hold spaces).
    let path = maps.lines().filter_map(|l| l.find('/').map(|i| &l[i..])).find(|p| p.ends_with("/libtorch_cpu.so"))?;
    Some(path.rsplit_once('/')?.0.to_string())
}

/// Opens the backend once (it stays loaded); Some(reason) when it is beside libtorch_cpu.so but
/// could not be opened (a mismatched or incomplete CUDA install).
fn open() -> &'static Option<String> {
    PROBLEM.get_or_init(|| {
        // A libtorch call first, so that libtorch_cpu.so is mapped and initialised.
        let _ = tch::get_num_threads();
        let lib = format!("{}/libtorch_cuda.so", libtorch_dir()?);
        if !std::path::Path::new(&lib).exists() {
            return None;
        }
        let c = CString::new(lib.clone()).ok()?;
        // RTLD_GLOBAL: libtorch finds the CUDA hooks the library registers by name.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !h.is_null() {
            return None;
        }
        let e = unsafe { libc::dlerror() };
        let why = if e.is_null() { "unknown error".into() } else { unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned() };
        Some(format!("{lib}: {why}"))
    })
}

pub fn available() -> bool {
    open();
    tch::Cuda::is_available()
}

pub fn device_count() -> usize {
    open();
    tch::Cuda::device_count().max(0) as usize
}

/// For diagnostics: why CUDA is off although libtorch_cuda.so is there, if it is.
pub fn problem() -> Option<&'static str> {
    open().as_deref()
}

#[cfg(test)]
mod tests {
    /// The backend is looked for beside the libtorch this process runs on, wherever that is.
    #[test]
    fn libtorch_is_found_where_it_is_loaded() {
        let _ = tch::get_num_threads();
        let dir = super::libtorch_dir().expect("libtorch_cpu.so is mapped");
        assert!(std::path::Path::new(&dir).join("libtorch_cpu.so").exists(), "{dir}");
        // Without CUDA's libraries (CI's libtorch has no libtorch_cuda.so) there is no problem
        // to report, and CUDA is off.
        if !std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            assert_eq!(super::problem(), None);
            assert!(!super::available());
        }
    }
}
