//! Adds glibc's version nodes to the link of `libflexsc.so` (see `src/versions.rs`).

fn main() {
    let map = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("glibc-versions.map");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
    println!("cargo:rerun-if-changed=glibc-versions.map");
}
