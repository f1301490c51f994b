#!/usr/bin/env bash
# A burst of async submits against a release build: accepted tasks/s and submit latency.
#   bench/async_burst.sh [duration=10s] [connections=64]
# Workers are kept out of the way (the simulated provider sleeps 60 s per image), so the figure
# is the durable-submit path alone: auth, validation, one SQLite transaction, the 202.
duration="${1:-10s}"
conns="${2:-64}"
config=$'[providers.simulated]\nlatency = "60s"'
source "$(dirname "$0")/lib.sh"
echo "command: bench/async_burst.sh $duration $conns  (commit $(git rev-parse --short HEAD))"
wrk -t2 -c"$conns" -d"$duration" --timeout 10s -s bench/sync_post.lua "http://127.0.0.1:$port/v1/images/generations/async"
echo "rss_kb_after=$(grep VmRSS /proc/$pid/status | awk '{print $2}')"
