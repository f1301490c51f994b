"""The openai SDK's batch flow against imagegate, unchanged: files.create -> batches.create ->
poll batches.retrieve -> files.content. Every line becomes an image at a URL of its own.
"""

import io
import json
import os
import time
import urllib.request

import openai
import pytest
from PIL import Image

BASE = os.environ["IMAGEGATE_BASE_URL"]
KEY = os.environ["IMAGEGATE_KEY"]
ENDPOINT = "/v1/images/generations"


@pytest.fixture
def client():
    return openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, timeout=120, max_retries=0)


def jsonl(lines):
    return "".join(
        json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}) + "\n" for cid, body in lines
    ).encode()


def wait(client, batch_id, limit=120):
    end = time.time() + limit
    while time.time() < end:
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} did not end")


def test_a_batch_of_prompts_comes_back_as_urls_with_bad_lines_in_the_error_file(client):
    lines = [(f"poster-{i}", {"model": "nano-banana", "prompt": f"poster {i}", "size": "1024x1024"}) for i in range(8)]
    lines.append(("too-small", {"model": "nano-banana-pro", "prompt": "x", "size": "7x7"}))
    upload = client.files.create(file=("posters.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h", metadata={"campaign": "spring"}
    )
    assert batch.status == "validating" and batch.metadata == {"campaign": "spring"}
    done = wait(client, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (9, 8, 1)

    out = [json.loads(l) for l in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == sorted(cid for cid, _ in lines[:8])
    first = out[0]["response"]
    assert first["status_code"] == 200
    with urllib.request.urlopen(first["body"]["data"][0]["url"]) as resp:
        assert Image.open(io.BytesIO(resp.read())).size == (1024, 1024)

    errors = [json.loads(l) for l in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["too-small"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["param"] == "size"

    assert batch.id in [b.id for b in client.batches.list(limit=10)]


def test_a_duplicate_custom_id_fails_the_batch_and_a_cancel_ends_one(client):
    dup = client.files.create(
        file=("dup.jsonl", jsonl([("a", {"model": "nano-banana", "prompt": "a"})] * 2)), purpose="batch"
    )
    failed = wait(client, client.batches.create(input_file_id=dup.id, endpoint=ENDPOINT, completion_window="24h").id)
    assert failed.status == "failed"
    assert failed.errors.data[0].code == "duplicate_custom_id" and failed.errors.data[0].line == 2

    slow = [(f"s{i}", {"model": "nano-banana", "prompt": f"slow {i} [sim:delay:5s]"}) for i in range(6)]
    f = client.files.create(file=("slow.jsonl", jsonl(slow)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h")
    cancelling = client.batches.cancel(b.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait(client, b.id)
    assert done.status == "cancelled" and done.request_counts.completed == 0
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_01JAAAAAAAAAAAAAAAAAAAAAAA")


# The gateway in front of the fake Gemini (its Batch API included): lines go to an upstream
# batch job at half the price.
GBASE = os.environ.get("IMAGEGATE_GEMINI_BASE_URL")
GKEY = os.environ.get("IMAGEGATE_GEMINI_KEY")


@pytest.fixture
def gclient():
    if not GBASE:
        pytest.skip("needs the gateway in front of the fake Gemini (scripts/test starts it)")
    return openai.OpenAI(base_url=f"{GBASE}/v1", api_key=GKEY, timeout=120, max_retries=0)


def test_a_batch_on_gemini_runs_as_an_upstream_batch_job_at_half_price(gclient):
    lines = [(f"p{i}", {"model": "nano-banana-pro", "prompt": f"poster {i}", "size": "1024x1024"}) for i in range(4)]
    f = gclient.files.create(file=("posters.jsonl", jsonl(lines)), purpose="batch")
    b = gclient.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h")
    done = wait(gclient, b.id)
    assert done.status == "completed" and done.request_counts.completed == 4
    realtime = 0.134 * 4
    assert abs(done.model_extra["cost_usd"] - realtime / 2) < 1e-9, done.model_extra["cost_usd"]
    out = [json.loads(l) for l in gclient.files.content(done.output_file_id).text.splitlines()]
    assert {o["response"]["body"]["served_by"] for o in out} == {"batch"}


def test_a_flex_request_is_served_by_a_batch_job_before_its_deadline(gclient):
    import httpx

    r = httpx.post(
        f"{GBASE}/v1/images/generations/async",
        headers={"Authorization": f"Bearer {GKEY}"},
        json={"model": "nano-banana-pro", "prompt": "no hurry", "service_tier": "flex", "deadline": 3600},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    end = time.time() + 60
    while time.time() < end:
        t = httpx.get(f"{GBASE}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {GKEY}"}).json()
        if t["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.3)
    assert t["status"] == "completed", t
    assert t["result"]["served_by"] == "batch" and t["cost_usd"] == 0.067
