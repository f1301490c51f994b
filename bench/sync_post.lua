-- wrk script: POST a sync url-mode generation; counts non-2xx answers as errors.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("IMAGEGATE_KEY")
wrk.body = os.getenv("IMAGEGATE_BODY") or '{"model":"nano-banana-pro","prompt":"a benchmark fox","size":"1024x1024"}'

local non2xx = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("requests=%d errors_connect=%d errors_read=%d errors_timeout=%d errors_status=%d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.timeout, summary.errors.status))
  io.write(string.format("req_per_s=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
