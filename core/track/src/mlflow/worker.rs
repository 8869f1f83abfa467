//! The live MLflow tracker: a [`Tracker`] whose recorders only nudge a background thread, so
//! training never waits on the network. It is registered after the local store, so by the time
//! a recorder is called the event is already appended there; the thread (a single-threaded
//! tokio runtime) ships from the store at most once per `batch_interval` per pass, retrying
//! with exponential backoff and jitter while the server is down or slow. When the tracker is
//! dropped at the end of `pulse run` it waits up to `flush_timeout` for the rest (giving up at
//! once if the server is unreachable); what is left stays marked unsynced for `pulse sync`.

use super::client::{Client, ClientConfig, MlflowError, Stats};
use super::deliver::{sweep_status, Mode, Progress, RunJob, Target};
use super::state::RunLock;
use pulse_api::{Metric, RunInfo, RunRecorder, RunStatus, TrackError, Tracker};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Live tracker settings.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub client: ClientConfig,
    /// Root of the local run store the runs are shipped from.
    pub store_root: PathBuf,
    /// Longest wait at exit for undelivered records.
    pub flush_timeout: Duration,
    /// Shortest time between two delivery passes, so per-epoch events travel together.
    pub batch_interval: Duration,
}

impl LiveConfig {
    pub fn new(uri: &str, store_root: &Path) -> Self {
        Self {
            client: ClientConfig::from_env(uri),
            store_root: store_root.to_path_buf(),
            flush_timeout: Duration::from_secs(30),
            batch_interval: Duration::from_secs(1),
        }
    }
}

enum Msg {
    /// Run directory whose records grew, and the recorder's flag to clear once seen.
    Touch(PathBuf, Option<Arc<AtomicBool>>),
    /// Deliver what is left within the duration, then stop.
    Shutdown(Duration),
}

/// What the background thread delivered, reported when the tracker is dropped.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    pub runs: usize,
    pub delivered: usize,
    /// (pulse run id, why it is not complete).
    pub undelivered: Vec<(String, String)>,
    pub requests: u64,
}

/// Ships runs to an MLflow server while they run.
pub struct MlflowTracker {
    uri: String,
    root: PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
    flush_timeout: Duration,
    worker: Option<std::thread::JoinHandle<LiveReport>>,
    stats: Arc<Stats>,
    report: Option<LiveReport>,
}

impl std::fmt::Debug for MlflowTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowTracker")
            .field("uri", &self.uri)
            .finish()
    }
}

impl MlflowTracker {
    /// Starts the background thread; contacts nothing yet.
    pub fn start(cfg: LiveConfig) -> Result<Self, MlflowError> {
        let client = Client::new(&cfg.client)?;
        let stats = client.stats().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MlflowError::Local(format!("starting the MLflow shipper: {e}")))?;
        let batch_interval = cfg.batch_interval;
        let worker = std::thread::Builder::new()
            .name("pulse-mlflow".into())
            .spawn(move || runtime.block_on(ship(Target::new(client), rx, batch_interval)))
            .map_err(|e| MlflowError::Local(format!("starting the MLflow shipper: {e}")))?;
        Ok(Self {
            uri: cfg.client.uri.clone(),
            root: cfg.store_root,
            tx,
            flush_timeout: cfg.flush_timeout,
            worker: Some(worker),
            stats,
            report: None,
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Request counters of the HTTP client.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Delivers what is left (within the flush timeout), stops the thread and reports.
    pub fn close(&mut self) -> LiveReport {
        if let Some(r) = &self.report {
            return r.clone();
        }
        let _ = self.tx.send(Msg::Shutdown(self.flush_timeout));
        let report = self
            .worker
            .take()
            .and_then(|w| w.join().ok())
            .unwrap_or_default();
        self.report = Some(report.clone());
        report
    }
}

impl Drop for MlflowTracker {
    fn drop(&mut self) {
        if self.report.is_some() {
            return;
        }
        let r = self.close();
        if r.undelivered.is_empty() {
            if r.runs > 0 {
                tracing::info!(
                    "mlflow: {} run(s) logged to {} ({} request(s))",
                    r.delivered,
                    self.uri,
                    r.requests
                );
            }
        } else {
            let why = &r.undelivered[0].1;
            tracing::warn!(
                "mlflow: {} of {} run(s) not yet delivered to {} ({why}); they are kept in {} \
                 and marked unsynced — deliver them with `pulse sync --all`",
                r.undelivered.len(),
                r.runs,
                self.uri,
                self.root.display()
            );
        }
    }
}

impl Tracker for MlflowTracker {
    fn name(&self) -> &str {
        "mlflow"
    }

    fn start_run(&mut self, info: &RunInfo) -> Result<Box<dyn RunRecorder>, TrackError> {
        let dir = self.root.join(&info.experiment).join(&info.run_id);
        let _ = self.tx.send(Msg::Touch(dir.clone(), None));
        Ok(Box::new(Nudge {
            dir,
            tx: self.tx.clone(),
            queued: Arc::new(AtomicBool::new(false)),
        }))
    }
}

/// A run's recorder: the local store has the event already; this only wakes the shipper.
struct Nudge {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
    /// A wake-up is queued and not yet seen: the shipper will read everything appended up to
    /// when it sees it, so further events need no message of their own.
    queued: Arc<AtomicBool>,
}

impl Nudge {
    fn touch(&self) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        // A stopped shipper is not an error for the run: the records are in the local store.
        let _ = self
            .tx
            .send(Msg::Touch(self.dir.clone(), Some(self.queued.clone())));
    }
}

impl RunRecorder for Nudge {
    fn log_metrics(&mut self, _: &[Metric]) -> Result<(), TrackError> {
        self.touch();
        Ok(())
    }
    fn log_artifact(&mut self, _: &str, _: &[u8]) -> Result<(), TrackError> {
        self.touch();
        Ok(())
    }
    fn finish(&mut self, _: RunStatus, _: Option<&str>) -> Result<(), TrackError> {
        self.touch();
        Ok(())
    }
}

/// Exponential backoff with full jitter, 0.5 s doubling up to 30 s.
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let cap = 0.5 * 2f64.powi(self.attempt.min(6) as i32);
        self.attempt += 1;
        Duration::from_secs_f64(cap.min(30.0) * (0.5 + 0.5 * jitter()))
    }
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

