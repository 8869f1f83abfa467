//! Dynamic plugins: loading a plugin library (a `cdylib` built with
//! `pulse_api::export_plugin!`) into a [`Registry`], and finding libraries on
//! `PULSE_PLUGIN_PATH`. Every way a library can be unusable is a [`LoadError`] with a message
//! and a fix, never a crash: a missing or truncated file, a file `dlopen` rejects (its own
//! `dlerror` text), a library without the entry point, a library built by another compiler or
//! against another `pulse-api` (both fingerprints shown, nothing of it run), a panicking
//! register function, or a plugin name that is already taken.

use crate::{elf, ffi, Registry, RegistryError};
use pulse_api::abi::{self, ENTRY_SYMBOL, REGISTER_OK, REGISTER_PANICKED};
use pulse_api::{Family, Registrar};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The environment variable listing directories whose `lib*.so` files are loaded.
pub const PLUGIN_PATH_VAR: &str = "PULSE_PLUGIN_PATH";

/// The command that rebuilds a plugin so that its fingerprint matches this pulse.
const REBUILD: &str = "pulse plugin build PLUGIN_CRATE_DIR";

/// A library whose plugins were added to a registry.
#[derive(Debug, Clone)]
pub struct LoadedLibrary {
    /// As given (the origin shown by `pulse list`).
    pub path: PathBuf,
    /// Package name and version of the plugin crate.
    pub name: String,
    pub version: String,
    /// The plugins it registered.
    pub plugins: Vec<(Family, String)>,
    /// Wall time of open + check + register, in milliseconds.
    pub load_ms: f64,
}

/// Why a library could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("plugin library {} does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("cannot read plugin library {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to load {}: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot load {}: {dlerror}", .path.display())]
    Open { path: PathBuf, dlerror: String },
    #[error("{} is not a pulse plugin: {dlerror}", .path.display())]
    NoEntry { path: PathBuf, dlerror: String },
    #[error("{} is not a pulse plugin: {why}", .path.display())]
    BadDeclaration { path: PathBuf, why: String },
    #[error("{0}")]
    Fingerprint(Box<Mismatch>),
    #[error(
        "{} has no symbol table, which pulse needs to keep the library's tensor ids apart from \
         its own",
        .path.display()
    )]
    Stripped { path: PathBuf },
    #[error("{} ({name}): its register function panicked (message above)", .path.display())]
    Panicked { path: PathBuf, name: String },
    #[error("{}: {source}", .path.display())]
    Duplicate {
        path: PathBuf,
        source: RegistryError,
    },
}

/// A library built for another ABI: what it and this pulse declare.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{} ({name} {version}) was built for a different pulse ABI and is refused (using it could \
     corrupt memory)\n  plugin: {plugin}\n  pulse:  {host}\n  differs in: {differs}",
    .path.display()
)]
pub struct Mismatch {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    /// The library's fingerprint and this pulse's, as shown.
    pub plugin: String,
    pub host: String,
    /// Which parts differ, in words.
    pub differs: String,
}

impl LoadError {
    /// How to fix it.
    pub fn help(&self) -> String {
        match self {
            LoadError::Missing { .. } => format!(
                "build the plugin with `{REBUILD}` and give the path it prints (a relative path \
                 is relative to the spec file that names it)"
            ),
            LoadError::Unreadable { .. } => "check the file's permissions".into(),
            LoadError::Corrupt { .. } | LoadError::Open { .. } => {
                format!("rebuild the plugin with `{REBUILD}`")
            }
            LoadError::NoEntry { .. } | LoadError::BadDeclaration { .. } => format!(
                "a plugin crate has crate-type = [\"cdylib\"] and calls \
                 `pulse_api::export_plugin!(register)`, which exports `{ENTRY_SYMBOL}`"
            ),
            LoadError::Fingerprint(_) => format!(
                "rebuild the plugin against this pulse with `{REBUILD}` (same compiler, same \
                 pulse-api source, same dependency versions)"
            ),
            LoadError::Stripped { .. } => format!(
                "build it without `strip = true` or `strip = \"symbols\"` in its profile \
                 (`{REBUILD}` keeps the symbols unless the crate's profile strips them)"
            ),
            LoadError::Panicked { .. } => "fix the plugin's register function".into(),
            LoadError::Duplicate { .. } => {
                "rename the plugin's type in its config (PluginConfig::TYPE), or load only one of \
                 the two libraries"
                    .into()
            }
        }
    }
}

