"""The unmodified official `openai` Python SDK against a running imagegate.

Run by scripts/test with IMAGEGATE_BASE_URL and IMAGEGATE_KEY set to a server on the simulated
provider. Checks what a new user would: the SDK call works, the URL serves a real image of the
asked size, b64_json decodes, and errors arrive as the SDK's typed exceptions.
"""

import base64
import io
import os
import urllib.request

import openai
import pytest
from PIL import Image

BASE = os.environ["IMAGEGATE_BASE_URL"]
KEY = os.environ["IMAGEGATE_KEY"]


@pytest.fixture
def client():
    return openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, timeout=600, max_retries=0)


def fetch(url):
    with urllib.request.urlopen(url) as resp:
        return resp.headers["Content-Type"], resp.read()


def test_generate_returns_a_url_serving_a_2048_image(client):
    resp = client.images.generate(model="nano-banana-pro", prompt="a red fox in snow", size="2048x2048")
    assert len(resp.data) == 1
    url = resp.data[0].url
    assert url.startswith(BASE)
    content_type, body = fetch(url)
    assert content_type == "image/jpeg"
    img = Image.open(io.BytesIO(body))
    assert img.size == (2048, 2048)


def test_b64_json_n_2_and_webp(client):
    resp = client.images.generate(
        model="nano-banana-pro", prompt="two kites", n=2, response_format="b64_json", output_format="webp"
    )
    assert len(resp.data) == 2
    images = [base64.b64decode(d.b64_json) for d in resp.data]
    assert images[0] != images[1]
    for raw in images:
        img = Image.open(io.BytesIO(raw))
        assert img.format == "WEBP"
        assert img.size == (1024, 1024)


def test_extension_fields_pass_through_extra_body(client):
    resp = client.images.generate(
        model="nano-banana-pro", prompt="a wide bay", extra_body={"aspect_ratio": "16:9", "image_size": "2K"}
    )
    _, body = fetch(resp.data[0].url)
    assert Image.open(io.BytesIO(body)).size == (2752, 1536)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "nano-banana-pro" in ids and "gemini-3-pro-image-preview" in ids


def test_bad_size_is_a_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(model="nano-banana-pro", prompt="x", size="13x7")
    assert exc.value.code == "invalid_size"
    assert exc.value.param == "size"


def test_safety_refusal_is_a_bad_request_with_content_policy_code(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(model="nano-banana-pro", prompt="forbidden [sim:refuse]")
    assert exc.value.code == "content_policy_violation"


def test_wrong_key_is_an_authentication_error():
    bad = openai.OpenAI(base_url=f"{BASE}/v1", api_key="igk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.images.generate(model="nano-banana-pro", prompt="x")


def test_unknown_model_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.generate(model="dall-e-3", prompt="x")
    assert exc.value.code == "model_not_found"


def test_an_image_is_edited_by_its_id_as_the_readme_shows(client):
    first = client.images.generate(model="nano-banana-pro", prompt="a lighthouse at dusk")
    edited = client.images.generate(
        model="nano-banana-pro", prompt="make the sky orange", extra_body={"reference_images": [first.data[0].id]}
    )
    assert edited.data[0].url != first.data[0].url
    with pytest.raises(openai.NotFoundError) as err:
        client.images.generate(model="nano-banana-pro", prompt="x", extra_body={"reference_images": ["img_nope"]})
    assert err.value.body["param"] == "reference_images[0]"


def test_files_round_trip_as_the_sdk_uses_them(client):
    lines = b"".join(
        b'{"custom_id": "l%d", "method": "POST", "url": "/v1/images/generations", '
        b'"body": {"model": "nano-banana-pro", "prompt": "p%d"}}\n' % (i, i)
        for i in range(100)
    )
    created = client.files.create(file=("requests.jsonl", lines), purpose="batch")
    assert created.id.startswith("file-") and created.bytes == len(lines) and created.purpose == "batch"
    assert client.files.retrieve(created.id).filename == "requests.jsonl"
    assert client.files.content(created.id).read() == lines
    assert created.id in [f.id for f in client.files.list(purpose="batch")]
    assert client.files.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