struct Slot {
    job: RunJob,
    done: bool,
    /// Refused by the server: not retried by this process (`pulse sync` tries again).
    refused: Option<String>,
    _lock: Option<RunLock>,
}

/// The shipper's loop.
async fn ship(
    mut target: Target,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    batch_interval: Duration,
) -> LiveReport {
    let mut slots: Vec<Slot> = Vec::new();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    let mut dirty: Vec<usize> = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut next_pass = Instant::now();
    let mut backoff = Backoff { attempt: 0 };
    let mut outage: Option<MlflowError> = None;
    let mut disabled: Option<MlflowError> = None;
    loop {
        // Wait for work, or for the next pass when work is pending.
        let wait = if deadline.is_some() {
            Duration::ZERO
        } else if dirty.is_empty() || disabled.is_some() {
            Duration::from_secs(3600)
        } else {
            next_pass.saturating_duration_since(Instant::now())
        };
        let first = if wait.is_zero() {
            rx.try_recv().ok()
        } else {
            tokio::time::timeout(wait, rx.recv()).await.unwrap_or(None)
        };
        let mut msgs: Vec<Msg> = first.into_iter().collect();
        while let Ok(m) = rx.try_recv() {
            msgs.push(m);
        }
        if msgs.is_empty() && rx.is_closed() && deadline.is_none() {
            deadline = Some(Instant::now() + Duration::from_secs(30));
        }
        for m in msgs {
            match m {
                Msg::Touch(dir, queued) => {
                    // Cleared before the next pass reads the store, so an event appended
                    // after this point sends a new wake-up.
                    if let Some(q) = queued {
                        q.store(false, Ordering::Release);
                    }
                    let i = match index.get(&dir) {
                        Some(&i) => i,
                        None => match open_slot(&dir, target.uri()) {
                            Some(slot) => {
                                slots.push(slot);
                                index.insert(dir, slots.len() - 1);
                                slots.len() - 1
                            }
                            None => continue,
                        },
                    };
                    if !slots[i].done && slots[i].refused.is_none() && !dirty.contains(&i) {
                        dirty.push(i);
                    }
                }
                Msg::Shutdown(d) => deadline = Some(Instant::now() + d),
            }
        }
        let shutting = deadline.is_some();
        if dirty.is_empty() || disabled.is_some() {
            if shutting {
                break;
            }
            continue;
        }
        if !shutting && Instant::now() < next_pass {
            continue;
        }
        let pass = pass(&mut target, &mut slots, &mut dirty);
        let result = match deadline {
            Some(d) => {
                match tokio::time::timeout(d.saturating_duration_since(Instant::now()), pass).await
                {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            None => pass.await,
        };
        match result {
            Ok(()) => {
                if let Some(e) = outage.take() {
                    tracing::info!("mlflow: {} answers again (was: {e})", target.uri());
                }
                backoff.attempt = 0;
                next_pass = Instant::now() + batch_interval;
            }
            Err(e) if e.is_auth() => {
                tracing::warn!(
                    "mlflow: {e}; set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD. \
                     Runs stay in the local store for `pulse sync`"
                );
                disabled = Some(e);
            }
            Err(e) => {
                if shutting && !e.maybe_applied() && e.is_transient() {
                    // The server is down: waiting out the flush timeout would only delay exit.
                    outage = Some(e);
                    break;
                }
                let delay = backoff.next();
                if outage.is_none() {
                    tracing::warn!(
                        "mlflow: {e}; training goes on, records are kept locally and retried \
                         (next try in {:.1} s)",
                        delay.as_secs_f64()
                    );
                }
                outage = Some(e);
                next_pass = Instant::now() + delay;
                if deadline.is_some_and(|d| next_pass > d) {
                    break;
                }
                if shutting {
                    tokio::time::sleep(delay).await;
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    if disabled.is_none() && outage.is_none() {
        finish_parents(&target, &slots, deadline).await;
    }
    let why = disabled
        .or(outage)
        .map(|e| e.to_string())
        .unwrap_or_else(|| "flush timeout reached".into());
    let mut report = LiveReport {
        runs: slots.len(),
        requests: target.client.stats().requests.load(Ordering::Relaxed),
        ..LiveReport::default()
    };
    for s in &slots {
        if s.done {
            report.delivered += 1;
        } else {
            let why = s.refused.clone().unwrap_or_else(|| why.clone());
            report.undelivered.push((s.job.info.run_id.clone(), why));
        }
    }
    report
}

fn open_slot(dir: &Path, uri: &str) -> Option<Slot> {
    let lock = match RunLock::acquire(dir) {
        Ok(Ok(l)) => Some(l),
        Ok(Err(pid)) => {
            tracing::warn!(
                "mlflow: {} is being delivered by process {pid}; not shipping it from here",
                dir.display()
            );
            return None;
        }
        Err(e) => {
            tracing::warn!("mlflow: {e}");
            None
        }
    };
    match RunJob::open(dir, uri, Mode::Live).and_then(|mut job| {
        // Recorded at once, so `pulse sync --all` finds the run even if nothing gets through.
        job.record()?;
        Ok(job)
    }) {
        Ok(job) => Some(Slot {
            job,
            done: false,
            refused: None,
            _lock: lock,
        }),
        Err(e) => {
            tracing::warn!("mlflow: cannot ship {}: {e}", dir.display());
            None
        }
    }
}

/// One delivery pass over the dirty runs, oldest first; stops at the first failure (the
/// server is then down or slow for all of them).
async fn pass(
    target: &mut Target,
    slots: &mut [Slot],
    dirty: &mut Vec<usize>,
) -> Result<(), MlflowError> {
    while let Some(&i) = dirty.first() {
        let slot = &mut slots[i];
        match slot.job.deliver(target).await {
            Ok(Progress::Done) => {
                slot.done = true;
                slot._lock = None;
            }
            Ok(Progress::Waiting) => {}
            Err(e) if e.is_transient() || e.is_auth() => return Err(e),
            Err(e) => {
                // This run cannot be delivered (refused); the others can.
                tracing::warn!("mlflow: run {}: {e}", slot.job.info.run_id);
                slot.refused = Some(e.to_string());
            }
        }
        dirty.remove(0);
    }
    Ok(())
}

/// Ends the parent run of every sweep whose runs were all delivered.
async fn finish_parents(target: &Target, slots: &[Slot], deadline: Option<Instant>) {
    let mut sweeps: BTreeMap<String, Vec<&Slot>> = BTreeMap::new();
    for s in slots {
        sweeps
            .entry(s.job.info.sweep_id.clone())
            .or_default()
            .push(s);
    }
    for runs in sweeps.values() {
        let Some(parent) = runs.iter().find_map(|s| s.job.state.parent_run_id.clone()) else {
            continue;
        };
        if !runs.iter().all(|s| s.done) {
            continue;
        }
        let Some(status) = sweep_status(runs.iter().map(|s| s.job.status.status)) else {
            continue;
        };
        let end = runs
            .iter()
            .filter_map(|s| s.job.status.end_ms)
            .max()
            .unwrap_or_else(crate::now_ms);
        let left = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(30))
            .max(Duration::from_secs(1));
        match tokio::time::timeout(left, target.finish_parent(&parent, status, end)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("mlflow: ending sweep run {parent}: {e}"),
            Err(_) => tracing::warn!("mlflow: ending sweep run {parent}: timed out"),
        }
    }
}
