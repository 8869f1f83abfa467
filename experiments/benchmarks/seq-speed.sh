#!/usr/bin/env bash
# Benchmark: GRU4Rec and BERT4Rec seconds per training epoch and peak RSS on ml-100k and ml-1m
# (RecBole's default hyper-parameters, CE over all items). Usage:
#   experiments/benchmarks/seq-speed.sh [EPOCHS]        (default 5 per model, no early stop)
# Prints one line per (data set, model): epochs run, mean seconds per training epoch (validation
# excluded), the last validation NDCG@10 and the peak RSS of the whole process.
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs="${1:-5}"
cargo build --release -q -p pulse-cli
bin=target/release/pulse
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
printf '%-8s %-9s %7s %9s %12s %12s\n' data model epochs s/epoch valid_ndcg peak_rss_MiB
for ds in ml-100k ml-1m; do
  for model in gru4rec bert4rec; do
    log="$store/time-$ds-$model.log"
    /usr/bin/time -v "$bin" --store "$store" -q run experiments/benchmarks/seq-speed.toml \
      --no-progress --set "datasets.data.source=\"$ds\"" --set "experiment.name=\"speed-$ds\"" \
      --set "experiment.models=[\"$model\"]" --set "models.$model.epochs=$epochs" \
      --set "models.$model.patience=0" > "$store/out-$ds-$model.txt" 2> "$log"
    rss_kb=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
    python3 - "$store/speed-$ds" "$ds" "$model" "$rss_kb" <<'PY'
import json, os, sys
exp, ds, model, rss_kb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = [os.path.join(exp, d) for d in os.listdir(exp)]
run = [r for r in runs if json.load(open(os.path.join(r, "run.json")))["model"] == model][0]
ms = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
last = {m["key"]: m["value"] for m in ms}
print(f'{ds:<8} {model:<9} {int(last["epochs"]):>7} {last["epoch_seconds"]:>9.2f} {last["valid/ndcg@10"]:>12.4f} {rss_kb/1024:>12.0f}')
PY
  done
done
