"""The unmodified `google-genai` SDK against imagegate in front of the fake Gemini.

Run by scripts/test with IMAGEGATE_GEMINI_BASE_URL / IMAGEGATE_GEMINI_KEY and FAKE_GEMINI_URL
(what the fake received is at /_fake/calls). Checks what a Nano Banana Pro user of Google's own
SDK would: an image of Gemini's 16:9 2K size, reference images reaching the upstream as sent, a
blocked prompt surfaced as the SDK surfaces it, a revoked key refused, streaming, a chat.
"""

import base64
import io
import json
import os
import subprocess
import time
import urllib.request

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

BASE = os.environ["IMAGEGATE_GEMINI_BASE_URL"]
KEY = os.environ["IMAGEGATE_GEMINI_KEY"]
FAKE = os.environ["FAKE_GEMINI_URL"]
PRO = "gemini-3-pro-image-preview"


def client(key=KEY):
    return genai.Client(api_key=key, http_options={"base_url": BASE})


@pytest.fixture
def gemini():
    # Held for the whole test: a Client closes its connections when it is collected.
    c = client()
    yield c
    c.close()


def calls():
    with urllib.request.urlopen(f"{FAKE}/_fake/calls") as resp:
        return json.load(resp)


def image_of(response):
    for part in response.candidates[0].content.parts:
        if part.inline_data is not None and not part.thought:
            return Image.open(io.BytesIO(part.inline_data.data))
    raise AssertionError(f"no image in {response}")


def test_an_image_of_geminis_16_9_2k_size(gemini):
    response = gemini.models.generate_content(
        model=PRO,
        contents="a harbour at dawn, wide",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K"),
        ),
    )
    assert image_of(response).size == (2752, 1536)
    sent = calls()[-1]["body"]
    assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_two_pil_images_as_references_reach_the_upstream(gemini):
    red, blue = Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (20, 20), (20, 20, 220))
    response = gemini.models.generate_content(model="nano-banana-pro", contents=["put the red on the blue", red, blue])
    assert image_of(response).size[0] > 0
    parts = calls()[-1]["body"]["contents"][0]["parts"]
    assert parts[0] == {"text": "put the red on the blue"}
    sent = [Image.open(io.BytesIO(base64.b64decode(p["inlineData"]["data"]))) for p in parts[1:]]
    assert [im.size for im in sent] == [(40, 30), (20, 20)]
    assert sent[0].convert("RGB").getpixel((5, 5)) == (220, 20, 20)


def test_a_blocked_prompt_is_surfaced_as_the_sdk_surfaces_it(gemini):
    response = gemini.models.generate_content(model="nano-banana-pro", contents="something [fake:block]")
    assert response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert not response.candidates


def test_a_revoked_key_is_unauthenticated():
    key = subprocess.run(
        [os.environ["IMAGEGATE_BIN"], "--data-dir", os.environ["IMAGEGATE_GEMINI_DATA"], "keys", "create", "--name", "revoked"],
        capture_output=True, text=True, check=True,
    ).stdout
    secret = [line.strip() for line in key.splitlines() if line.strip().startswith("igk_")][0]
    kid = [w for w in key.split() if w.startswith("key_")][0]
    c = client(secret)
    assert image_of(c.models.generate_content(model="nano-banana-pro", contents="x")).size[0] > 0
    subprocess.run([os.environ["IMAGEGATE_BIN"], "--data-dir", os.environ["IMAGEGATE_GEMINI_DATA"], "keys", "revoke", kid],
                   check=True, capture_output=True)
    time.sleep(1.5)  # another process revoked it: the server's key cache holds a record a second
    with pytest.raises(errors.ClientError) as err:
        c.models.generate_content(model="nano-banana-pro", contents="x")
    assert err.value.code == 401
    assert err.value.status == "UNAUTHENTICATED"


def test_streaming_yields_the_image(gemini):
    chunks = list(gemini.models.generate_content_stream(model="nano-banana-pro", contents="a lantern"))
    assert image_of(chunks[-1]).size == (1024, 1024)
    # Live previews: Nano Banana Pro's two drafts arrive first, as thought parts.
    drafts = [c.candidates[0].content.parts[0] for c in chunks[:-1]]
    assert len(drafts) == 2 and all(p.thought for p in drafts)
    assert [Image.open(io.BytesIO(p.inline_data.data)).size[0] for p in drafts] == [128, 256]


def test_a_chat_of_two_turns_sends_the_first_image_back(gemini):
    chat = gemini.chats.create(model="nano-banana-pro")
    first = chat.send_message("a red bicycle")
    made = image_of(first)
    second = chat.send_message("make it blue")
    assert image_of(second).size[0] > 0
    contents = calls()[-1]["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    back = [p for p in contents[1]["parts"] if "inlineData" in p][0]
    assert back.get("thoughtSignature") == "c2lnbmF0dXJl", "the upstream's signature, handed back by the SDK"
    assert Image.open(io.BytesIO(base64.b64decode(back["inlineData"]["data"]))).size == made.size
