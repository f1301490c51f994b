#!/usr/bin/env bash
# imagegate's benchmarks, one command:
#   bench/run.sh [overhead|payload|memory|hold|async|serve|convert|postgres|inputs|batch|batch_e2e ...]   (default: all, ~30 min)
# Installs what it needs (wrk, nginx, libvips-tools from Debian; LiteLLM's proxy from PyPI into
# bench/.work/litellm-venv), builds release binaries, starts everything on 127.0.0.1 pinned with
# taskset, runs bounded loads, stops what it started and appends the figures to bench/RESULTS.md.
# Knobs: ROUNDS=3 DURATION=5 (seconds per measurement), HOLD_CONNECTIONS=10000,
# BENCH_NO_LITELLM=1 (skip the peer), BENCH_QUICK=1 (a few-second smoke of each scenario; not recorded),
# BENCH_BASELINE=/path/to/an/earlier/imagegate (run it side by side: overhead, payload, async, serve).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imagegate-target}"
mkdir -p bench/.work

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v vips >/dev/null || need+=(libvips-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts the packaged nginx; the benchmark runs its own.
  { service nginx stop || true; } >/dev/null 2>&1
fi
if [ -z "${BENCH_NO_LITELLM:-}" ] && [ ! -x bench/.work/litellm-venv/bin/litellm ]; then
  echo "installing litellm[proxy]==1.108.7 into bench/.work/litellm-venv"
  python3 -m venv bench/.work/litellm-venv
  bench/.work/litellm-venv/bin/pip install --quiet --disable-pip-version-check "litellm[proxy]==1.108.7"
fi
cargo build --release --quiet --bin imagegate -p imagegate
cargo build --release --quiet --bin fake-upstream --bin fake-gemini -p imagegate-fakes
cargo build --release --quiet --example convert --example batch_validate -p imagegate

# 10,000 held requests need as many sockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/harness.py "$@"
