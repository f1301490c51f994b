-- Loaded by bench/harness.py into every wrk run: the request (from env BENCH_METHOD,
-- BENCH_BODY, BENCH_AUTH) and one machine-readable result line with exact percentiles (µs).
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")
wrk.method = method
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d timeouts=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d bytes=%d\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, summary.bytes))
end
