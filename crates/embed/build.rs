// Bakes libtorch's folder into the run path of what links it (vs_embed's tests, vs_train, the
// engine library; never the extension's main library), so that a server started without
// LD_LIBRARY_PATH (and any test binary) finds libtorch_cpu.so. A build.rs survives a RUSTFLAGS
// override, which .cargo/config.toml rustflags would not.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch = std::env::var("LIBTORCH").unwrap_or_else(|_| "/opt/visual_search/libtorch-2.11.0".into());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
}
