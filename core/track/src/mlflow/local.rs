//! The local side of delivery: what the run store holds for one run, read the way the
//! shipper needs it — metric lines with their sequence numbers, read incrementally from
//! `metrics.jsonl` (only complete lines; a line being written is picked up next time), the
//! artifact files, and the metrics table uploaded when the run ends.

use crate::fsutil::io_err;
use pulse_api::{Metric, TrackError};
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A metric line of the local store with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqMetric {
    pub seq: u64,
    pub metric: Metric,
}

#[derive(Deserialize)]
struct Line {
    seq: Option<u64>,
    key: String,
    /// `null` is how JSON writes a non-finite value.
    value: Option<f64>,
    step: i64,
    timestamp: i64,
}

/// Reads `metrics.jsonl` from where the last call stopped.
#[derive(Debug, Clone)]
pub struct MetricTail {
    path: PathBuf,
    offset: u64,
    /// Lines parsed so far: the sequence number of lines written before sequence numbers
    /// existed.
    lines: u64,
}

impl MetricTail {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("metrics.jsonl"),
            offset: 0,
            lines: 0,
        }
    }

    /// Metric lines appended since the last call, in file order.
    pub fn read_new(&mut self) -> Result<Vec<SeqMetric>, TrackError> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("opening {}", self.path.display()))(e)),
        };
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(self.offset))
            .and_then(|_| f.read_to_end(&mut buf))
            .map_err(io_err(format!("reading {}", self.path.display())))?;
        // Only complete lines: the writer appends whole lines, so a missing newline means the
        // line is still being written (or was torn by a crash, and is never completed).
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for raw in buf[..end].split(|&b| b == b'\n') {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let index = self.lines;
            self.lines += 1;
            if let Ok(l) = serde_json::from_slice::<Line>(raw) {
                out.push(SeqMetric {
                    seq: l.seq.unwrap_or(index),
                    metric: Metric {
                        key: l.key,
                        value: l.value.unwrap_or(f64::NAN),
                        step: l.step,
                        timestamp: l.timestamp,
                    },
                });
            }
        }
        self.offset += end as u64 + 1;
        Ok(out)
    }
}

/// Every metric line of a run.
pub fn all_metrics(run_dir: &Path) -> Result<Vec<SeqMetric>, TrackError> {
    MetricTail::new(run_dir).read_new()
}

/// Artifact files of a run as (path relative to `artifacts/` with `/` separators, size),
/// sorted. Temporary files of atomic writes (dot files) are left out.
pub fn artifact_files(run_dir: &Path) -> Result<Vec<(String, u64)>, TrackError> {
    let root = run_dir.join("artifacts");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
        };
        for e in entries {
            let e = e.map_err(io_err(format!("reading {}", dir.display())))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let meta = e
                .metadata()
                .map_err(io_err(format!("reading {}", path.display())))?;
            if meta.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(&root) {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The metrics table uploaded at the end of a run: one CSV row per metric point.
pub fn metrics_csv(metrics: &[SeqMetric]) -> Vec<u8> {
    let mut out = String::from("seq,key,step,value,timestamp\n");
    for m in metrics {
        let key = if m.metric.key.contains([',', '"', '\n']) {
            format!("\"{}\"", m.metric.key.replace('"', "\"\""))
        } else {
            m.metric.key.clone()
        };
        out.push_str(&format!(
            "{},{key},{},{},{}\n",
            m.seq, m.metric.step, m.metric.value, m.metric.timestamp
        ));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_reads_only_complete_lines_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        let mut tail = MetricTail::new(tmp.path());
        assert!(tail.read_new().unwrap().is_empty());
        let mut f = std::fs::File::create(&path).unwrap();
        write!(
            f,
            "{{\"seq\":0,\"key\":\"a\",\"value\":1.0,\"step\":1,\"timestamp\":5}}\n{{\"seq\":1,\"key\":\"b\",\"va"
        )
        .unwrap();
        let got = tail.read_new().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, got[0].metric.key.as_str()), (0, "a"));
        writeln!(f, "lue\":null,\"step\":2,\"timestamp\":6}}").unwrap();
        let got = tail.read_new().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, 1);
        assert!(got[0].metric.value.is_nan());
        assert!(tail.read_new().unwrap().is_empty());
        // Lines without sequence numbers (older stores) are numbered by position.
        writeln!(
            f,
            "{{\"key\":\"c\",\"value\":3.0,\"step\":3,\"timestamp\":7}}"
        )
        .unwrap();
        assert_eq!(tail.read_new().unwrap()[0].seq, 2);
        assert_eq!(all_metrics(tmp.path()).unwrap().len(), 3);
    }

    #[test]
    fn values_read_back_are_the_values_logged_bit_for_bit() {
        use pulse_api::Tracker;
        let tmp = tempfile::tempdir().unwrap();
        let mut store = crate::LocalStore::new(tmp.path());
        let info: pulse_api::RunInfo = serde_json::from_value(serde_json::json!({
            "run_id": "r", "experiment": "e", "sweep_id": "s", "trial_id": "t",
            "trial_label": "b", "ablation": null, "model": "m", "model_type": "m",
            "dataset": "d", "seed": 1, "resolved_spec": null, "params": {}, "environment": {}
        }))
        .unwrap();
        let mut run = store.start_run(&info).unwrap();
        // Values whose shortest decimal form a fast float parser rounds to a neighbour.
        let values = [
            0.11591750487128649,
            0.1 + 0.2,
            1e-300,
            0.105005422839624,
            2.0 / 3.0,
        ];
        let logged: Vec<Metric> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Metric {
                key: "k".into(),
                value: *v,
                step: i as i64,
                timestamp: 1,
            })
            .collect();
        run.log_metrics(&logged).unwrap();
        let back = all_metrics(&tmp.path().join("e/r")).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let read: Vec<f64> = back.iter().map(|m| m.metric.value).collect();
        assert_eq!(bits(&read), bits(&values));
        assert_eq!(
            back.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn artifacts_are_listed_recursively_without_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("artifacts");
        std::fs::create_dir_all(a.join("samples")).unwrap();
        std::fs::write(a.join("best.safetensors"), b"abc").unwrap();
        std::fs::write(a.join("samples/r.jsonl"), b"x").unwrap();
        std::fs::write(a.join(".best.safetensors.tmp1"), b"y").unwrap();
        assert_eq!(
            artifact_files(tmp.path()).unwrap(),
            vec![
                ("best.safetensors".to_string(), 3),
                ("samples/r.jsonl".to_string(), 1)
            ]
        );
        assert!(artifact_files(&tmp.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn metrics_table() {
        let m = SeqMetric {
            seq: 3,
            metric: Metric {
                key: "valid/ndcg@10".into(),
                value: 0.25,
                step: 2,
                timestamp: 9,
            },
        };
        assert_eq!(
            String::from_utf8(metrics_csv(&[m])).unwrap(),
            "seq,key,step,value,timestamp\n3,valid/ndcg@10,2,0.25,9\n"
        );
    }
}
