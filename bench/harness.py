#!/usr/bin/env python3
"""imagegate's benchmark harness (run it through bench/run.sh, which installs what it needs).

Method, so that figures from a shared, noisy 2-core machine can be trusted:
- the target under test (imagegate, LiteLLM, nginx) runs pinned to CPU 0; the load generator
  (wrk) and the fake upstream run pinned to CPU 1;
- every target in a run gets the same fake upstream, request body and CPU layout;
- rounds are interleaved (direct, imagegate, LiteLLM, direct, ...) and the median round is
  reported, with ratios measured side by side.
Every process started here is stopped by PID at exit. Results are appended to bench/RESULTS.md.
"""

import atexit
import base64
import datetime
import json
import random
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/imagegate-target"))
IMAGEGATE = os.path.join(TARGET, "release", "imagegate")
FAKE = os.path.join(TARGET, "release", "fake-upstream")
CONVERT = os.path.join(TARGET, "release", "examples", "convert")
BATCH_VALIDATE = os.path.join(TARGET, "release", "examples", "batch_validate")
FAKE_GEMINI = os.path.join(TARGET, "release", "fake-gemini")
WORK = os.path.join(ROOT, "bench", ".work")
LITELLM = os.path.join(WORK, "litellm-venv", "bin", "litellm")
WRK_LUA = os.path.join(ROOT, "bench", "wrk_report.lua")
RESULTS = os.path.join(ROOT, "bench", "RESULTS.md")

