#!/usr/bin/env bash
# Measurements of the MLflow tracker against real, local MLflow servers (each on its own SQLite
# database and artifact directory under a temp dir, stopped at exit):
#
#   quickstart  experiments/quickstart.toml logged to MLflow; runs, params, per-epoch curves and
#               artifacts read back through the REST API
#   fault       the server killed (SIGKILL) in the middle of a sweep, restarted after it, then
#               `pulse sync --all`; metric points on the server counted against the local store
#   slow        training seconds with the server behind a loopback proxy adding 2 s per request,
#               against the same server direct and against the local store alone (3 runs each,
#               BPR-MF on ml-100k for $SLOW_EPOCHS epochs, default 20)
#   overhead    events/s the tracker sustains and request counts (the mlflow_overhead bench),
#               plus the requests of a real 100-epoch BPR-MF run on ml-100k
#
# Usage: core/track/bench/mlflow.sh [quickstart|fault|slow|overhead|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../../.."
what=${1:-all}
export PULSE_HOME=${PULSE_HOME:-$PWD/target/pulse-home}
export PULSE_LOG=${PULSE_LOG:-warn,pulse=info,pulse_track=info}
venv=$PWD/target/mlflow-venv
if [ ! -x "$venv/bin/mlflow" ]; then
  python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q mlflow
fi
rest="python3 core/track/bench/mlflow_rest.py"
work=$(mktemp -d /tmp/pulse-mlflow-bench.XXXXXX)
groups=()
cleanup() {
  for g in "${groups[@]}"; do kill -9 -- "-$g" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server NAME PORT: (re)starts server NAME on PORT and waits for /health.
start_server() {
  local dir=$work/$1 port=$2 t0
  mkdir -p "$dir"
  t0=$(date +%s)
  setsid "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts \
    --host 127.0.0.1 --port "$port" --workers 1 >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  groups+=($!)
  for _ in $(seq 1 180); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
      echo "   mlflow server '$1' on port $port answered /health after $(( $(date +%s) - t0 )) s"
      return 0
    fi
    sleep 1
  done
  echo "server $1 did not start:"; tail -30 "$dir/server.log"; exit 1
}
kill_server() { kill -9 -- "-$(cat "$work/$1/pid")" 2>/dev/null || true; sleep 1; }

echo "== building pulse and the proxy"
cargo build --release -q -p pulse-cli
cargo build --release -q -p pulse-track --example mlflow_proxy
pulse=$PWD/target/release/pulse
proxy_bin=$PWD/target/release/examples/mlflow_proxy

if [[ $what == quickstart || $what == all ]]; then
  echo "== quickstart logged to MLflow"
  port=$(free_port); start_server quickstart "$port"; uri=http://127.0.0.1:$port
  echo "\$ pulse run experiments/quickstart.toml --set tracker.type=mlflow --set tracker.uri=$uri"
  t0=$(date +%s)
  PULSE_STORE=$work/qs-store "$pulse" run experiments/quickstart.toml \
    --no-progress --set tracker.type=mlflow --set "tracker.uri=$uri"
  echo "   wall $(( $(date +%s) - t0 )) s"
  $rest summary "$uri" quickstart
  $rest count "$uri" quickstart "$work/qs-store" || true
fi

if [[ $what == fault || $what == all ]]; then
  echo "== fault: server killed mid-sweep, restarted, pulse sync"
  port=$(free_port); start_server fault "$port"; uri=http://127.0.0.1:$port
  store=$work/fault-store; exp=fault-sweep
  PULSE_STORE=$store "$pulse" run tests/e2e/specs/mlflow_sweep.toml --no-progress \
    --set "tracker.uri=$uri" --set experiment.name=$exp --set models.bpr-mf.epochs=200 \
    >"$work/fault-run.out" 2>"$work/fault-run.err" &
  run_pid=$!
  # Killed once two runs are on the server (their delivery records say complete).
  until [ "$(grep -l '"complete": true' "$store/$exp"/*/mlflow-sync.json 2>/dev/null | wc -l)" -ge 2 ]; do
    kill -0 $run_pid 2>/dev/null || { echo "the sweep ended early:"; cat "$work/fault-run.err"; exit 1; }
    sleep 0.05
  done
  kill_server fault
  echo "   server killed after $(grep -L RUNNING "$store/$exp"/*/status.json | wc -l) of 8 runs ended," \
    "$(grep -l '"complete": true' "$store/$exp"/*/mlflow-sync.json | wc -l) delivered"
  set +e; wait $run_pid; rc=$?; set -e
  echo "   sweep exit code: $rc"
  grep -E "mlflow" "$work/fault-run.err" | sed 's/^/   stderr: /'
  PULSE_STORE=$store "$pulse" sync --all --dry-run | tail -1
  start_server fault "$port"
  echo "\$ pulse sync --all"
  PULSE_STORE=$store "$pulse" sync --all
  $rest count "$uri" $exp "$store" || true
  echo "\$ pulse sync --all   (again)"
  PULSE_STORE=$store "$pulse" sync --all | tail -1
  $rest count "$uri" $exp "$store" | tail -1 || true
fi

if [[ $what == slow || $what == all ]]; then
  echo "== slow server: proxy adding 2 s per request"
  port=$(free_port); start_server slow "$port"; uri=http://127.0.0.1:$port
  "$proxy_bin" "127.0.0.1:$port" --delay-ms 2000 >"$work/proxy.url" &
  groups+=($!)
  sleep 1; slow_uri=$(head -1 "$work/proxy.url")
  args=(--no-progress -q --set 'experiment.models=["bpr-mf"]' --set "models.bpr-mf.epochs=${SLOW_EPOCHS:-20}"
        --set models.bpr-mf.patience=0)
  : >"$work/slow.tsv"
  for rep in 1 2 3; do
    for mode in local direct slow; do
      case $mode in
        local) set_tracker=(--set tracker.type=local) ;;
        direct) set_tracker=(--set tracker.type=mlflow --set "tracker.uri=$uri") ;;
        slow) set_tracker=(--set tracker.type=mlflow --set "tracker.uri=$slow_uri" --set tracker.flush_timeout=120) ;;
      esac
      store=$work/slow-$mode-$rep
      t0=$(date +%s.%N)
      PULSE_STORE=$store "$pulse" run experiments/quickstart.toml "${args[@]}" "${set_tracker[@]}" \
        --set "experiment.name=slow-$mode-$rep" >/dev/null
      wall=$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")
      fit=$($rest fit "$store" "slow-$mode-$rep" | awk '{print $3}')
      echo -e "$mode\t$rep\t$fit\t$wall" | tee -a "$work/slow.tsv"
    done
  done
  python3 - "$work/slow.tsv" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
