#!/usr/bin/env bash
# Benchmark: cost of loading dynamic plugins. Loads the three example plugin libraries through
# PULSE_PLUGIN_PATH with `pulse plugin list` (which prints each library's load time: file
# checks, dlopen, fingerprint check, symbol table read, register) RUNS times, and times the
# whole `pulse list` process with and without them. Usage:
#   experiments/benchmarks/plugin-load.sh [RUNS]      (default 20)
# The libraries come from `cargo test --release` (dev-dependencies of pulse-cli).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-20}"
cargo test --release -q -p pulse-cli --no-run 2>/dev/null
bin=target/release/pulse
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for lib in loss_hinge rec_markov dataset_csv; do
  cp "target/release/deps/lib$lib.so" "$dir/"
done
ls -l "$dir" | awk 'NR > 1 {printf "%-20s %6.1f MiB\n", $9, $5 / 1048576}'
for _ in $(seq "$runs"); do
  PULSE_PLUGIN_PATH="$dir" "$bin" -q plugin list
done | python3 -c '
import re, statistics, sys
times = {}
for line in sys.stdin:
    m = re.search(r"/(lib\S+\.so)  \S+ \S+  loaded in ([0-9.]+) ms", line)
    if m:
        times.setdefault(m.group(1), []).append(float(m.group(2)))
for lib, t in sorted(times.items()):
    print(f"{lib:<20} load median {statistics.median(t):6.2f} ms  min {min(t):6.2f}  max {max(t):6.2f}  ({len(t)} runs)")
'
python3 - "$bin" "$dir" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
bin, d, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
def wall(env):
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        subprocess.run([bin, "-q", "list"], env=env, check=True, stdout=subprocess.DEVNULL)
        t.append((time.perf_counter() - s) * 1000)
    return statistics.median(t)
base = {k: v for k, v in os.environ.items() if k != "PULSE_PLUGIN_PATH"}
without = wall(base)
with_ = wall({**base, "PULSE_PLUGIN_PATH": d})
print(f"`pulse list` process: {without:.1f} ms without plugins, {with_:.1f} ms with the 3 (median of {runs})")
PY
