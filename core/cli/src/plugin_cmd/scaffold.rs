//! `pulse plugin new`: a plugin crate that builds, loads and passes its test from the start. Its
//! `src/lib.rs` is one of the example plugins in `plugins/examples/` (compiled and tested with
//! the workspace, so the scaffold cannot rot) with the type renamed; its `Cargo.toml` depends
//! on the pulse-api of the checkout this pulse was built from.

use std::path::{Path, PathBuf};

/// Plugin families a crate can be scaffolded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FamilyArg {
    Loss,
    Recommender,
    Dataset,
}

/// One family's template: the example's source and the type name it declares.
struct Template {
    source: &'static str,
    type_name: &'static str,
    example_dir: &'static str,
}

fn template(family: FamilyArg) -> Template {
    match family {
        FamilyArg::Loss => Template {
            source: include_str!("../../../../plugins/examples/loss-hinge/src/lib.rs"),
            type_name: "hinge",
            example_dir: "plugins/examples/loss-hinge",
        },
        FamilyArg::Recommender => Template {
            source: include_str!("../../../../plugins/examples/rec-markov/src/lib.rs"),
            type_name: "markov",
            example_dir: "plugins/examples/rec-markov",
        },
        FamilyArg::Dataset => Template {
            source: include_str!("../../../../plugins/examples/dataset-csv/src/lib.rs"),
            type_name: "csv",
            example_dir: "plugins/examples/dataset-csv",
        },
    }
}

/// Why a name cannot be a plugin crate and type name, if it cannot.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' cannot name a plugin: use lowercase letters, digits and dashes, starting \
             with a letter (it becomes the crate name and the `type = \"…\"` of the plugin)"
        ))
    }
}

/// The scaffold's `src/lib.rs`: the example with its type renamed to `name`.
pub fn lib_rs(family: FamilyArg, name: &str) -> Result<String, String> {
    let t = template(family);
    let decl = format!("const TYPE: &'static str = \"{}\";", t.type_name);
    if t.source.matches(&decl).count() != 1 {
        return Err(format!(
            "the {} template declares its type more than once or not at all (a bug in pulse)",
            t.example_dir
        ));
    }
    let body = t
        .source
        .replacen(&decl, &format!("const TYPE: &'static str = \"{name}\";"), 1);
    // The example's doc line on scaffolding becomes a note on where the crate came from.
    let note = format!(
        "//! Scaffolded by `pulse plugin new` from pulse's `{}` example ({}): the\n\
         //! type is named `{name}`; rename the structs and rewrite the rest freely.",
        t.type_name, t.example_dir
    );
    let mut out: String = body
        .lines()
        .map(|l| {
            if l.starts_with("//! `pulse plugin new NAME") {
                note.clone()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    Ok(out)
}

/// The scaffold's `Cargo.toml`.
pub fn cargo_toml(name: &str, api: &Path) -> String {
    let dep = if api.join("Cargo.toml").is_file() {
        format!("pulse-api = {{ path = {:?} }}", api.display().to_string())
    } else {
        format!(
            "# This pulse was built from {}, which is gone: point this at a pulse checkout.\n\
             pulse-api = {{ path = \"PULSE_CHECKOUT/core/api\" }}",
            api.display()
        )
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

# A dynamic pulse plugin: `cdylib` is the library pulse loads, `rlib` lets the tests link it.
[lib]
crate-type = ["cdylib", "rlib"]

# A plugin depends on pulse-api only (candle, polars and serde come re-exported from it).
# Build it with `pulse plugin build .`: the same compiler, profile and dependency versions as
# the pulse that loads it, or that pulse refuses it.
[dependencies]
{dep}

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#
    )
}

/// The library file `cargo build` makes for crate `name`.
pub fn library_file(name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Writes the crate into `dir` (which must not exist or be empty); returns the files written.
pub fn write(
    dir: &Path,
    name: &str,
    family: FamilyArg,
    api: &Path,
) -> Result<Vec<PathBuf>, String> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(format!(
            "{} already exists and is not empty; choose another --path",
            dir.display()
        ));
    }
    let files = [
        (dir.join("Cargo.toml"), cargo_toml(name, api)),
        (dir.join("src").join("lib.rs"), lib_rs(family, name)?),
        (dir.join(".gitignore"), "/target\n".to_string()),
    ];
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, ok: bool) {
        assert_eq!(check_name(name).is_ok(), ok, "{name}");
    }

    #[test]
    fn names_are_crate_and_type_names() {
        check("my-loss", true);
        check("sasrec2", true);
        check("My-loss", false);
        check("2fast", false);
        check("trailing-", false);
        check("under_score", false);
        check("", false);
    }

    #[test]
    fn each_template_is_its_example_with_the_type_renamed() {
        for (family, example, ty) in [
            (FamilyArg::Loss, "loss-hinge", "hinge"),
            (FamilyArg::Recommender, "rec-markov", "markov"),
            (FamilyArg::Dataset, "dataset-csv", "csv"),
        ] {
            let text = lib_rs(family, "my-thing").unwrap();
            assert!(
                text.contains("const TYPE: &'static str = \"my-thing\";"),
                "{example}"
            );
            // The tests refer to the type through `TYPE`, so they pass under the new name.
            assert!(
                !text.contains(&format!("\"{ty}\"")),
                "{example} quotes its type"
            );
            assert!(text.contains(&format!(
                "Scaffolded by `pulse plugin new` from pulse's `{ty}`"
            )));
            assert!(!text.contains("pulse plugin new NAME"), "{example}: {text}");
            assert!(
                text.contains("pulse_api::export_plugin!(register);"),
                "{example}"
            );
            assert!(text.contains("#[cfg(test)]"), "{example} has tests");
            // Only the type line and the doc note differ from the example.
            let original = template(family).source;
            let same = text.lines().filter(|l| original.contains(*l)).count();
            assert!(text.lines().count() - same <= 4, "{example}");
        }
    }

    #[test]
    fn cargo_toml_points_at_this_pulse_api() {
        let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api");
        let text = cargo_toml("my-loss", &api);
        assert!(text.contains("name = \"my-loss\""));
        assert!(text.contains(&format!(
            "pulse-api = {{ path = {:?} }}",
            api.display().to_string()
        )));
        assert!(text.contains("crate-type = [\"cdylib\", \"rlib\"]"));
        assert!(text.contains("\n[workspace]\n"));
        let gone = cargo_toml("x", Path::new("/nonexistent/core/api"));
        assert!(gone.contains("PULSE_CHECKOUT/core/api"));
        assert_eq!(library_file("my-loss"), "libmy_loss.so");
    }

    #[test]
    fn writes_a_crate_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("pulse-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api");
        let files = write(&dir, "my-rec", FamilyArg::Recommender, &api).unwrap();
        assert_eq!(files.len(), 3);
        assert!(std::fs::read_to_string(dir.join("src/lib.rs"))
            .unwrap()
            .contains("\"my-rec\""));
        let err = write(&dir, "my-rec", FamilyArg::Recommender, &api).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
