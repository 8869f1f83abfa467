//! The MLflow tracker against a real tracking server: a sweep logged live and read back through
//! the REST API (runs, nesting, tags, params, curves, artifacts) and through
//! `pulse compare --from mlflow`; a server killed mid-sweep and restarted, after which
//! `pulse sync` delivers the rest; answers lost after the server applied a request; an
//! unreachable server. Every check counts metric points on the server against the local store:
//! each point exactly once.

use crate::mlflow_server::{self as srv, Server};
use crate::{pulse, pulse_home, root, stderr, stdout};
use pulse_track::mlflow::proxy::{Faults, Proxy};
use pulse_track::mlflow::wire::sanitize_key;
use pulse_track::mlflow::SyncFile;
use pulse_track::StoreReader;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SPEC: &str = "tests/e2e/specs/mlflow_sweep.toml";
/// 4 sweep points × (pop, bpr-mf).
const RUNS: usize = 8;

fn run_args(uri: &str, experiment: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["run", SPEC, "--no-progress"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend([
        "--set".into(),
        format!("tracker.uri={uri}"),
        "--set".into(),
        format!("experiment.name={experiment}"),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// (key, step, timestamp, value bits) → count.
type Points = BTreeMap<(String, i64, i64, u64), usize>;

/// Checks that the server holds every metric point of every local run of `experiment`
/// exactly once (and nothing else); returns the number of points.
#[track_caller]
fn assert_exactly_once(uri: &str, store: &Path, experiment: &str) -> usize {
    let (local, problems) = StoreReader::new(store).runs(Some(experiment)).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(!local.is_empty(), "no local runs");
    let remote = srv::runs_of(uri, experiment);
    let mut total = 0;
    for run in &local {
        let matches: Vec<&Value> = remote
            .iter()
            .filter(|r| srv::tag(r, "pulse.run_id") == Some(run.info.run_id.as_str()))
            .collect();
        assert_eq!(matches.len(), 1, "MLflow runs for {}", run.info.run_id);
        let id = matches[0]["info"]["run_id"].as_str().unwrap();
        let mut want = Points::new();
        for m in &run.metrics {
            let k = (sanitize_key(&m.key), m.step, m.timestamp, m.value.to_bits());
            *want.entry(k).or_default() += 1;
        }
        let keys: std::collections::BTreeSet<String> = want.keys().map(|k| k.0.clone()).collect();
        let mut got = Points::new();
        for key in &keys {
            for p in srv::history(uri, id, key) {
                let k = (
                    key.clone(),
                    p["step"].as_i64().unwrap_or(0),
                    p["timestamp"].as_i64().unwrap(),
                    p["value"].as_f64().unwrap().to_bits(),
                );
                *got.entry(k).or_default() += 1;
            }
        }
        assert_eq!(got, want, "metric points of run {}", run.info.run_id);
        // No key on the server that the local store lacks.
        for m in matches[0]["data"]["metrics"].as_array().unwrap() {
            assert!(keys.contains(m["key"].as_str().unwrap()), "extra key {m}");
        }
        total += run.metrics.len();
    }
    total
}

/// Runs whose delivery record says they are complete on some server.
fn delivered(store: &Path, experiment: &str) -> usize {
    std::fs::read_dir(store.join(experiment))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    SyncFile::load(&e.path()).is_ok_and(|f| f.targets.values().any(|t| t.complete))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Runs whose delivery record is not complete for `uri`.
fn unsynced(store: &Path, experiment: &str, uri: &str) -> usize {
    let (runs, _) = StoreReader::new(store).runs(Some(experiment)).unwrap();
    runs.iter()
        .filter(|r| !SyncFile::load(&r.dir).unwrap().target(uri).complete)
        .count()
}

#[test]
fn sweep_is_logged_live_and_reads_back_the_same() {
    let uri = srv::shared_uri();
    let exp = srv::unique("e2e-live");
    let store = tempfile::tempdir().unwrap();
    let out = pulse(store.path(), &args(&run_args(&uri, &exp, &[])));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(unsynced(store.path(), &exp, &uri), 0);
    assert_eq!(
        StoreReader::new(store.path())
            .runs(Some(&exp))
            .unwrap()
            .0
            .len(),
        RUNS
    );
    let points = assert_exactly_once(&uri, store.path(), &exp);
    assert!(points > RUNS * 20, "{points} points");

    let runs = srv::runs_of(&uri, &exp);
    assert_eq!(runs.len(), RUNS + 1, "children and one sweep parent");
    let parent = runs
        .iter()
        .find(|r| srv::tag(r, "pulse.kind") == Some("sweep"))
        .expect("a sweep parent run");
    assert_eq!(parent["info"]["status"], "FINISHED");
    let parent_id = parent["info"]["run_id"].as_str().unwrap();
    let mut rates = std::collections::BTreeSet::new();
    for r in runs
        .iter()
        .filter(|r| srv::tag(r, "pulse.kind") == Some("run"))
    {
        assert_eq!(r["info"]["status"], "FINISHED", "{r}");
        assert_eq!(srv::tag(r, "mlflow.parentRunId"), Some(parent_id));
        for t in [
            "mlflow.runName",
            "mlflow.user",
            "pulse.trial_id",
            "pulse.seed",
        ] {
            assert!(srv::tag(r, t).is_some_and(|v| !v.is_empty()), "{t} in {r}");
        }
        assert_eq!(srv::tag(r, "pulse.dataset"), Some("synth"));
        let params = r["data"]["params"].as_array().unwrap();
        let param = |k: &str| {
            params
                .iter()
                .find(|p| p["key"] == k)
                .and_then(|p| p["value"].as_str())
                .map(str::to_string)
        };
        rates.insert(param("models.bpr-mf.learning_rate").expect("swept param"));
        assert_eq!(param("experiment.name").as_deref(), Some(exp.as_str()));
        let id = r["info"]["run_id"].as_str().unwrap();
        let files = srv::artifacts(&uri, id);
        for f in ["spec.json", "metrics.csv", "per_user_test.json"] {
            assert!(files.contains(&f.to_string()), "{f} not in {files:?}");
        }
        if srv::tag(r, "pulse.model") == Some("bpr-mf") {
            assert!(files.contains(&"best.safetensors".to_string()), "{files:?}");
            // The per-epoch curve, one point per epoch.
            assert_eq!(srv::history(&uri, id, "train/loss").len(), 20);
            assert_eq!(srv::history(&uri, id, "valid/ndcg_at_10").len(), 20);
        }
    }
    assert_eq!(rates.len(), 4, "{rates:?}");

    // The same comparison table from the server as from the local store.
    let table = |extra: &[&str]| {
        let mut a = vec!["compare", "--experiment", &exp, "--format", "json", "--all"];
        a.extend_from_slice(extra);
        let out = pulse(store.path(), &a);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
        rows.sort_by_key(|r| r["run_id"].as_str().unwrap_or_default().to_string());
        rows
    };
    let local = table(&[]);
    let remote = table(&["--from", "mlflow", "--uri", &uri]);
    assert_eq!(local.len(), RUNS);
    assert_eq!(local, remote);

    // Nothing left to deliver, so a sync sends nothing.
    let out = pulse(store.path(), &["sync", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("0 run(s) delivered, {RUNS} already in sync")),
        "{}",
        stdout(&out)
    );
    assert_eq!(assert_exactly_once(&uri, store.path(), &exp), points);

    // A delivery record pointing at a run the server does not have (as after a database
    // swap), half delivered: sync starts over, finds the run by its pulse id, checks what it
    // holds, and still sends nothing twice.
    let (local_runs, _) = StoreReader::new(store.path()).runs(Some(&exp)).unwrap();
    let dir = &local_runs
        .iter()
        .find(|r| r.info.model == "bpr-mf")
        .unwrap()
        .dir;
    let path = dir.join(pulse_track::mlflow::SYNC_FILE);
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let t = &mut record["targets"][uri.as_str()];
    t["run_id"] = "0123456789abcdef0123456789abcdef".into();
    t["complete"] = false.into();
    t["metrics_acked"] = 30.into();
    std::fs::write(&path, record.to_string()).unwrap();
    let out = pulse(store.path(), &["sync", "--all"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 run(s) delivered"),
        "{}",
        stdout(&out)
    );
    assert_eq!(assert_exactly_once(&uri, store.path(), &exp), points);
    assert_eq!(srv::runs_of(&uri, &exp).len(), RUNS + 1);
}

#[test]
fn server_killed_mid_sweep_then_sync_delivers_the_rest_exactly_once() {
    let mut server = Server::start();
    let exp = srv::unique("e2e-fault");
    let store = tempfile::tempdir().unwrap();
    let a = run_args(&server.uri, &exp, &["--set", "models.bpr-mf.epochs=40"]);
    let mut child = spawn(store.path(), &a);
    // Kill the server once two runs are on it (or, on a very slow machine, once most runs have
    // ended), while the sweep goes on.
    let t = Instant::now();
    while delivered(store.path(), &exp) < 2
        && wait_ended(store.path(), &exp, 0) < 6
        && t.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let killed_at = wait_ended(store.path(), &exp, 0);
    assert!(
        child.try_wait().unwrap().is_none() && killed_at < RUNS,
        "the sweep ended before the server was killed ({killed_at} runs ended)"
    );
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "the sweep must not fail: {err}");
    assert!(err.contains("pulse sync --all"), "{err}");
    let left = unsynced(store.path(), &exp, &server.uri);
    assert!(left > 0, "runs after the kill cannot have been delivered");

    // A dry run lists what is missing and sends nothing.
    let out = pulse(store.path(), &["sync", "--all", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("would send"), "{}", stdout(&out));

    server.restart();
    let out = pulse(store.path(), &["sync", "--all"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{left} run(s) delivered")),
        "{}",
        stdout(&out)
    );
    assert_eq!(unsynced(store.path(), &exp, &server.uri), 0);
    assert_eq!(
        StoreReader::new(store.path())
            .runs(Some(&exp))
            .unwrap()
            .0
            .len(),
        RUNS
    );
    let points = assert_exactly_once(&server.uri, store.path(), &exp);
    let runs = srv::runs_of(&server.uri, &exp);
    let parent = runs
        .iter()
        .find(|r| srv::tag(r, "pulse.kind") == Some("sweep"))
        .unwrap();
    assert_eq!(parent["info"]["status"], "FINISHED");
    assert!(
        runs.iter().all(|r| r["info"]["status"] == "FINISHED"),
        "{runs:#?}"
    );

    // Idempotent: again, nothing is sent.
    let out = pulse(store.path(), &["sync", "--all"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("0 run(s) delivered"),
        "{}",
        stdout(&out)
    );
    assert_eq!(assert_exactly_once(&server.uri, store.path(), &exp), points);
}

/// Spawns `pulse ARGS` with its run store in `store`, output captured.
fn spawn(store: &Path, a: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(a)
        .current_dir(root())
        .env("PULSE_STORE", store)
        .env("PULSE_HOME", pulse_home())
        .env_remove("PULSE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `n` runs of `experiment` have ended in `store`.
fn wait_ended(store: &Path, experiment: &str, n: usize) -> usize {
    let dir = store.join(experiment);
    let ended = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("status.json"))
                            .is_ok_and(|s| !s.contains("RUNNING"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let t = Instant::now();
    while ended() < n && t.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(20));
    }
    ended()
}

#[test]
fn ctrl_c_marks_the_run_and_the_sweep_killed_on_the_server() {
    let uri = srv::shared_uri();
    let exp = srv::unique("e2e-killed");
    let store = tempfile::tempdir().unwrap();
    let child = spawn(
        store.path(),
        &run_args(&uri, &exp, &["--set", "models.bpr-mf.epochs=200"]),
    );
    // pop ends at once; interrupt during the first bpr-mf run's training.
    wait_ended(store.path(), &exp, 1);
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(unsynced(store.path(), &exp, &uri), 0);
    assert_exactly_once(&uri, store.path(), &exp);
    let runs = srv::runs_of(&uri, &exp);
    let status = |kind: &str, model: Option<&str>| {
        runs.iter()
            .find(|r| {
                srv::tag(r, "pulse.kind") == Some(kind)
                    && model.is_none_or(|m| srv::tag(r, "pulse.model") == Some(m))
            })
            .map(|r| r["info"]["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("run", Some("pop")).as_deref(), Some("FINISHED"));
    assert_eq!(status("run", Some("bpr-mf")).as_deref(), Some("KILLED"));
    assert_eq!(status("sweep", None).as_deref(), Some("KILLED"));
}

#[test]
fn answers_lost_after_the_server_applied_them_are_not_resent() {
    let uri = srv::shared_uri();
    let upstream = uri.trim_start_matches("http://").parse().unwrap();
    // The first three metric batches reach the server, but their answers never come back.
    let proxy = Proxy::start(
        0,
        upstream,
        Faults {
            swallow_path: Some("runs/log-batch".into()),
            swallow_body: Some("\"metrics\"".into()),
            swallow_count: 3,
            ..Faults::default()
        },
    )
    .unwrap();
    let exp = srv::unique("e2e-lost");
    let store = tempfile::tempdir().unwrap();
    let out = pulse(store.path(), &args(&run_args(&proxy.url(), &exp, &[])));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(proxy.swallowed(), 3);
    // Whatever the live tracker left is completed by a sync (through the same proxy).
    let out = pulse(store.path(), &["sync", "--all"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(unsynced(store.path(), &exp, &proxy.url()), 0);
    assert_exactly_once(&uri, store.path(), &exp);
}

#[test]
fn unreachable_server_never_fails_a_run_and_sync_to_delivers_later() {
    // Nothing listens on this port.
    let dead = format!("http://127.0.0.1:{}", srv::free_port());
    let exp = srv::unique("e2e-offline");
    let store = tempfile::tempdir().unwrap();
    let out = pulse(
        store.path(),
        &args(&run_args(&dead, &exp, &["--set", "models.bpr-mf.epochs=3"])),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("not yet delivered") && err.contains("pulse sync"),
        "{err}"
    );
    assert_eq!(unsynced(store.path(), &exp, &dead), RUNS);

    let out = pulse(store.path(), &["sync", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT delivered"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("{RUNS} left unsynced")));

    // Delivered later to another server, by name.
    let uri = srv::shared_uri();
    let out = pulse(store.path(), &["sync", "--all", "--to", &uri]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(unsynced(store.path(), &exp, &uri), 0);
    assert_exactly_once(&uri, store.path(), &exp);
}