impl Registry {
    /// Loads the plugin library at `path` and adds its plugins. The library stays loaded for
    /// the life of the process, whatever the outcome; nothing is added on error.
    pub fn load_library(&mut self, path: &Path) -> Result<LoadedLibrary, LoadError> {
        let started = Instant::now();
        let p = || path.to_path_buf();
        let canonical = std::fs::canonicalize(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::Missing { path: p() },
            _ => LoadError::Unreadable {
                path: p(),
                source: e,
            },
        })?;
        let mut file = std::fs::File::open(&canonical).map_err(|e| LoadError::Unreadable {
            path: p(),
            source: e,
        })?;
        let len = file
            .metadata()
            .map_err(|e| LoadError::Unreadable {
                path: p(),
                source: e,
            })?
            .len();
        elf::preflight(&mut file, len)
            .map_err(|reason| LoadError::Corrupt { path: p(), reason })?;
        drop(file);

        let (lib, index) =
            ffi::open(&canonical).map_err(|dlerror| LoadError::Open { path: p(), dlerror })?;
        let decl = ffi::declaration(lib).map_err(|e| match e {
            ffi::DeclarationError::NoEntry(dlerror) => LoadError::NoEntry { path: p(), dlerror },
            ffi::DeclarationError::Null => LoadError::BadDeclaration {
                path: p(),
                why: format!("`{ENTRY_SYMBOL}` returned a null declaration"),
            },
            ffi::DeclarationError::Version(v) => LoadError::BadDeclaration {
                path: p(),
                why: format!(
                    "its declaration has layout version {v}; this pulse reads version {}",
                    abi::DECLARATION_VERSION
                ),
            },
        })?;
        if !decl.matches_host() {
            let plugin = abi::show(&decl.fingerprint, decl.layout);
            let host = abi::host_fingerprint();
            return Err(LoadError::Fingerprint(Box::new(Mismatch {
                path: p(),
                name: decl.name,
                version: decl.plugin_version,
                differs: differences(&plugin, &host),
                plugin,
                host,
            })));
        }

        // Only now is anything of the library touched beyond its declaration.
        let mut file = std::fs::File::open(&canonical).map_err(|e| LoadError::Unreadable {
            path: p(),
            source: e,
        })?;
        match elf::tensor_counter(&mut file, ENTRY_SYMBOL) {
            Ok(elf::Counter::At { entry, counter }) => {
                ffi::move_tensor_counter(lib, index, entry, counter)
                    .map_err(|reason| LoadError::Corrupt { path: p(), reason })?
            }
            Ok(elf::Counter::Absent) => {}
            Ok(elf::Counter::Unknown) => return Err(LoadError::Stripped { path: p() }),
            Err(reason) => return Err(LoadError::Corrupt { path: p(), reason }),
        }

