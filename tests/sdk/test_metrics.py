"""`GET /metrics` read by Prometheus's own text parser (prometheus-client): it parses, it moves
when a request is made, and no label carries an id.
"""

import os
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

BASE = os.environ["IMAGEGATE_BASE_URL"]
KEY = os.environ["IMAGEGATE_KEY"]


def scrape():
    with urllib.request.urlopen(f"{BASE}/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        families = list(text_string_to_metric_families(resp.read().decode()))
    samples = {}
    for f in families:
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def test_metrics_parse_move_and_hold_no_ids():
    _, before = scrape()
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, timeout=120, max_retries=0)
    client.images.generate(model="nano-banana", prompt="a metered owl")
    families, after = scrape()
    key = ("imagegate_http_requests_total",
           (("method", "POST"), ("route", "/v1/images/generations"), ("status", "200")))
    assert after.get(key, 0) - before.get(key, 0) >= 1
    names = {f.name for f in families}
    for expected in ("imagegate_http_requests", "imagegate_http_request_duration_seconds", "imagegate_queue_tasks",
                     "imagegate_upstream_requests", "imagegate_images_stored", "imagegate_tasks_ended"):
        assert expected in names, names
    for (name, labels), _ in after.items():
        for k, v in labels:
            assert not any(p in v for p in ("task_", "img_", "igk_", "key_", "batch_", "file-")), (name, k, v)
