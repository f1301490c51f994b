#!/usr/bin/env bash
# One-minute loop of sync url-mode requests against the simulated provider (instant), on a
# release build. Prints requests, errors, req/s and latency percentiles.
#   bench/sync_loop.sh [duration=60s] [connections=16]
# Needs `wrk` (Debian: apt-get install wrk); installs it when missing and run as root.
duration="${1:-60s}"
conns="${2:-16}"
source "$(dirname "$0")/lib.sh"
echo "command: bench/sync_loop.sh $duration $conns  (commit $(git rev-parse --short HEAD))"
wrk -t1 -c"$conns" -d"$duration" --timeout 30s -s bench/sync_post.lua "http://127.0.0.1:$port/v1/images/generations"
echo "rss_kb_after=$(grep VmRSS /proc/$pid/status | awk '{print $2}')"
