#!/usr/bin/env bash
# Benchmark: rationale-generation throughput of pulse's `gguf` backbone against llama.cpp
# (llama-cpp-python) on this machine. Same GGUF file (SmolLM2-135M-Instruct, Q4_1), the same 64
# prompts built from ml-100k user histories with the model's chat template applied (pulse's
# `slm_throughput` example writes them once; both sides read that list), greedy decoding, 96
# new tokens, the same thread count. Usage:
#
#   experiments/benchmarks/slm-throughput.sh [ROUNDS]     (default 3)
#
# Environment: THREADS (default 2), PROMPTS (64), MAX_NEW (96), WEIGHTS (pulse weight format,
# default auto), SEQ_ROUNDS (rounds that also run llama.cpp's sequential mode, default 1: it is
# by far the slowest), PULSE_HOME (where the model and data sets are cached).
#
# Runs alternate — pulse, llama.cpp batched, [llama.cpp sequential], pulse, … — so that load from
# other processes on a shared machine falls on both sides alike; the table shows each engine's
# median generated tokens/s over the rounds, and pulse's ratio to each llama.cpp mode.
# llama.cpp runs with OMP_WAIT_POLICY=PASSIVE: its OpenMP threads otherwise spin while waiting,
# which on two busy cores halved its throughput. Its batched mode (all prompts as parallel
# sequences, shared prefix decoded once) is its best multi-prompt setting here; see
# llama_cpp_throughput.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
rounds="${1:-3}"
threads="${THREADS:-2}"
prompts="${PROMPTS:-64}"
max_new="${MAX_NEW:-96}"
weights="${WEIGHTS:-auto}"
seq_rounds="${SEQ_ROUNDS:-1}"
export PULSE_HOME="${PULSE_HOME:-$ROOT/target/pulse-home}"

# llama-cpp-python in its venv, and the GGUF where pulse's asset cache keeps it.
.ci/llama-server.sh install
py="$ROOT/target/llama-server/venv/bin/python"
model="$PULSE_HOME/assets/smollm2-135m-instruct/model.gguf"

cargo build --release -q -p pulse-backbones --example slm_throughput
bin=target/release/examples/slm_throughput
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" --model "$model" --prompts "$prompts" --write-prompts "$work/prompts.jsonl" --prompts-only
echo "prompts: $(wc -l < "$work/prompts.jsonl") from ml-100k histories; $max_new new tokens," \
  "greedy; $threads threads; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds: pulse" >&2
  RAYON_NUM_THREADS="$threads" "$bin" --model "$model" --prompts "$prompts" \
    --max-new "$max_new" --batch "$prompts" --weights "$weights" \
    --out "$work/pulse-$round.jsonl" | tail -n 1 >> "$work/results.jsonl"
  modes=batched
  if [ "$round" -le "$seq_rounds" ]; then modes=batched,sequential; fi
  echo "round $round/$rounds: llama.cpp $modes" >&2
  OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$threads" "$py" \
    experiments/benchmarks/llama_cpp_throughput.py "$model" "$work/prompts.jsonl" \
    --threads "$threads" --max-new "$max_new" --modes "$modes" \
    --out-prefix "$work/llama-$round" 2>/dev/null >> "$work/results.jsonl"
done

python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["engine"], []).append(r)
med = {e: statistics.median(r["new_tokens_per_sec"] for r in rs) for e, rs in by.items()}
print(f'{"engine":<22} {"runs":>4} {"new_tokens":>10} {"median_s":>9} {"tok/s (median)":>15} {"all runs tok/s":<30}')
for e, rs in by.items():
    runs = " ".join(f'{r["new_tokens_per_sec"]:.1f}' for r in rs)
    secs = statistics.median(r["secs"] for r in rs)
    print(f'{e:<22} {len(rs):>4} {rs[0]["new_tokens"]:>10} {secs:>9.1f} {med[e]:>15.1f} {runs:<30}')
for e in med:
    if e.startswith("llama.cpp"):
        print(f'ratio pulse / {e}: {med["pulse"] / med[e]:.2f}x')
PY
