# Shared by the bench scripts: build a release binary, start it on 127.0.0.1 with its own data
# folder, create a key. Source it after setting `config` (optional TOML text); sets $bin, $work,
# $port, $pid, IMAGEGATE_KEY, and stops the server and removes $work at exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/imagegate-target}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin imagegate
bin="$CARGO_TARGET_DIR/release/imagegate"
work=$(mktemp -d)
printf '%s\n' "${config:-}" > "$work/imagegate.toml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --config "$work/imagegate.toml" --data-dir "$work/data" serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
IMAGEGATE_KEY=$("$bin" --config "$work/imagegate.toml" --data-dir "$work/data" keys create --quiet)
export IMAGEGATE_KEY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