QUICK = os.environ.get("BENCH_QUICK") == "1"
# An earlier imagegate binary to run side by side with this one (overhead, payload, async,
# serve): a change's effect measured in one run, not against figures from another day.
BASELINE = os.environ.get("BENCH_BASELINE")
ROUNDS = 1 if QUICK else int(os.environ.get("ROUNDS", "3"))
DURATION = 1 if QUICK else int(os.environ.get("DURATION", "5"))
GATEWAY_CPU, LOAD_CPU = "0", "1"
MASTER_KEY = "sk-bench-master-key"
PROMPT_BODY = {"model": "gpt-image-1", "prompt": "a small red cube on a wooden table", "size": "1024x1024"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

_procs = []
_report = []


def log(msg):
    print(msg, flush=True)


def out(line=""):
    """A line of the report (printed now, appended to RESULTS.md at the end)."""
    _report.append(line)
    print(line, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    def __init__(self, name, cmd, cpu, env=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(WORK, f"{name}.log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.log_path, "wb") as logf:
            self.p = subprocess.Popen(
                ["taskset", "-c", cpu] + cmd, stdout=logf, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                start_new_session=True)
        _procs.append(self)

    @property
    def pid(self):
        return self.p.pid

    def pids(self):
        """This process and its descendants (LiteLLM runs uvicorn under a wrapper)."""
        found = [self.pid]
        try:
            kids = subprocess.run(["pgrep", "-s", str(self.pid)], capture_output=True, text=True).stdout.split()
            found += [int(k) for k in kids if int(k) != self.pid]
        except OSError:
            pass
        return found

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except (OSError, IndexError, ValueError):
                pass
        return total / CLK_TCK

    def status_kb(self, field):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith(field + ":"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def rss_mb(self):
        return self.status_kb("VmRSS") / 1024

    def peak_mb(self):
        return self.status_kb("VmHWM") / 1024

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.p.wait()
        if self in _procs:
            _procs.remove(self)
        # A gateway's data folder goes with it: a full run stores tens of GB of images.
        data = getattr(self, "dir", None)
        if data and os.path.isdir(data):
            shutil.rmtree(data, ignore_errors=True)

    def tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def stop_all():
    for p in list(_procs):
        p.stop()


atexit.register(stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def http(method, url, body=None, token=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, proc, within=60.0):
    deadline = time.time() + within
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise SystemExit(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{proc.name} did not answer {url} within {within}s:\n{proc.tail()}")


def wrk(url, conns, seconds, method="GET", body=None, token=None, timeout="30s", threads=1):
    env = dict(os.environ, BENCH_METHOD=method, BENCH_BODY=json.dumps(body) if body is not None else "",
               BENCH_AUTH=token or "")
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", timeout,
           "-s", WRK_LUA, url]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(r"RESULT (.*)", res.stdout)
    if not m:
        raise SystemExit(f"wrk failed: {res.stdout}\n{res.stderr}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


# ---------------------------------------------------------------- targets


def start_fake(size=64, delay_ms=0, image=None):
    port = free_port()
    cmd = [FAKE, "--listen", f"127.0.0.1:{port}", "--size", str(size), "--delay-ms", str(delay_ms)]
    if image:
        cmd += ["--image", image]
    p = Proc(f"fake-{port}", cmd, LOAD_CPU)
    wait_http(f"http://127.0.0.1:{port}/healthz", p)
    p.base = f"http://127.0.0.1:{port}"
    return p


def start_imagegate(fake, extra_toml="", env=None, name="imagegate", openai_extra="", binary=None):
    binary = binary or IMAGEGATE
    port = free_port()
    d = tempfile.mkdtemp(prefix="imagegate-", dir=WORK)
    toml = f"""
[providers.openai_compat]
api_key = "sk-bench"
base_url = "{fake.base if fake else 'http://127.0.0.1:9'}"
{openai_extra}
{extra_toml}
"""
    with open(os.path.join(d, "imagegate.toml"), "w") as f:
        f.write(toml)
    args = ["--config", os.path.join(d, "imagegate.toml"), "--data-dir", os.path.join(d, "data")]
    p = Proc(name, [binary] + args + ["serve", "--listen", f"127.0.0.1:{port}"], GATEWAY_CPU, env=env)
    wait_http(f"http://127.0.0.1:{port}/healthz", p)
    key = subprocess.run([binary] + args + ["keys", "create", "--quiet"], capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})}).stdout.strip()
    p.base, p.key, p.dir = f"http://127.0.0.1:{port}", key, d
    return p


def start_litellm(fake):
    port = free_port()
    cfg = os.path.join(WORK, f"litellm-{port}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""model_list:
  - model_name: gpt-image-1
    litellm_params:
      model: openai/gpt-image-1
      api_base: {fake.base}/v1
      api_key: sk-fake
  - model_name: gemini-2.5-flash-image
    litellm_params:
      model: gemini/gemini-2.5-flash-image
      api_base: {fake.base}
      api_key: fake-gemini-key
litellm_settings:
  callbacks: []
  num_retries: 0
general_settings:
  master_key: {MASTER_KEY}
""")
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "True"}
    env.pop("DATABASE_URL", None)
    p = Proc("litellm", [LITELLM, "--config", cfg, "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
             GATEWAY_CPU, env=env)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", p, within=180)
    p.base, p.key = f"http://127.0.0.1:{port}", MASTER_KEY
    # One request to warm imports and connection pools (LiteLLM loads lazily).
    status, body = http("POST", f"{p.base}/v1/images/generations", PROMPT_BODY, MASTER_KEY, timeout=60)
    if status != 200:
        raise SystemExit(f"LiteLLM answered {status}: {body[:500]!r}\n{p.tail()}")
    return p


def start_baseline(fake, extra_toml=""):
    return start_imagegate(fake, extra_toml, name="baseline", binary=BASELINE) if BASELINE else None


def targets_for(fake, gateway, litellm, baseline=None):
    """name -> (url, body, token, process whose CPU is charged)."""
    url_body = dict(PROMPT_BODY, response_format="url")
    b64_body = dict(PROMPT_BODY, response_format="b64_json")
    t = {
        "direct": (f"{fake.base}/v1/images/generations", PROMPT_BODY, "sk-fake", fake),
        "imagegate url": (f"{gateway.base}/v1/images/generations", url_body, gateway.key, gateway),
        "imagegate b64": (f"{gateway.base}/v1/images/generations", b64_body, gateway.key, gateway),
    }
    if baseline:
        t["baseline url"] = (f"{baseline.base}/v1/images/generations", url_body, baseline.key, baseline)
        t["baseline b64"] = (f"{baseline.base}/v1/images/generations", b64_body, baseline.key, baseline)
    if litellm:
        t["LiteLLM"] = (f"{litellm.base}/v1/images/generations", PROMPT_BODY, litellm.key, litellm)
    return t


def measure(target, conns, seconds):
    url, body, token, proc = target
    c0 = proc.cpu_seconds()
    r = wrk(url, conns, seconds, "POST", body, token, timeout="60s")
    r["cpu_us"] = (proc.cpu_seconds() - c0) * 1e6 / max(r["requests"], 1)
    return r


def interleaved(targets, conns_list, seconds):
    """{(name, conns): median-round result}, rounds interleaved across targets."""
    runs = {}
    for conns in conns_list:
        for rnd in range(ROUNDS):
            for name, target in targets.items():
                r = measure(target, conns, seconds)
                runs.setdefault((name, conns), []).append(r)
                log(f"  round {rnd + 1} c={conns} {name}: {r['rps']:.0f} req/s p50 {r['p50_us']} us "
                    f"p99 {r['p99_us']} us cpu {r['cpu_us']:.0f} us/req errors {r['errors'] + r['non2xx']}")
    med = {}
    for k, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["rps"])
        m = dict(rs[len(rs) // 2])
        m["errors_all"] = sum(r["errors"] + r["non2xx"] for r in rs)
        med[k] = m
    return med


def ms(us):
    return f"{us / 1000:.2f}"


def table(med, names, conns_list, mb_per_image=None):
    cols = ["target", "conc", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "× direct", "× LiteLLM"]
    cols += ["CPU ms/MB"] if mb_per_image else []
    cols += ["errors"]
    out("| " + " | ".join(cols) + " |")
    out("|" + "---|" * len(cols))
    for conns in conns_list:
        direct = med.get(("direct", conns))
        lite = med.get(("LiteLLM", conns))
        for name in names:
            r = med.get((name, conns))
            if not r:
                continue
            xd = f"{r['rps'] / direct['rps']:.3f}" if direct else "-"
            xl = f"{r['rps'] / lite['rps']:.1f}" if lite else "-"
            row = f"| {name} | {conns} | {r['rps']:.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {r['cpu_us']:.0f} | {xd} | {xl} |"
            if mb_per_image:
                row += f" {r['cpu_us'] / 1000 / mb_per_image:.2f} |"
            out(row + f" {r['errors_all']} |")


# ---------------------------------------------------------------- scenarios


def scenario_overhead():
    out("### 1. Overhead, 64×64 image (instant fake upstream)")
    fake = start_fake(size=64)
    gw = start_imagegate(fake)
    base = start_baseline(fake)
    lite = None if os.environ.get("BENCH_NO_LITELLM") else start_litellm(fake)
    conns = [1, 16, 64]
    med = interleaved(targets_for(fake, gw, lite, base), conns, DURATION)
    table(med, ["direct", "imagegate url", "imagegate b64", "baseline url", "baseline b64", "LiteLLM"], conns)
    d, g = med[("direct", 1)], med[("imagegate url", 1)]
    out()
    out(f"Added latency at concurrency 1 (imagegate url − direct): p50 +{ms(g['p50_us'] - d['p50_us'])} ms, "
        f"p99 +{ms(g['p99_us'] - d['p99_us'])} ms.")
    if lite:
        l1 = med[("LiteLLM", 1)]
        out(f"LiteLLM − direct: p50 +{ms(l1['p50_us'] - d['p50_us'])} ms, p99 +{ms(l1['p99_us'] - d['p99_us'])} ms.")
    out()
    for p in (gw, base, lite, fake):
        if p:
            p.stop()


def scenario_payload():
    out("### 2. Payload scaling, 1024×1024 PNG (3.1 MB; 4.2 MB as base64 JSON)")
    fake = start_fake(size=1024)
    # Images are written to disk (fsync) per request: keep the run's data bounded.
    gw = start_imagegate(fake, '[storage]\nretention = "15s"\nsweep_interval = "3s"\n')
    base = start_baseline(fake, '[storage]\nretention = "15s"\nsweep_interval = "3s"\n')
    lite = None if os.environ.get("BENCH_NO_LITELLM") else start_litellm(fake)
    conns = [1, 16]
    med = interleaved(targets_for(fake, gw, lite, base), conns, DURATION)
    table(med, ["direct", "imagegate url", "imagegate b64", "baseline url", "baseline b64", "LiteLLM"], conns,
          mb_per_image=3.1)
    out()
    for p in (gw, base, lite, fake):
        if p:
            p.stop()


def scenario_memory():
    out("### 3. Memory (RSS, MB): idle, peak under the 1024×1024 load at concurrency 16, and after")
    settle = 5 if QUICK else 60
    fake = start_fake(size=1024)
    gw = start_imagegate(fake, '[storage]\nretention = "15s"\nsweep_interval = "3s"\n')
    lite = None if os.environ.get("BENCH_NO_LITELLM") else start_litellm(fake)
    procs = {"imagegate": (gw, dict(PROMPT_BODY, response_format="url")), "LiteLLM": (lite, PROMPT_BODY)}
    out(f"| target | idle | peak under load | {settle} s after the load |")
    out("|---|---|---|---|")
    for name, (p, body) in procs.items():
        if not p:
            continue
        time.sleep(2)
        idle = p.rss_mb()
        wrk(f"{p.base}/v1/images/generations", 16, DURATION * 2, "POST", body, p.key, timeout="60s")
        peak = p.peak_mb()
        time.sleep(settle)
        out(f"| {name} | {idle:.0f} | {peak:.0f} | {p.rss_mb():.0f} |")
    out()
    for p in (gw, lite, fake):
        if p:
            p.stop()


def scenario_hold():
    n = 500 if QUICK else int(os.environ.get("HOLD_CONNECTIONS", "10000"))
    hold_ms = 5000 if QUICK else 60000
    out(f"### 4. Held connections: {n} concurrent sync requests, fake upstream takes {hold_ms // 1000} s")
    fake = start_fake(size=64, delay_ms=hold_ms)
    # h2c to the fake: the held upstream calls share one socket. Over HTTP/1.1 each held request
    # needs two sockets in the gateway, and this machine's hard limit is 20,000 descriptors.
    gw = start_imagegate(
        fake,
        f'[worker]\nconcurrency = {n + 100}\n[server]\nmax_connections = {n + 1000}\n',
        openai_extra="http2_prior_knowledge = true",
    )
    idle = gw.rss_mb()
    body = dict(PROMPT_BODY, response_format="url")
    result = {}

    def load():
        result["r"] = wrk(f"{gw.base}/v1/images/generations", n, hold_ms // 1000 + 30, "POST", body, gw.key,
                          timeout=f"{hold_ms // 1000 + 60}s", threads=2)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(min(15, hold_ms / 4000))
    health = wrk(f"{gw.base}/healthz", 1, max(1, hold_ms // 1000 // 3))
    held = gw.rss_mb()  # all requests still waiting on the upstream
    t.join()
    r = result["r"]
    out("| held | completed | errors | idle RSS MB | RSS while held MB | KiB per held request | "
        "peak RSS MB (incl. all completing at once) | /healthz p50 ms | /healthz p99 ms |")
    out("|---|---|---|---|---|---|---|---|---|")
    peak = gw.peak_mb()
    out(f"| {n} | {r['requests']} | {r['errors'] + r['non2xx']} | {idle:.0f} | {held:.0f} | "
        f"{(held - idle) * 1024 / n:.1f} | {peak:.0f} | {ms(health['p50_us'])} | {ms(health['p99_us'])} |")
    out()
    gw.stop()
    fake.stop()


class _Hooks(BaseHTTPRequestHandler):
    arrivals = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            task = json.loads(body)["data"]
            if task.get("status") == "completed":
                _Hooks.arrivals[task["id"]] = time.time()
        except (ValueError, KeyError):
            pass
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def scenario_async():
    out("### 5. Async")
    body = dict(PROMPT_BODY, response_format="url")
    burst = DURATION * 2
    out("| measure | value |")
    out("|---|---|")
    # Durable submits alone: the upstream holds every call for a minute, so workers stay busy
    # with their first 64 tasks and the rest of the burst waits in the queue.
    for label, binary in [("", IMAGEGATE)] + ([(" (baseline)", BASELINE)] if BASELINE else []):
        fake = start_fake(size=64, delay_ms=120000)
        gw = start_imagegate(fake, binary=binary)
        r = wrk(f"{gw.base}/v1/images/generations/async", 64, burst, "POST", body, gw.key)
        accepted = r["requests"] - r["non2xx"]
        out(f"| {burst} s burst of async submits, concurrency 64, workers busy (submit path alone){label} | "
            f"{accepted / (r['duration_us'] / 1e6):.0f} accepted/s, p50 {ms(r['p50_us'])} ms, "
            f"p99 {ms(r['p99_us'])} ms, {r['errors'] + r['non2xx']} errors |")
        gw.stop()
        fake.stop()
    # The same burst with an instant upstream: every accepted task also runs to completion.
    fake = start_fake(size=64)
    gw = start_imagegate(fake)
    r = wrk(f"{gw.base}/v1/images/generations/async", 64, burst, "POST", body, gw.key)
    accepted = r["requests"] - r["non2xx"]
    out(f"| the same burst, instant upstream (each task also claimed, generated, stored, completed) | "
        f"{accepted / (r['duration_us'] / 1e6):.0f} accepted/s, p50 {ms(r['p50_us'])} ms, p99 {ms(r['p99_us'])} ms, "
        f"{r['errors'] + r['non2xx']} errors |")
    # Polling a task, once the burst's backlog has run.
    deadline = time.time() + 300
    while time.time() < deadline:
        status, page = http("GET", f"{gw.base}/v1/tasks?status=queued&limit=1", token=gw.key)
        status2, page2 = http("GET", f"{gw.base}/v1/tasks?status=running&limit=1", token=gw.key)
        if not json.loads(page)["data"] and not json.loads(page2)["data"]:
            break
        time.sleep(0.5)
    status, task = http("POST", f"{gw.base}/v1/images/generations/async", body, gw.key)
    task_id = json.loads(task)["id"]
    time.sleep(0.5)
    poll = wrk(f"{gw.base}/v1/tasks/{task_id}", 16, DURATION, "GET", None, gw.key)
    out(f"| polling GET /v1/tasks/{{id}}, concurrency 16 | {poll['rps']:.0f} req/s, p50 {ms(poll['p50_us'])} ms, "
        f"p99 {ms(poll['p99_us'])} ms |")
    gw.stop()
    fake.stop()

    # Completion lag: upstream takes 1 s; lag = webhook arrival − submit − 1 s.
    fake = start_fake(size=64, delay_ms=1000)
    gw = start_imagegate(fake, env={"IMAGEGATE_WEBHOOK_ALLOW_PRIVATE": "1"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    n = 50 if QUICK else 300
    submitted = {}
    for _ in range(n):
        t0 = time.time()
        status, task = http("POST", f"{gw.base}/v1/images/generations/async",
                            dict(body, webhook_url=hook, webhook_events=["completed"]), gw.key)
        submitted[json.loads(task)["id"]] = t0
        time.sleep(0.01)
    deadline = time.time() + 60
    while len(_Hooks.arrivals) < n and time.time() < deadline:
        time.sleep(0.1)
    lags = sorted((_Hooks.arrivals[i] - t0 - 1.0) * 1000 for i, t0 in submitted.items() if i in _Hooks.arrivals)
    server.shutdown()
    if lags:
        out(f"| completion lag (webhook arrival − submit − 1 s upstream), {n} tasks at ~80/s | "
            f"p50 {lags[len(lags) // 2]:.1f} ms, p99 {lags[int(len(lags) * 0.99) - 1]:.1f} ms, "
            f"{n - len(lags)} missing |")
    gw.stop()
    fake.stop()

    # Memory per in-flight task: upstream holds each call for 60 s.
    n = 200 if QUICK else 2000
    fake = start_fake(size=64, delay_ms=60000)
    gw = start_imagegate(fake, f'[worker]\nconcurrency = {n + 10}\n')
    time.sleep(1)
    before = gw.rss_mb()
    for _ in range(n):
        http("POST", f"{gw.base}/v1/images/generations/async", body, gw.key)
    time.sleep(3)
    during = gw.rss_mb()
    out(f"| memory per in-flight task ({n} tasks waiting on the upstream) | "
        f"{(during - before) * 1024 / n:.1f} KiB ({before:.0f} → {during:.0f} MB) |")
    out()
    gw.stop()
    fake.stop()


def scenario_serve():
    out("### 6. Serving a stored 1 MB image: imagegate vs nginx, same file, concurrency 64")
    fake = start_fake(size=590)  # noise PNG: 590×590×3 ≈ 1.04 MB
    gw = start_imagegate(fake)
    status, body = http("POST", f"{gw.base}/v1/images/generations", dict(PROMPT_BODY, response_format="url"), gw.key)
    url = json.loads(body)["data"][0]["url"]
    name = url.rsplit("/", 1)[1]
    root = os.path.join(WORK, "nginx-root")
    os.makedirs(root, exist_ok=True)
    stem = name.split(".")[0]
    shutil.copy(os.path.join(gw.dir, "data", "images", stem[-2:], name), os.path.join(root, name))
    size_mb = os.path.getsize(os.path.join(root, name)) / 1e6
    port = free_port()
    conf = os.path.join(WORK, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  types {{ image/png png; }}
  server {{ listen 127.0.0.1:{port}; root {root}; etag on; }}
}}
""")
    nginx = Proc("nginx", ["nginx", "-c", conf, "-p", WORK], GATEWAY_CPU)
    wait_http(f"http://127.0.0.1:{port}/{name}", nginx)
    targets = {"nginx": (f"http://127.0.0.1:{port}/{name}", nginx), "imagegate": (url, gw)}
    base = start_baseline(fake)
    if base:
        status, body = http("POST", f"{base.base}/v1/images/generations", dict(PROMPT_BODY, response_format="url"),
                            base.key)
        targets["baseline"] = (json.loads(body)["data"][0]["url"], base)
    runs = {}
    for _ in range(ROUNDS):
        for tname, (u, p) in targets.items():
            c0 = p.cpu_seconds()
            r = wrk(u, 64, DURATION)
            r["cpu_us"] = (p.cpu_seconds() - c0) * 1e6 / max(r["requests"], 1)
            runs.setdefault(tname, []).append(r)
            log(f"  {tname}: {r['rps']:.0f} req/s")
    out("| server | req/s | MB/s | p50 ms | p99 ms | CPU µs/req | × nginx |")
    out("|---|---|---|---|---|---|---|")
    med = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in runs.items()}
    for tname in ("nginx", "imagegate", "baseline"):
        if tname not in med:
            continue
        r = med[tname]
        out(f"| {tname} | {r['rps']:.0f} | {r['rps'] * size_mb:.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | "
            f"{r['cpu_us']:.0f} | {r['rps'] / med['nginx']['rps']:.2f} |")
    out(f"\nThe file: {size_mb:.2f} MB PNG.\n")
    for p in (nginx, gw, base, fake):
        if p:
            p.stop()


def scenario_convert():
    out("### Conversion of a 4096×4096 image to lossy WebP (quality 80): imagegate vs libvips")
    d = os.path.join(WORK, "convert")
    subprocess.run([CONVERT, "--make-inputs", d, "4096"], check=True)
    runs = {}
    for _ in range(ROUNDS):
        for src in ("png", "jpeg"):
            inp = os.path.join(d, f"input.{src}")
            for tool, cmd in (("imagegate", [CONVERT, inp, os.path.join(d, "ours.webp"), "80"]),
                              ("libvips", ["vips", "copy", inp, os.path.join(d, "vips.webp") + "[Q=80]"])):
                t0 = time.perf_counter()
                subprocess.run(["taskset", "-c", GATEWAY_CPU] + cmd, check=True, env=dict(os.environ, VIPS_CONCURRENCY="1"))
                runs.setdefault((src, tool), []).append(time.perf_counter() - t0)
    vips_version = subprocess.run(["vips", "--version"], capture_output=True, text=True).stdout.strip()
    out("| input | imagegate s | libvips s | imagegate ÷ libvips (time) | output bytes (ours / vips) |")
    out("|---|---|---|---|---|")
    for src in ("png", "jpeg"):
        ours = statistics.median(runs[(src, "imagegate")])
        theirs = statistics.median(runs[(src, "libvips")])
        # Sizes from the last round's outputs of this input.
        subprocess.run([CONVERT, os.path.join(d, f"input.{src}"), os.path.join(d, "ours.webp"), "80"], check=True)
        subprocess.run(["vips", "copy", os.path.join(d, f"input.{src}"), os.path.join(d, "vips.webp") + "[Q=80]"],
                       check=True)
        sizes = f"{os.path.getsize(os.path.join(d, 'ours.webp'))} / {os.path.getsize(os.path.join(d, 'vips.webp'))}"
        in_mb = os.path.getsize(os.path.join(d, f"input.{src}")) / 1e6
        out(f"| {src.upper()} ({in_mb:.1f} MB) | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | {sizes} |")
    out(f"\nBoth as one process per conversion (start, decode, encode, write), pinned to one core, "
        f"median of {ROUNDS}; {vips_version}, VIPS_CONCURRENCY=1.\n")

PG_SERVER = os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432")


def psql(db, sql):
    """One statement through psql; its first value."""
    r = subprocess.run(["psql", f"{PG_SERVER}/{db}", "-XAtqc", sql], capture_output=True, text=True, check=True)
    return r.stdout.strip()


def pg_database():
    """A fresh database for one gateway; its URL."""
    name = f"imagegate_bench_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    psql("postgres", f"CREATE DATABASE {name}")
    return name, f"{PG_SERVER}/{name}?sslmode=disable"


def pg_counters(db):
    """(WAL position, commits, rows written) of the database now (statistics settle first)."""
    time.sleep(1.0)
    lsn = psql(db, "SELECT pg_current_wal_lsn()")
    commits = int(psql(db, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
    rows = int(psql(db, "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"))
    return lsn, commits, rows


def fill_tasks(gw, backend, db, n):
    """n completed tasks of the gateway's key, written straight into its database."""
    cols = ("id, owner, status, mode, model, request, result, attempts, created_at, updated_at, completed_at, "
            "cost_usd, reserved_usd, reserved_images, usage_day")
    if backend == "postgres":
        owner = psql(db, "SELECT id FROM keys ORDER BY id DESC LIMIT 1")
        psql(db, f"INSERT INTO tasks ({cols}) SELECT 'task_' || lpad(g::text, 26, '0'), '{owner}', 'completed', "
                 f"'async', 'nano-banana-pro', '{{\"prompt\":\"p\"}}', '{{\"data\":[]}}', 1, g, g, g, 0.134, 0.134, 1, "
                 f"'2026-12-01' FROM generate_series(1, {n}) g")
        psql(db, "ANALYZE tasks")
    else:
        import sqlite3
        con = sqlite3.connect(os.path.join(gw.dir, "data", "imagegate.db"), timeout=30)
        owner = con.execute("SELECT id FROM keys ORDER BY id DESC LIMIT 1").fetchone()[0]
        rows = ((f"task_{i:026d}", owner, "completed", "async", "nano-banana-pro", '{"prompt":"p"}', '{"data":[]}', 1,
                 i, i, i, 0.134, 0.134, 1, "2026-12-01") for i in range(1, n + 1))
        con.executemany(f"INSERT INTO tasks ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
        con.execute("ANALYZE")
        con.close()


def scenario_postgres():
    out("### 8. The store on PostgreSQL, side by side with SQLite")
    body = dict(PROMPT_BODY, response_format="url")
    burst = DURATION * 2
    stored = 20_000 if QUICK else 1_000_000
    out("| measure | SQLite | PostgreSQL |")
    out("|---|---|---|")
    rows = {}
    for backend in ["sqlite", "postgres"]:
        fake = start_fake(size=64, delay_ms=120000)
        env, db = None, None
        if backend == "postgres":
            db, url = pg_database()
            env = {"IMAGEGATE_DATABASE_URL": url, "IMAGEGATE_SHARED_FOLDER": "1"}
        gw = start_imagegate(fake, env=env)
        before = pg_counters(db) if db else None
        r = wrk(f"{gw.base}/v1/images/generations/async", 64, burst, "POST", body, gw.key)
        accepted = r["requests"] - r["non2xx"]
        rows.setdefault("submit", {})[backend] = (
            f"{accepted / (r['duration_us'] / 1e6):.0f}/s, p50 {ms(r['p50_us'])} ms, p99 {ms(r['p99_us'])} ms, "
            f"{r['errors'] + r['non2xx']} errors")
        if db:
            after = pg_counters(db)
            wal = int(psql(db, f"SELECT pg_wal_lsn_diff('{after[0]}', '{before[0]}')"))
            rows["wal"] = {"postgres": f"{wal / accepted:.0f} B of WAL, {(after[1] - before[1]) / accepted:.2f} commits, "
                                       f"{(after[2] - before[2]) / accepted:.1f} rows written",
                           "sqlite": "(one process: WAL frames, not comparable)"}
        gw.stop()
        # Reads with many tasks stored: the same gateway restarted on its database, a million tasks in.
        gw = start_imagegate(fake, env=env)
        http("POST", f"{gw.base}/v1/images/generations/async", body, gw.key)
        fill_tasks(gw, backend, db, stored)
        mid = f"task_{stored // 2:026d}"
        poll = wrk(f"{gw.base}/v1/tasks/{mid}", 16, DURATION, "GET", None, gw.key)
        lst = wrk(f"{gw.base}/v1/tasks?limit=20", 16, DURATION, "GET", None, gw.key)
        rows.setdefault("poll", {})[backend] = f"{poll['rps']:.0f}/s, p99 {ms(poll['p99_us'])} ms"
        rows.setdefault("list", {})[backend] = f"{lst['rps']:.0f}/s, p99 {ms(lst['p99_us'])} ms"
        gw.stop()
        fake.stop()
        if db:
            psql("postgres", f"DROP DATABASE {db}")
    out(f"| {burst} s burst of durable async submits, concurrency 64, workers busy | {rows['submit']['sqlite']} | "
        f"{rows['submit']['postgres']} |")
    out(f"| per accepted task (PostgreSQL's own counters) | {rows['wal']['sqlite']} | {rows['wal']['postgres']} |")
    out(f"| GET /v1/tasks/{{id}} with {stored:,} tasks stored, concurrency 16 | {rows['poll']['sqlite']} | "
        f"{rows['poll']['postgres']} |")
    out(f"| GET /v1/tasks?limit=20 (one key holding them all), concurrency 16 | {rows['list']['sqlite']} | "
        f"{rows['list']['postgres']} |")
    out(f"\nPostgreSQL {psql('postgres', 'SHOW server_version')} on this machine (synchronous_commit = "
        f"{psql('postgres', 'SHOW synchronous_commit')}, fsync = {psql('postgres', 'SHOW fsync')}), "
        f"not pinned: it shares the cores with wrk and the gateway. Gateway pool: 16 connections, no TLS.\n")


def noise_png(side, seed):
    """A PNG of random pixels: it does not compress, so it is about 3 bytes a pixel."""
    rnd = random.Random(seed)
    raw = b"".join(b"\x00" + rnd.randbytes(side * 3) for _ in range(side))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b"")


def post_raw(url, body, content_type, token, timeout=900):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def edit_body(form, images):
    """An edit of `images` with Nano Banana Pro, as multipart (the openai SDK's form) or JSON
    with data: URLs: (body, content type)."""
    if form == "json":
        refs = [{"image_url": "data:image/png;base64," + base64.b64encode(i).decode()} for i in images]
        body = {"model": "nano-banana-pro", "prompt": "compose these", "images": refs}
        return json.dumps(body).encode(), "application/json"
    boundary = "imagegate-bench-" + os.urandom(8).hex()
    parts = []
    for name, value in (("model", "nano-banana-pro"), ("prompt", "compose these")):
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    for k, img in enumerate(images):
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"p{k}.png\"\r\n"
                "Content-Type: image/png\r\n\r\n")
        parts += [head.encode(), img, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def scenario_inputs():
    count, side = (14, 400) if QUICK else (14, 1527)
    images = [noise_png(side, k) for k in range(count)]
    total_mb = sum(len(i) for i in images) / 1e6
    out(f"### 9. One edit with {count} input images of {len(images[0]) / 1e6:.1f} MB ({total_mb:.0f} MB together, "
        "the request limit): gateway RSS, MB")
    out("Sync `POST /v1/images/edits` with Nano Banana Pro to the fake Gemini (which reads the whole call); a fresh "
        "gateway per form. Peak is VmHWM; the inputs must cost at most ~2x their bytes.")
    out()
    out("| form | body MB | idle | peak | peak - idle | (peak - idle) / inputs | seconds | status |")
    out("|---|---|---|---|---|---|---|---|")
    fake = start_fake(size=1024)
    for form in ("multipart", "json"):
        gw = start_imagegate(fake, env={"GEMINI_API_KEY": "bench-gemini-key", "IMAGEGATE_GEMINI_BASE_URL": fake.base},
                             name=f"imagegate-{form}")
        status, _ = http("POST", f"{gw.base}/v1/images/generations", {"model": "nano-banana-pro", "prompt": "warm"},
                         gw.key, timeout=60)
        if status != 200:
            raise SystemExit(f"warm-up answered {status}:\n{gw.tail()}")
        time.sleep(2)
        idle = gw.rss_mb()
        body, ctype = edit_body(form, images)
        t0 = time.time()
        status, answer = post_raw(f"{gw.base}/v1/images/edits", body, ctype, gw.key)
        took = time.time() - t0
        if status != 200:
            log(f"edit answered {status}: {answer[:300]!r}")
        peak = gw.peak_mb()
        out(f"| {form} | {len(body) / 1e6:.0f} | {idle:.0f} | {peak:.0f} | {peak - idle:.0f} | "
            f"{(peak - idle) / total_mb:.2f} | {took:.1f} | {status} |")
        del body
        gw.stop()
    out()
    fake.stop()


def scenario_batch():
    out("### 10. Batch input validation: a 10,000-line input file (target: under 2 s, under 100 MB RSS)")
    out("The checks a batch runs at `validating` (every line parsed and its body validated as a request), over "
        "the file read in 64 KiB chunks; `examples/batch_validate.rs`, one process per run.")
    out()
    path = os.path.join(WORK, "batch-10k.jsonl")
    subprocess.run([BATCH_VALIDATE, "--make", path, "10000"], check=True)
    out(f"| run | file MB | seconds | peak RSS |")
    out("|---|---|---|---|")
    for r in range(ROUNDS):
        res = subprocess.run(["taskset", "-c", GATEWAY_CPU, BATCH_VALIDATE, path], capture_output=True, text=True,
                             check=True).stdout.split()
        # "lines N valid N seconds S HWM kB"
        out(f"| {r + 1} | {os.path.getsize(path) / 1e6:.1f} | {float(res[5]):.3f} | {int(res[6]) / 1024:.0f} MB |")
    out()


def start_fake_gemini():
    """The fake Gemini (generateContent and the Batch API), pinned to the load CPU."""
    p = subprocess.Popen(["taskset", "-c", LOAD_CPU, FAKE_GEMINI], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    base = p.stdout.readline().strip()
    if not base.startswith("http"):
        raise SystemExit("fake-gemini did not start")
    return p, base


def multipart_file(name, data):
    boundary = "imagegate-bench-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def scenario_batch_e2e():
    lines = 100 if QUICK else 1000
    out(f"### 11. A {lines}-line batch end to end against the fake Gemini (target: under a minute)")
    out("`client.batches` as the openai SDK drives it: the JSONL uploaded, the batch created, polled every 0.5 s "
        "until it ends, Nano Banana Pro at 1K, one image per line. Side by side in one run: the lines sent to "
        "Gemini's Batch API as upstream jobs (`[batch] upstream = true`, the default with a Gemini key; 500 lines a "
        "job, polled every 0.5 s) and run on the gateway's own queue as realtime calls (`upstream = false`). "
        "A fresh gateway and fake per path; peak RSS is the gateway's VmHWM.")
    out()
    out("| path | lines | seconds to completed | completed | upstream jobs | cost_usd | realtime price | peak RSS MB |")
    out("|---|---|---|---|---|---|---|---|")
    text = "".join(json.dumps({"custom_id": f"poster-{i}", "method": "POST", "url": "/v1/images/generations",
                               "body": {"model": "nano-banana-pro", "prompt": f"poster {i} of a lighthouse at dusk",
                                        "size": "1024x1024"}}) + "\n" for i in range(lines)).encode()
    for upstream in (True, False):
        fake, base = start_fake_gemini()
        try:
            toml = f'[batch]\nupstream = {"true" if upstream else "false"}\npoll_interval = "500ms"\n'
            gw = start_imagegate(None, extra_toml=toml, env={"GEMINI_API_KEY": "bench-gemini-key",
                                                             "IMAGEGATE_GEMINI_BASE_URL": base},
                                 name=f"imagegate-batch-{'upstream' if upstream else 'queue'}")
            body, ctype = multipart_file("posters.jsonl", text)
            status, answer = post_raw(f"{gw.base}/v1/files", body, ctype, gw.key)
            if status != 200:
                raise SystemExit(f"upload answered {status}: {answer[:300]!r}")
            file_id = json.loads(answer)["id"]
            t0 = time.time()
            status, raw = http("POST", f"{gw.base}/v1/batches", {"input_file_id": file_id,
                               "endpoint": "/v1/images/generations", "completion_window": "24h"}, gw.key)
            if status != 200:
                raise SystemExit(f"batch create answered {status}: {raw[:300]!r}")
            batch = json.loads(raw)
            while True:
                _, raw = http("GET", f"{gw.base}/v1/batches/{batch['id']}", token=gw.key)
                b = json.loads(raw)
                if b["status"] in ("completed", "failed", "expired", "cancelled") or time.time() - t0 > 600:
                    break
                time.sleep(0.5)
            took = time.time() - t0
            _, raw = http("GET", f"{base}/_fake/batches")
            jobs = json.loads(raw)["creations"]
            out(f"| {'Gemini Batch API' if upstream else 'gateway queue (realtime calls)'} | {lines} | {took:.1f} | "
                f"{b['request_counts']['completed']} | {jobs} | {b['cost_usd']:.2f} | {0.134 * lines:.2f} | "
                f"{gw.peak_mb():.0f} |")
            gw.stop()
        finally:
            fake.terminate()
            fake.wait()
    out()


SCENARIOS = {
    "overhead": scenario_overhead,
    "payload": scenario_payload,
    "memory": scenario_memory,
    "hold": scenario_hold,
    "async": scenario_async,
    "serve": scenario_serve,
    "convert": scenario_convert,
    "postgres": scenario_postgres,
    "inputs": scenario_inputs,
    "batch": scenario_batch,
    "batch_e2e": scenario_batch_e2e,
}


def main():
    names = sys.argv[1:] or list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            raise SystemExit(f"unknown scenario {n}; choose from {', '.join(SCENARIOS)}")
    os.makedirs(WORK, exist_ok=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out(f"## {now} — bench/run.sh {' '.join(sys.argv[1:])}".rstrip())
    out()
    if BASELINE:
        out(f"Side by side with the baseline binary {BASELINE}.")
        out()
    out(f"Commit {commit}{' (with uncommitted changes)' if dirty else ''}; `nproc` = {os.cpu_count()}, {cpu}; "
        f"load average at start {load}; {ROUNDS} interleaved round(s) of {DURATION} s; target on CPU {GATEWAY_CPU}, "
        f"wrk and the fake upstream on CPU {LOAD_CPU}.{' QUICK smoke run: figures are not comparable.' if QUICK else ''}")
    out()
    for n in names:
        SCENARIOS[n]()
    stop_all()
    if not QUICK or os.environ.get("BENCH_RECORD") == "1":
        with open(RESULTS, "a") as f:
            f.write("\n" + "\n".join(_report) + "\n")
        log(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
