//! The text-stage CLI: the backbone and prompt families in `pulse list` / `pulse example`, and
//! `pulse validate` pointing at the template line that reads a field the data set lacks.

use super::{pulse, stdout};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SPEC: &str = r#"[datasets.syn]
type = "synthetic"
users = 30
items = 20
interactions_per_user = 10

[models.pop]
type = "pop"

[backbones.slm]
type = "gguf"
model = "smollm2-135m-instruct"

[rationales]
backbone = "slm"
prompt = "why"
"#;

#[test]
fn backbone_and_prompt_families_are_listed() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(store.path(), &["list", "backbone"]);
    let text = stdout(&out);
    for t in ["gguf", "bert", "openai"] {
        assert!(text.contains(t), "{text}");
    }
    let out = pulse(store.path(), &["example", "prompt", "template"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("[prompts.template]\ntype = \"template\""),
        "{}",
        stdout(&out)
    );
}

/// Validates `SPEC` plus `prompt` (and files) and checks the exit code and the diagnostics.
#[track_caller]
fn check(prompt: &str, files: &[(&str, &str)], expected: Result<(), &[&str]>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let spec = dir.path().join("s.toml");
    std::fs::write(&spec, format!("{SPEC}\n{prompt}")).unwrap();
    let out = pulse(dir.path(), &["validate", spec.to_str().unwrap()]);
    let err = stderr(&out).replace(&format!("{}/", dir.path().display()), "");
    match expected {
        Ok(()) => assert!(out.status.success(), "{err}"),
        Err(wants) => {
            assert_eq!(out.status.code(), Some(2), "{err}");
            for w in wants {
                assert!(err.contains(w), "missing {w:?} in:\n{err}");
            }
        }
    }
}

#[test]
fn templates_reading_missing_fields_are_located() {
    check("[prompts.why]\ntype = \"pulse-rationale\"\n", &[], Ok(()));
    check(
        "[prompts.why]\ntype = \"template\"\ntext = \"\"\"\n{% for it in history %}{{ it.title }}{% endfor %}\n{{ item.director }}\"\"\"\n",
        &[],
        Err(&["s.toml:22:", "prompts.why.text for data set 'syn'", "undefined value", "genre"]),
    );
    check(
        "[prompts.why]\ntype = \"template\"\nfile = \"why.j2\"\n",
        &[("why.j2", "{{ item.title }}\n\n{{ item.rating }}\n")],
        Err(&["why.j2:3:1", "prompts.why.file"]),
    );
    check(
        "[prompts.why]\ntype = \"template\"\nfile = \"why.j2\"\n",
        &[("why.j2", "{{ item.title }} ({{ item.genres }})")],
        Ok(()),
    );
}
