//! Computes the ABI fingerprint that every dynamic plugin carries and the host checks before
//! using it (see `src/abi.rs`). It reruns when pulse-api's source changes, so any edit to the
//! contract changes the fingerprint.

include!("fingerprint.rs");

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=fingerprint.rs");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = std::path::Path::new(&manifest);
    let sources = read_sources(&dir.join("src")).unwrap_or_default();
    let mut files = sources;
    if let Ok(toml) = std::fs::read_to_string(dir.join("Cargo.toml")) {
        files.push(("Cargo.toml".into(), toml.replace("\r\n", "\n")));
    }
    let surface = surface_hash(&files);
    let deps = match find_lockfile().and_then(|p| std::fs::read_to_string(p).ok()) {
        Some(lock) => locked_versions(&lock, BOUNDARY_CRATES),
        None => {
            println!("cargo:warning=no Cargo.lock found; the plugin fingerprint omits dependency versions");
            locked_versions("", BOUNDARY_CRATES)
        }
    };
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown-target".into());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let fp = compose(&rustc_version(), &version, &surface, &target, &deps);
    println!("cargo:rustc-env=PULSE_API_SURFACE={surface}");
    println!("cargo:rustc-env=PULSE_API_FINGERPRINT={fp}");
}
