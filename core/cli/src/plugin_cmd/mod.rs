//! `pulse plugin new|build|list` — dynamic plugins from the command line — and the loading of
//! plugin libraries for the other commands (`load`). A dynamic plugin is a crate of its own,
//! built as a shared library and loaded by a pulse that was built before it; the registry's
//! loader refuses any library whose ABI fingerprint differs from this build's.

pub mod compile;
pub mod load;
pub mod scaffold;

use crate::exit;
use anyhow::Result;
use clap::Subcommand;
use pulse_registry::Registry;
use pulse_spec::SpecOptions;
use std::path::PathBuf;

/// `pulse plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Create a plugin crate with a working example and a test.
    ///
    /// The crate depends on pulse-api only; build it with `pulse plugin build DIR` and load it
    /// with `[plugins] load = ["…/libNAME.so"]` in a spec, or put the library in a
    /// PULSE_PLUGIN_PATH directory.
    New {
        /// Crate and plugin type name (lowercase letters, digits, dashes), e.g. `my-loss`.
        name: String,
        /// What the example plugin is.
        #[arg(long, value_enum)]
        family: scaffold::FamilyArg,
        /// Directory to create [default: ./NAME].
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Build a plugin crate the way this pulse was built (compiler, profile, dependency
    /// versions), then check that it loads.
    Build {
        /// The plugin crate's directory.
        path: PathBuf,
        /// Extra arguments for cargo, after `--` (e.g. `-- --target-dir /tmp/t`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// List plugins with their origin: built-in, PULSE_PLUGIN_PATH libraries, and with --spec
    /// the libraries that spec loads; each library's load time or why it was refused.
    List {
        /// Also load the libraries in this spec's `[plugins] load`.
        #[arg(long)]
        spec: Option<PathBuf>,
    },
}

pub fn run(action: &PluginAction, registry: &mut Registry) -> Result<u8> {
    match action {
        PluginAction::New { name, family, path } => new(name, *family, path.as_ref()),
        PluginAction::Build { path, cargo_args } => build(path, cargo_args),
        PluginAction::List { spec } => list(registry, spec.as_ref()),
    }
}

fn new(name: &str, family: scaffold::FamilyArg, path: Option<&PathBuf>) -> Result<u8> {
    let dir = path.cloned().unwrap_or_else(|| PathBuf::from(name));
    let api = PathBuf::from(env!("PULSE_SOURCE_DIR"))
        .join("core")
        .join("api");
    match scaffold::write(&dir, name, family, &api) {
        Ok(files) => {
            for f in files {
                println!("created {}", f.display());
            }
            let lib = scaffold::library_file(name);
            let profile = compile::BUILD_PROFILE;
            println!(
                "\nNext:\n  pulse plugin build {d}\n  then load it in a spec:  [plugins] load = [\"{d}/target/{profile}/{lib}\"]\n  or put {lib} in a directory listed in PULSE_PLUGIN_PATH",
                d = dir.display()
            );
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(exit::INVALID)
        }
    }
}

fn build(path: &std::path::Path, cargo_args: &[String]) -> Result<u8> {
    let lib = match compile::build(path, cargo_args) {
        Ok(lib) => lib,
        Err(e) => {
            let (msg, code) = match e {
                compile::BuildError::Usage(m) => (m, exit::INVALID),
                compile::BuildError::Environment(m) => (m, exit::INTERNAL),
                compile::BuildError::Failed(m) => (m, exit::RUN_FAILED),
            };
            eprintln!("error: {msg}");
            return Ok(code);
        }
    };
    // Loaded here, in a throwaway registry, to show that this pulse accepts it.
    let mut registry = pulse_registry::default_registry();
    match registry.load_library(&lib) {
        Ok(loaded) => {
            println!("built {}", lib.display());
            println!(
                "  {} {}: {} (loads in {:.1} ms)",
                loaded.name,
                loaded.version,
                load::names(&loaded),
                loaded.load_ms
            );
            println!(
                "\nLoad it in a spec:  [plugins] load = [\"{}\"]\nor add its directory to PULSE_PLUGIN_PATH.",
                lib.display()
            );
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {e}\n  help: {}", e.help());
            Ok(exit::INVALID)
        }
    }
}

fn list(registry: &mut Registry, spec: Option<&PathBuf>) -> Result<u8> {
    let (mut requests, warnings) = load::from_env();
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if let Some(spec) = spec {
        let opts = SpecOptions {
            sets: Vec::new(),
            use_env: true,
        };
        match pulse_spec::load(spec, &opts) {
            Ok(s) => requests.extend(load::from_spec(&s)),
            Err(d) => {
                eprintln!("{d}");
                return Ok(exit::INVALID);
            }
        }
    }
    let outcome = load::load(registry, requests);
    if !outcome.loaded.is_empty() || !outcome.failed.is_empty() {
        println!("libraries:");
        for lib in &outcome.loaded {
            println!(
                "  {}  {} {}  loaded in {:.1} ms: {}",
                lib.path.display(),
                lib.name,
                lib.version,
                lib.load_ms,
                load::names(lib)
            );
        }
        for (r, e) in &outcome.failed {
            println!("  {}  REFUSED ({}): {e}", r.path.display(), r.location);
        }
        println!();
    }
    let mut current = None;
    for info in registry.infos(None) {
        if current != Some(info.family) {
            println!("{}:", info.family);
            current = Some(info.family);
        }
        println!("  {:<16} {}", info.type_name, info.origin);
    }
    if outcome.failed.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!("{} librar(y/ies) refused; see above.", outcome.failed.len());
        Ok(exit::INVALID)
    }
}