        let origin = path.display().to_string();
        let mut registrar = Registrar::for_library(origin.clone());
        match ffi::register(&decl, &mut registrar) {
            Some(REGISTER_OK) => {}
            Some(REGISTER_PANICKED) => {
                return Err(LoadError::Panicked {
                    path: p(),
                    name: decl.name,
                })
            }
            other => {
                return Err(LoadError::BadDeclaration {
                    path: p(),
                    why: format!("its register function failed ({other:?})"),
                })
            }
        }
        self.add(registrar)
            .map_err(|source| LoadError::Duplicate { path: p(), source })?;
        let plugins = self
            .infos(None)
            .into_iter()
            .filter(|i| i.origin == origin)
            .map(|i| (i.family, i.type_name.clone()))
            .collect();
        Ok(LoadedLibrary {
            path: p(),
            name: decl.name,
            version: decl.plugin_version,
            plugins,
            load_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// Which parts of two fingerprints (`a | b | …`) differ, by the name of the part.
fn differences(plugin: &str, host: &str) -> String {
    let names = [
        "compiler",
        "pulse-api version or source",
        "target",
        "dependency versions",
        "type layouts",
    ];
    let a: Vec<&str> = plugin.split(" | ").collect();
    let b: Vec<&str> = host.split(" | ").collect();
    let mut out: Vec<String> = Vec::new();
    for i in 0..a.len().max(b.len()) {
        if a.get(i) != b.get(i) {
            out.push(
                names
                    .get(i)
                    .map_or_else(|| format!("part {i}"), |n| n.to_string()),
            );
        }
    }
    if out.is_empty() {
        "format".into()
    } else {
        out.join(", ")
    }
}

/// The plugin libraries (`lib*.so`, sorted) in each directory of a `PULSE_PLUGIN_PATH`-style
/// list, plus one warning per directory that cannot be read.
pub fn scan_plugin_path(list: &OsStr) -> (Vec<PathBuf>, Vec<String>) {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let mut libs = Vec::new();
    let mut warnings = Vec::new();
    for dir in std::env::split_paths(list).filter(|d| !d.as_os_str().is_empty()) {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                warnings.push(format!(
                    "{PLUGIN_PATH_VAR}: cannot read directory {}: {e}",
                    dir.display()
                ));
                continue;
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(OsStr::to_str)
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                    && p.is_file()
            })
            .collect();
        found.sort();
        libs.extend(found);
    }
    (libs, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::Catalog;

    #[track_caller]
    fn check_diff(plugin: &str, host: &str, expected: &str) {
        assert_eq!(differences(plugin, host), expected);
    }

    #[test]
    fn fingerprint_differences_are_named() {
        let host =
            "rustc 1.95.0 | pulse-api 0.1.0 surface aa | x86_64 | candle-core 0.11.1 | layout 1";
        check_diff(
            &host.replace("surface aa", "surface bb"),
            host,
            "pulse-api version or source",
        );
        check_diff(
            &host
                .replace("1.95.0", "1.94.0")
                .replace("layout 1", "layout 2"),
            host,
            "compiler, type layouts",
        );
        check_diff(
            "garbage",
            host,
            "compiler, pulse-api version or source, target, dependency versions, type layouts",
        );
    }

    #[test]
    fn plugin_path_lists_libraries_of_each_directory() {
        let dir = std::env::temp_dir().join(format!("pulse-scan-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for f in [
            a.join("libz.so"),
            a.join("liba.so"),
            a.join("notes.txt"),
            b.join("libc.so"),
        ] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir_all(a.join("libdir.so")).unwrap();
        let list = std::env::join_paths([&a, &dir.join("missing"), &b]).unwrap();
        let (libs, warnings) = scan_plugin_path(&list);
        assert_eq!(
            libs,
            vec![a.join("liba.so"), a.join("libz.so"), b.join("libc.so")]
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("missing"), "{warnings:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A library built with this test (a dev-dependency): `target/<profile>/deps/lib*.so`.
    fn built(crate_name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let p = exe.with_file_name(format!("lib{}.so", crate_name.replace('-', "_")));
        assert!(p.is_file(), "{} missing (a dev-dependency)", p.display());
        p
    }

    /// The real thing in this process: the plugin's loss computes on the host's tensors, its
    /// objects (allocated by the plugin) are dropped by the host, and it can be loaded into a
    /// second registry.
    #[test]
    fn a_plugin_library_adds_working_plugins() {
        use pulse_api::candle_core::{Device, Var};
        let path = built("loss-hinge");
        for _ in 0..2 {
            let mut reg = crate::default_registry();
            let lib = reg.load_library(&path).unwrap();
            assert_eq!(
                (lib.name.as_str(), lib.version.as_str()),
                ("loss-hinge", "0.1.0")
            );
            assert_eq!(lib.plugins, vec![(Family::Loss, "hinge".to_string())]);
            assert_eq!(
                reg.info(Family::Loss, "hinge").unwrap().origin,
                path.display().to_string()
            );
            let loss = pulse_api::LossBuilder::build_loss(
                &reg,
                &serde_json::json!({"type": "hinge", "margin": 0.5, "negatives": 2}),
            )
            .unwrap();
            // Host variables, a loss computed by the library, gradients by the host's autograd.
            let pos = Var::new(&[1.0f32, 5.0], &Device::Cpu).unwrap();
            let neg = Var::new(&[[1.0f32, 3.0], [0.0, 0.0]], &Device::Cpu).unwrap();
            let out = loss.sampled(pos.as_tensor(), neg.as_tensor()).unwrap();
            let v: f32 = out.to_scalar().unwrap();
            // 0.5 - (1 - 1) = 0.5, 0.5 - (1 - 3) = 2.5, the second row costs nothing: 3 / 4
            assert!((v - 0.75).abs() < 1e-6, "{v}");
            let grads = out.backward().unwrap();
            assert_eq!(
                grads.get(&pos).unwrap().to_vec1::<f32>().unwrap(),
                [-0.5, 0.0]
            );
            let gn = grads.get(&neg).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(gn, [[0.25, 0.25], [0.0, 0.0]]);
            // The library made `out`: its id is from the library's own range, far above ours.
            let id: usize = format!("{:?}", out.id())
                .trim_start_matches("TensorId(")
                .trim_end_matches(')')
                .parse()
                .unwrap();
            assert!(id > 1 << 48, "{id}");
            let err = reg
                .check(
                    Family::Loss,
                    &serde_json::json!({"type": "hinge", "margin": "x"}),
                )
                .unwrap_err();
            assert_eq!(err[0].dotted(), "margin");
        }
    }

    #[test]
    fn refused_libraries_add_nothing_and_run_nothing() {
        let mut reg = crate::default_registry();
        let before = reg.infos(None).len();
        // Its register function aborts the process: reaching it fails this test loudly.
        let err = reg.load_library(&built("fixture-stale-api")).unwrap_err();
        let LoadError::Fingerprint(m) = &err else {
            panic!("{err}")
        };
        let Mismatch {
            plugin,
            host,
            differs,
            ..
        } = &**m;
        assert_eq!(differs, "pulse-api version or source");
        assert_eq!(host, &abi::host_fingerprint());
        assert!(!plugin.contains(abi::SURFACE), "{plugin}");
        assert_eq!(
            plugin.replace(fixture_stale_surface(plugin), abi::SURFACE),
            *host
        );

        let err = reg.load_library(&built("fixture-clash-bpr")).unwrap_err();
        assert!(err.to_string().contains("loss plugin 'bpr' from"), "{err}");
        assert!(
            err.to_string()
                .contains("clashes with the one from built-in"),
            "{err}"
        );
        assert_eq!(reg.infos(None).len(), before);
    }

    /// Without a symbol table the library's tensor id counter cannot be moved: refused.
    #[test]
    fn a_library_without_symbols_is_refused() {
        let mut bytes = std::fs::read(built("loss-hinge")).unwrap();
        let mut file = std::io::Cursor::new(&bytes);
        let found = elf::tensor_counter(&mut file, ENTRY_SYMBOL).unwrap();
        assert!(matches!(found, elf::Counter::At { .. }), "{found:?}");
        // No section headers: what `strip` leaves of the symbol table, as far as we look.
        bytes[0x3c..0x3e].copy_from_slice(&0u16.to_ne_bytes());
        let path = std::env::temp_dir().join(format!("libstripped-{}.so", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let err = Registry::default().load_library(&path).unwrap_err();
        assert!(matches!(err, LoadError::Stripped { .. }), "{err}");
        assert!(err.help().contains("strip"), "{}", err.help());
        std::fs::remove_file(&path).unwrap();
    }

    /// The surface hash inside a fingerprint text.
    fn fixture_stale_surface(fp: &str) -> &str {
        let at = fp.find(" surface ").unwrap() + " surface ".len();
        &fp[at..at + 16]
    }

    /// A panic in plugin code cannot be caught by the host's std; the guard catches it on the
    /// plugin's side and the host gets an error.
    #[test]
    fn a_panicking_plugin_gives_an_error_not_an_abort() {
        use pulse_api::candle_core::{Device, Tensor};
        let mut reg = Registry::default();
        reg.load_library(&built("fixture-clash-bpr")).unwrap();
        let loss =
            pulse_api::LossBuilder::build_loss(&reg, &serde_json::json!({"type": "bpr"})).unwrap();
        let t = Tensor::zeros(1, pulse_api::candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = loss.sampled(&t, &t).unwrap_err().to_string();
        assert_eq!(
            err,
            "panicked in Loss::sampled: fixture-clash-bpr panics on purpose"
        );
    }

    #[test]
    fn missing_and_non_library_files_are_clear_errors() {
        let mut reg = crate::default_registry();
        let err = reg
            .load_library(Path::new("/nonexistent/libnope.so"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin library /nonexistent/libnope.so does not exist"
        );
        assert!(err.help().contains("pulse plugin build"));

        let f = std::env::temp_dir().join(format!("pulse-notelf-{}.so", std::process::id()));
        std::fs::write(&f, b"this is a text file, not a library").unwrap();
        let err = reg.load_library(&f).unwrap_err().to_string();
        assert!(err.starts_with("cannot load "), "{err}");
        assert!(
            err.contains("invalid ELF header") || err.contains("file too short"),
            "{err}"
        );
        std::fs::remove_file(&f).unwrap();
    }
}
