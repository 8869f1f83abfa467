//! Overhead of the MLflow tracker against a real server (run by `core/track/bench/mlflow.sh`,
//! or by hand with `PULSE_TEST_MLFLOW_URI=http://127.0.0.1:PORT cargo bench -p
//! pulse-track --bench mlflow_overhead`):
//!
//! 1. Training side: events/s through the local store alone, and through the local store plus
//!    the MLflow tracker, logged one metric per call as the training loop does.
//! 2. Delivery: how fast the background shipper gets those events onto the server (events/s
//!    sustained end to end) and in how many requests.
//! 3. Requests for a simulated 100-epoch run (train loss + 3 validation metrics per epoch,
//!    final test metrics, two artifacts) at two epoch lengths.
//!
//! Requests are counted by a loopback proxy in front of the server.

// A measurement program: any failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pulse_api::{Metric, RunInfo, RunStatus, Tracker};
use pulse_track::mlflow::proxy::{Faults, Proxy};
use pulse_track::mlflow::{LiveConfig, MlflowTracker};
use pulse_track::{now_ms, LocalStore};
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;

fn info(experiment: &str, run_id: &str) -> RunInfo {
    RunInfo {
        run_id: run_id.into(),
        experiment: experiment.into(),
        sweep_id: format!("sweep-{run_id}"),
        trial_id: "t0".into(),
        trial_label: "base".into(),
        ablation: None,
        model: "bench".into(),
        model_type: "bench".into(),
        dataset: "none".into(),
        seed: 1,
        resolved_spec: serde_json::json!({"bench": true}),
        params: (0..40)
            .map(|i| (format!("models.bench.p{i}"), i.to_string()))
            .collect(),
        environment: Default::default(),
    }
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        step,
        timestamp: now_ms(),
    }
}

/// Logs `n` events one per call on every tracker; returns the time the caller spent.
fn log_events(trackers: &mut [Box<dyn Tracker>], info: &RunInfo, n: usize) -> Duration {
    let keys = ["train/loss", "valid/ndcg@10", "valid/hr@10", "valid/mrr@10"];
    let mut recs: Vec<_> = trackers
        .iter_mut()
        .map(|t| t.start_run(info).expect("start run"))
        .collect();
    let t = Instant::now();
    for i in 0..n {
        let m = [metric(keys[i % 4], i as f64 * 1e-3, (i / 4) as i64)];
        for r in &mut recs {
            r.log_metrics(&m).expect("log");
        }
    }
    let spent = t.elapsed();
    for r in &mut recs {
        r.finish(RunStatus::Finished, None).expect("finish");
    }
    spent
}

/// A simulated `epochs`-epoch run with `epoch` of "training" per epoch.
fn simulated_run(
    trackers: &mut [Box<dyn Tracker>],
    info: &RunInfo,
    epochs: usize,
    epoch: Duration,
) {
    let mut recs: Vec<_> = trackers
        .iter_mut()
        .map(|t| t.start_run(info).expect("start run"))
        .collect();
    for e in 1..=epochs as i64 {
        std::thread::sleep(epoch);
        for r in &mut recs {
            r.log_metrics(&[metric("train/loss", 1.0 / e as f64, e)])
                .expect("log");
        }
        let valid = [
            metric("valid/ndcg@10", 0.1, e),
            metric("valid/hr@10", 0.2, e),
            metric("valid/mrr@10", 0.05, e),
        ];
        for r in &mut recs {
            r.log_metrics(&valid).expect("log");
        }
    }
    let test = [
        metric("test/ndcg@10", 0.1, 0),
        metric("test/hr@10", 0.2, 0),
        metric("test/mrr@10", 0.05, 0),
        metric("run_seconds", 1.0, 0),
    ];
    for r in &mut recs {
        r.log_metrics(&test).expect("log");
        r.log_artifact("per_user_test.json", b"{}")
            .expect("artifact");
        r.log_artifact("best.safetensors", &[0u8; 4096])
            .expect("artifact");
        r.finish(RunStatus::Finished, None).expect("finish");
    }
}

fn live(uri: &str, root: &std::path::Path) -> MlflowTracker {
    let mut cfg = LiveConfig::new(uri, root);
    cfg.flush_timeout = Duration::from_secs(600);
    MlflowTracker::start(cfg).expect("tracker")
}

