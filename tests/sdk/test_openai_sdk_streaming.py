"""The `openai` SDK's streaming image call against imagegate in front of the fake Gemini, whose
Nano Banana Pro streams two draft (thought) images before the final one.

`images.generate(stream=True, partial_images=2)` must yield two partial images, then the final
image, as it does against OpenAI.
"""

import base64
import io
import os

import openai
from PIL import Image

BASE = os.environ["IMAGEGATE_GEMINI_BASE_URL"]
KEY = os.environ["IMAGEGATE_GEMINI_KEY"]


def test_partial_images_stream_before_the_final_one():
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, timeout=600, max_retries=0)
    stream = client.images.generate(
        model="nano-banana-pro", prompt="a lighthouse in fog", size="1024x1024", stream=True, partial_images=2
    )
    events = list(stream)
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    sizes = [Image.open(io.BytesIO(base64.b64decode(e.b64_json))).size for e in events]
    assert sizes[0][0] < sizes[1][0] < sizes[2][0], sizes
    assert sizes[2] == (1024, 1024)
    assert events[2].usage.total_tokens > 0
