#!/usr/bin/env bash
# Benchmark: SASRec seconds per training epoch, time to reach a validation NDCG@10, and peak RSS,
# on ml-100k and ml-1m (hidden 64, 2 layers, 2 heads, max length 50, CE). Usage:
#   experiments/benchmarks/sasrec-speed.sh [EPOCHS]        (default 30, early stopping on)
# Prints one line per data set and the validation curve (epoch, cumulative train+eval seconds,
# valid NDCG@10), read back from the run store.
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs="${1:-30}"
cargo build --release -q -p pulse-cli
bin=target/release/pulse
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
printf '%-8s %8s %8s %12s %12s %10s\n' data epochs best s/epoch fit_s peak_rss_MiB
for ds in ml-100k ml-1m; do
  log="$store/time-$ds.log"
  /usr/bin/time -v "$bin" --store "$store" -q run experiments/benchmarks/sasrec-speed.toml \
    --no-progress --set "datasets.data.source=\"$ds\"" --set "experiment.name=\"speed-$ds\"" \
    --set "models.sasrec.epochs=$epochs" > "$store/out-$ds.txt" 2> "$log"
  rss_kb=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
  python3 - "$store/speed-$ds" "$ds" "$rss_kb" <<'PY'
import json, os, sys
exp, ds, rss_kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = [os.path.join(exp, d) for d in os.listdir(exp)][0]
ms = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
last = {m["key"]: m["value"] for m in ms}
start = json.load(open(os.path.join(run, "status.json")))["start_ms"]
curve = [(m["step"], (m["timestamp"] - start) / 1000, m["value"]) for m in ms if m["key"] == "valid/ndcg@10"]
print(f'{ds:<8} {int(last["epochs"]):>8} {int(last.get("best_epoch", 0)):>8} {last["epoch_seconds"]:>12.2f} {last["fit_seconds"]:>12.1f} {rss_kb/1024:>10.0f}')
print("  test: " + ", ".join(f'{k[5:]} {v:.4f}' for k, v in sorted(last.items()) if k.startswith("test/")))
print("  curve (epoch, s, valid ndcg@10): " + "; ".join(f"{e} {t:.0f}s {v:.4f}" for e, t, v in curve))
PY
done