fn main() {
    let Some(uri) = ["PULSE_TEST_MLFLOW_URI", "MLFLOW_TRACKING_URI"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    else {
        eprintln!(
            "mlflow_overhead needs a server: set PULSE_TEST_MLFLOW_URI=http://127.0.0.1:PORT \
             (core/track/bench/mlflow.sh starts one)"
        );
        return;
    };
    let upstream = uri
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("PULSE_TEST_MLFLOW_URI must be http://IP:PORT");
    let proxy = Proxy::start(0, upstream, Faults::default()).expect("proxy");
    let stamp = now_ms();
    let experiment = format!("bench-overhead-{stamp}");

    // 1. Training side, and 2. delivery: three alternating rounds, medians reported.
    let (mut t_local, mut t_both, mut t_delivered, mut reqs) = (vec![], vec![], vec![], vec![]);
    for round in 0..3 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut local: Vec<Box<dyn Tracker>> = vec![Box::new(LocalStore::new(tmp.path()))];
        t_local.push(log_events(
            &mut local,
            &info(&experiment, &format!("local-only-{round}")),
            EVENTS,
        ));
        let tracker = live(&proxy.url(), tmp.path());
        let mut both: Vec<Box<dyn Tracker>> =
            vec![Box::new(LocalStore::new(tmp.path())), Box::new(tracker)];
        let before = proxy.requests();
        let started = Instant::now();
        t_both.push(log_events(
            &mut both,
            &info(&experiment, &format!("with-mlflow-{round}")),
            EVENTS,
        ));
        // Dropping the tracker waits until everything is on the server.
        drop(both);
        t_delivered.push(started.elapsed());
        reqs.push(proxy.requests() - before);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (t_local, t_both, delivered) = (
        median(&mut t_local),
        median(&mut t_both),
        median(&mut t_delivered),
    );
    reqs.sort();
    let requests = reqs[reqs.len() / 2];
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!("training side, {EVENTS} events logged one per call (median of 3):");
    println!(
        "  local store only      {:>10.0} events/s ({:.2} µs/event)",
        rate(t_local),
        t_local.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!(
        "  local store + mlflow  {:>10.0} events/s ({:.2} µs/event)",
        rate(t_both),
        t_both.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!("delivery to the server (background thread, median of 3):");
    println!(
        "  {EVENTS} events on the server after {:.2} s: {:.0} events/s sustained, {requests} requests ({:.0} events/request)",
        delivered.as_secs_f64(),
        rate(delivered),
        EVENTS as f64 / requests.max(1) as f64
    );

    // 3. Requests for a 100-epoch run.
    for epoch_ms in [10u64, 250] {
        let before = proxy.requests();
        let paths_before = proxy.by_path();
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut ts: Vec<Box<dyn Tracker>> = vec![
            Box::new(LocalStore::new(tmp.path())),
            Box::new(live(&proxy.url(), tmp.path())),
        ];
        let t = Instant::now();
        simulated_run(
            &mut ts,
            &info(&experiment, &format!("epochs100-{epoch_ms}ms")),
            100,
            Duration::from_millis(epoch_ms),
        );
        let ran = t.elapsed();
        drop(ts);
        let n = proxy.requests() - before;
        // Per endpoint, artifact uploads counted together.
        let mut per_endpoint = std::collections::BTreeMap::<String, u64>::new();
        for (p, c) in proxy.by_path() {
            let earlier = paths_before.get(&p).copied().unwrap_or(0);
            let name = if p.contains("/mlflow-artifacts/") {
                "artifact uploads".to_string()
            } else {
                p.trim_start_matches("/api/2.0/mlflow/").to_string()
            };
            *per_endpoint.entry(name).or_default() += c - earlier;
        }
        let per: Vec<String> = per_endpoint
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(p, c)| format!("{p} {c}"))
            .collect();
        println!(
            "100-epoch run, {epoch_ms} ms/epoch ({:.1} s, 402 metric points, 2 artifacts): {n} requests [{}]",
            ran.as_secs_f64(),
            per.join(", ")
        );
    }
}
