#!/usr/bin/env bash
# One-minute loop of sync url-mode requests against the simulated provider (instant), on a
# release build. Prints requests, errors, req/s and latency percentiles.
#   bench/sync_loop.sh [duration=60s] [connections=16]
# Needs `wrk` (Debian: apt-get install wrk); installs it when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60s}"
conns="${2:-16}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imagegate-target}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin imagegate
bin="$CARGO_TARGET_DIR/release/imagegate"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --data-dir "$work/data" serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
export IMAGEGATE_KEY=$("$bin" --data-dir "$work/data" keys create --quiet)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: bench/sync_loop.sh $duration $conns  (commit $(git rev-parse --short HEAD))"
wrk -t1 -c"$conns" -d"$duration" --timeout 30s -s bench/sync_post.lua "http://127.0.0.1:$port/v1/images/generations"
echo "rss_kb_after=$(grep VmRSS /proc/$pid/status | awk '{print $2}')"
