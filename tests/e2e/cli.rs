//! The binary's user-facing surface: help, plugin listing and examples, and the bad-spec corpus
//! (every malformed spec is rejected with a located diagnostic and exit code 2, never a panic).

use crate::{pulse, root, stderr, stdout};

#[test]
fn help_explains_commands_and_exit_codes() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(store.path(), &["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for word in [
        "run",
        "validate",
        "plan",
        "list",
        "example",
        "runs",
        "compare",
        "Exit codes",
        "PULSE_HOME",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn every_example_is_a_valid_spec_section() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(store.path(), &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    for t in [
        "recbole-atomic",
        "synthetic",
        "pop",
        "bpr-mf",
        "sasrec",
        "ce",
        "bpr",
        "bce",
    ] {
        assert!(listing.contains(t), "pulse list lacks {t}:\n{listing}");
    }
    // An example pasted into a spec validates as it is.
    let dir = tempfile::tempdir().unwrap();
    for (family, ty) in [
        ("recommender", "sasrec"),
        ("recommender", "bpr-mf"),
        ("dataset", "synthetic"),
    ] {
        let out = pulse(store.path(), &["example", family, ty]);
        assert!(out.status.success(), "{}", stderr(&out));
        let section = stdout(&out);
        let mut spec = String::from("[experiment]\nname = \"ex\"\n");
        if family != "dataset" {
            spec.push_str("[datasets.d]\ntype = \"synthetic\"\n");
        } else {
            spec.push_str("[models.m]\ntype = \"pop\"\n");
        }
        spec.push_str(&section);
        let path = dir.path().join(format!("{ty}.toml"));
        std::fs::write(&path, &spec).unwrap();
        let out = pulse(store.path(), &["validate", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "example {ty} does not validate:\n{spec}\n{}",
            stderr(&out)
        );
    }
    let out = pulse(store.path(), &["example", "recommender", "sasrc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sasrec"), "{}", stderr(&out));
}

/// Every spec the repository ships (the README's commands run them) passes `pulse validate`.
#[test]
fn every_shipped_spec_validates() {
    let store = tempfile::tempdir().unwrap();
    let mut specs = Vec::new();
    let mut dirs = vec![root().join("experiments")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                specs.push(path);
            }
        }
    }
    specs.sort();
    assert!(specs.len() >= 10, "{specs:?}");
    for path in specs {
        let rel = path.strip_prefix(root()).unwrap().to_str().unwrap();
        let out = pulse(store.path(), &["validate", rel, "--no-env"]);
        assert!(
            out.status.success() && stdout(&out).contains(": ok"),
            "{rel}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn bad_specs_are_rejected_with_located_errors() {
    let store = tempfile::tempdir().unwrap();
    let dir = root().join("tests/specs/bad");
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", path.display()))
            .trim()
            .replace("\\n", "\n");
        let sets: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# set: "))
            .map(|s| s.trim().to_string())
            .collect();
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let mut args = vec!["validate".to_string(), rel, "--no-env".to_string()];
        for s in sets {
            args.push("--set".into());
            args.push(s);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pulse(store.path(), &args);
        let err = stderr(&out);
        cases += 1;
        if out.status.code() != Some(2) || !err.contains(&expect) {
            failures.push(format!(
                "{}: exit {:?}, expected '{expect}' in:\n{err}",
                path.display(),
                out.status.code()
            ));
        }
    }
    assert!(cases >= 25, "only {cases} bad-spec cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
