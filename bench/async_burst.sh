#!/usr/bin/env bash
# A burst of async submits against a release build: accepted tasks/s and submit latency.
#   bench/async_burst.sh [duration=10s] [connections=64]
# Workers are kept out of the way (the simulated provider sleeps 60 s per image), so the figure
# is the durable-submit path alone: auth, validation, one SQLite transaction, the 202.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"
conns="${2:-64}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imagegate-target}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin imagegate
bin="$CARGO_TARGET_DIR/release/imagegate"
work=$(mktemp -d)
printf '[providers.simulated]\nlatency = "60s"\n' > "$work/imagegate.toml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --config "$work/imagegate.toml" --data-dir "$work/data" serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
export IMAGEGATE_KEY=$("$bin" --config "$work/imagegate.toml" --data-dir "$work/data" keys create --quiet)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: bench/async_burst.sh $duration $conns  (commit $(git rev-parse --short HEAD))"
wrk -t2 -c"$conns" -d"$duration" --timeout 10s -s bench/sync_post.lua "http://127.0.0.1:$port/v1/images/generations/async"
echo "rss_kb_after=$(grep VmRSS /proc/$pid/status | awk '{print $2}')"
