"""Edits with the unmodified `openai` SDK, against imagegate in front of the fake Gemini.

Run by scripts/test with IMAGEGATE_GEMINI_BASE_URL / IMAGEGATE_GEMINI_KEY (a gateway whose
upstream is the fake Gemini) and FAKE_GEMINI_URL (the fake; what it received is at
/_fake/calls). Checks what a user of Nano Banana Pro would: `images.edit` with two photos gives
an image (url or b64_json), the upstream received both photos, byte for byte, as `inlineData`
after the prompt; a mask goes last with the documented sentence; an async edit's webhook is
signed (Standard Webhooks) and lists the task's inputs.
"""

import base64
import http.server
import io
import json
import os
import queue
import threading
import urllib.request

import openai
import pytest
import standardwebhooks
from PIL import Image

BASE = os.environ["IMAGEGATE_GEMINI_BASE_URL"]
KEY = os.environ["IMAGEGATE_GEMINI_KEY"]
FAKE = os.environ["FAKE_GEMINI_URL"]
MASK_SENTENCE = "The last image is a mask for the first image"


@pytest.fixture
def client():
    return openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, timeout=600, max_retries=0)


def png(w, h, color, alpha=False):
    out = io.BytesIO()
    Image.new("RGBA" if alpha else "RGB", (w, h), color).save(out, format="PNG")
    return out.getvalue()


def last_call():
    with urllib.request.urlopen(f"{FAKE}/_fake/calls") as resp:
        calls = json.load(resp)
    return calls[-1]["body"]["contents"][0]["parts"]


def test_two_photos_are_edited_into_one_and_reach_gemini_as_sent(client):
    a, b = png(64, 48, (200, 30, 30)), png(32, 32, (30, 30, 200))
    result = client.images.edit(
        model="nano-banana-pro",
        image=[("product.png", a, "image/png"), ("background.png", b, "image/png")],
        prompt="put the product on the background",
    )
    with urllib.request.urlopen(result.data[0].url) as resp:
        assert resp.headers["Content-Type"].startswith("image/")
        Image.open(io.BytesIO(resp.read())).verify()
    parts = last_call()
    assert parts[0] == {"text": "put the product on the background"}
    assert parts[1]["inlineData"] == {"mimeType": "image/png", "data": base64.b64encode(a).decode()}
    assert parts[2]["inlineData"] == {"mimeType": "image/png", "data": base64.b64encode(b).decode()}

    inline = client.images.edit(
        model="nano-banana-pro", image=("a.png", a, "image/png"), prompt="brighter", response_format="b64_json"
    )
    Image.open(io.BytesIO(base64.b64decode(inline.data[0].b64_json))).verify()


def test_a_mask_goes_last_with_the_documented_sentence(client):
    photo, mask = png(40, 40, (10, 120, 10)), png(40, 40, (0, 0, 0, 0), alpha=True)
    client.images.edit(
        model="nano-banana-pro",
        image=("garden.png", photo, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="add a pool",
    )
    parts = last_call()
    assert parts[0]["text"].startswith("add a pool") and MASK_SENTENCE in parts[0]["text"]
    assert parts[-1]["inlineData"]["data"] == base64.b64encode(mask).decode()
    with pytest.raises(openai.BadRequestError) as err:
        client.images.edit(
            model="nano-banana-pro",
            image=("garden.png", photo, "image/png"),
            mask=("mask.png", png(8, 8, (0, 0, 0, 0), alpha=True), "image/png"),
            prompt="add a pool",
        )
    assert err.value.body["param"] == "mask"


def test_too_many_images_name_the_first_one_over(client):
    small = png(4, 4, (1, 2, 3))
    with pytest.raises(openai.BadRequestError) as err:
        client.images.edit(model="nano-banana", image=[("p.png", small, "image/png")] * 4, prompt="x")
    assert err.value.body["param"] == "image[3]"


class Receiver(http.server.BaseHTTPRequestHandler):
    got = queue.Queue()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.got.put((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_async_edit_sends_a_signed_webhook_listing_its_inputs(client):
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        photo = png(20, 10, (90, 90, 90))
        # The SDK's own edit call, sent to the async route with `Prefer: respond-async`.
        raw = client.images.with_raw_response.edit(
            model="nano-banana-pro",
            image=("room.png", photo, "image/png"),
            prompt="paint the walls blue",
            extra_body={"webhook_url": f"http://127.0.0.1:{server.server_port}/hook"},
            extra_headers={"Prefer": "respond-async"},
        )
        assert raw.http_response.status_code == 202
        task = raw.http_response.json()
        assert task["status"] in ("queued", "running")
        assert task["inputs"][0]["bytes"] == len(photo)
        headers, body = Receiver.got.get(timeout=60)
        secret = client.get("/webhooks/secret", cast_to=object)["secret"]
        event = standardwebhooks.Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
        assert event["type"] == "task.completed"
        assert event["data"]["id"] == task["id"]
        assert event["data"]["inputs"] == task["inputs"]
        assert event["data"]["result"]["data"][0]["url"]
    finally:
        server.shutdown()
