//! Records how this pulse was built — compiler, profile, source checkout — so that
//! `pulse plugin build` can build plugins the same way (their ABI fingerprint must match) and
//! `pulse plugin new` can point new plugin crates at this pulse-api.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc unknown".into());
    println!("cargo:rustc-env=PULSE_BUILD_RUSTC={version}");
    // "release" or "debug" (cargo's name for the dev profile's output directory).
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "release".into());
    println!("cargo:rustc-env=PULSE_BUILD_PROFILE={profile}");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = std::path::Path::new(&manifest).join("../..");
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    println!("cargo:rustc-env=PULSE_SOURCE_DIR={}", root.display());
}
