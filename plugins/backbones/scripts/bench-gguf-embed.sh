#!/usr/bin/env bash
# SLM embedding throughput and peak memory: builds and runs the gguf_embed_bench example
# (SmolLM2-135M mean hidden states over the 1,682 MovieLens-100K titles) under /usr/bin/time -v.
#   plugins/backbones/scripts/bench-gguf-embed.sh [--weights auto] [--batch-tokens 1024] [--passes 3]
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -q -p pulse-backbones --example gguf_embed_bench
/usr/bin/time -v target/release/examples/gguf_embed_bench "$@" 2> >(grep -E "Maximum resident|Elapsed|Percent of CPU" >&2)