fit = {m: [float(r[2]) for r in rows if r[0] == m] for m in ("local", "direct", "slow")}
wall = {m: [float(r[3]) for r in rows if r[0] == m] for m in ("local", "direct", "slow")}
med = {m: statistics.median(v) for m, v in fit.items()}
for m in fit:
    print(f"   {m:6s} training s (fit_seconds) {fit[m]} median {med[m]:.2f}; wall {wall[m]}")
print(f"   slow vs direct: {100 * (med['slow'] / med['direct'] - 1):+.1f}% training time; "
      f"slow vs local store only: {100 * (med['slow'] / med['local'] - 1):+.1f}%")
EOF
fi

if [[ $what == overhead || $what == all ]]; then
  echo "== overhead"
  port=$(free_port); start_server overhead "$port"; uri=http://127.0.0.1:$port
  PULSE_TEST_MLFLOW_URI=$uri cargo bench -q -p pulse-track --bench mlflow_overhead
  "$proxy_bin" "127.0.0.1:$port" >"$work/count-proxy.url" &
  groups+=($!)
  sleep 1; count_uri=$(head -1 "$work/count-proxy.url")
  echo "\$ pulse run experiments/quickstart.toml --set 'experiment.models=[\"bpr-mf\"]' --set models.bpr-mf.epochs=100 --set models.bpr-mf.patience=0 (through a counting proxy)"
  PULSE_STORE=$work/count-store "$pulse" run experiments/quickstart.toml --no-progress -q \
    --set 'experiment.models=["bpr-mf"]' --set models.bpr-mf.epochs=100 --set models.bpr-mf.patience=0 \
    --set tracker.type=mlflow --set "tracker.uri=$count_uri" --set experiment.name=epochs100 >/dev/null
  points=$(cat "$work"/count-store/epochs100/*/metrics.jsonl | wc -l)
  fit=$($rest fit "$work/count-store" epochs100 | awk '{print $3}')
  echo "   100-epoch run: $points metric points, training $fit s; requests by endpoint:"
  curl -s "$count_uri/__proxy/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
per = {}
for p, n in s["by_path"].items():
    k = "artifact uploads" if "/mlflow-artifacts/" in p else p.replace("/api/2.0/mlflow/", "")
    per[k] = per.get(k, 0) + n
print("   total", s["requests"], per)'
fi
echo "== done (work files in $work)"
