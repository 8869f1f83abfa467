#!/usr/bin/env bash
# Encoder throughput and peak memory: builds and runs the bert_bench example (all-MiniLM-L6-v2
# over the 1,682 MovieLens-100K titles, batch 64) under /usr/bin/time -v.
#   plugins/backbones/scripts/bench-bert.sh [--batch 64] [--passes 5]
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -q -p pulse-backbones --example bert_bench
/usr/bin/time -v target/release/examples/bert_bench "$@" 2> >(grep -E "Maximum resident|Elapsed|Percent of CPU" >&2)
