"""The dashboard (`/ui`) and the API docs (`/docs`) in headless Chromium, as a user goes through
them: paste a key, generate in the playground (progress, then the image), with a reference image
by upload and by drag and drop, find it among the tasks and in the gallery with its expiry, see
usage as a chart; with the admin token create and revoke a key and see the channels. Also at a
phone's width. Debian's Chromium driven by Playwright (no browser download); every request the
pages make must stay on the gateway. Screenshots go to tests/sdk/artifacts/ (or
$IMAGEGATE_ARTIFACTS).
"""

import base64
import io
import json
import os
import shutil
import urllib.request
from urllib.parse import urlparse

import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from conftest import ADMIN_TOKEN

CHROMIUM = os.environ.get("IMAGEGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("IMAGEGATE_ARTIFACTS") or os.path.join(os.path.dirname(__file__), "artifacts")


def png_bytes(color, size=(64, 48)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (scripts/test installs Debian's 'chromium')")
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page whose requests are kept on 127.0.0.1 (anything else is aborted and recorded) and
    whose script errors are recorded."""

    def __init__(self, browser, base, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.outside, self.errors = [], []
        host = urlparse(base).hostname

        def route(r):
            if urlparse(r.request.url).hostname == host:
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("dialog", lambda d: d.accept())

    def shot(self, name):
        self.page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)

    def check_clean(self):
        assert not self.outside, f"requests left the gateway: {self.outside}"
        assert not self.errors, f"script errors: {self.errors}"

    def close(self):
        self.context.close()


def login(page, base, key=None, admin=None):
    page.goto(f"{base}/ui")
    if key:
        page.fill("#login-key", key)
    if admin:
        page.fill("#login-admin", admin)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#tabs")).to_be_visible()


def generate(page, prompt, ratio=None):
    page.fill("#gen-prompt", prompt)
    if ratio:
        page.select_option("#gen-ratio", ratio)
    page.click("#gen-submit")


def task_json(base, key, task_id):
    req = urllib.request.Request(f"{base}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_dashboard_end_to_end(browser, own_server):
    base, key, _ = own_server
    w = Watched(browser, base, viewport={"width": 1280, "height": 900})
    page = w.page
    page.goto(base)  # the gateway's own address lands on the dashboard
    assert page.url == f"{base}/ui"
    expect(page.locator("#login")).to_be_visible()
    w.shot("01-login")

    # A wrong key is refused where it is pasted.
    page.fill("#login-key", "igk_not-a-real-key")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("Not accepted")
    w.errors.clear()  # the browser logs the refused request (401) as a console error

    login(page, base, key=key, admin=ADMIN_TOKEN)
    stored = page.evaluate("() => [sessionStorage.getItem('key'), localStorage.length, document.cookie]")
    assert stored == [key, 0, ""], "the key lives in session storage only"

    # Playground: progress first (the simulated provider holds this one 3 s), then the image.
    expect(page.locator("#gen-model option")).not_to_have_count(0)
    generate(page, "a lighthouse at dusk [sim:delay:3s]", ratio="16:9")
    expect(page.locator("#gen-status")).to_contain_text("running", timeout=15000)
    w.shot("02-playground-running")
    image = page.locator("#gen-images img").first
    expect(image).to_be_visible(timeout=30000)
    expect(page.locator("#gen-status")).to_contain_text("completed")
    size = page.evaluate("(img) => [img.naturalWidth, img.naturalHeight]", image.element_handle())
    assert size[0] > 0 and abs(size[0] / size[1] - 16 / 9) < 0.05, size
    download = page.locator("#gen-images a[download]").first.get_attribute("href")
    assert "/images/img_" in download
    w.shot("03-playground-done")
    first_task = page.locator("#gen-status").inner_text().split()[1].rstrip(":")

    # A reference image by upload, and one by drag and drop: both reach the task as inputs.
    page.set_input_files("#gen-refs", files=[{"name": "red.png", "mimeType": "image/png", "buffer": png_bytes("red")}])
    data = base64.b64encode(png_bytes("blue")).decode()
    dt = page.evaluate_handle(
        """(b64) => { const bin = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
             const dt = new DataTransfer(); dt.items.add(new File([bin], 'blue.png', {type: 'image/png'})); return dt; }""",
        data)
    page.dispatch_event("#drop", "drop", {"dataTransfer": dt})
    expect(page.locator("#ref-list img")).to_have_count(2)
    generate(page, "put the red and the blue together")
    expect(page.locator("#gen-images img").first).to_be_visible(timeout=30000)
    edit_task = page.locator("#gen-status").inner_text().split()[1].rstrip(":")
    assert edit_task != first_task
    assert len(task_json(base, key, edit_task)["inputs"]) == 2

    # Tasks: both, newest first; the filter keeps to one status.
    page.click("#tabs button[data-tab=tasks]")
    expect(page.locator(f".task[data-id='{edit_task}']")).to_be_visible()
    expect(page.locator(f".task[data-id='{first_task}']")).to_be_visible()
    page.click("#task-filters button[data-status=failed]")
    expect(page.locator("#task-list")).to_contain_text("No tasks.")
    page.click("#task-filters button[data-status=completed]")
    expect(page.locator(".task")).to_have_count(2)
    page.locator(f".task[data-id='{first_task}'] .task-head").click()
    expect(page.locator(f".task[data-id='{first_task}'] .details img")).to_be_visible()
    w.shot("04-tasks")

    # Gallery: the images, as thumbnails made by the gateway, with their expiry.
    page.click("#tabs button[data-tab=gallery]")
    expect(page.locator("#gallery-grid figure")).to_have_count(2)
    expect(page.locator("#gallery-grid .meta").first).to_contain_text("expires in")
    src = page.locator("#gallery-grid img").first.get_attribute("src")
    assert "w=320" in src
    page.wait_for_function("() => [...document.querySelectorAll('#gallery-grid img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.evaluate("() => document.querySelector('#gallery-grid img').naturalWidth") <= 320
    w.shot("05-gallery")

    # Usage: today's bar and the totals.
    page.click("#tabs button[data-tab=usage]")
    expect(page.locator("#usage-chart rect.bar")).not_to_have_count(0)
    expect(page.locator("#usage-totals")).to_contain_text("Images")
    expect(page.locator("#usage-table tbody tr")).not_to_have_count(0)
    w.shot("06-usage")

    # Admin: create a key (its secret shown once, and it works), then revoke it.
    page.click("#tabs button[data-tab=admin]")
    page.fill("#key-name", "made-in-the-dashboard")
    page.fill("#key-rpm", "30")
    page.click("#key-form button[type=submit]")
    secret = page.locator("#new-key").inner_text()
    assert secret.startswith("igk_")
    row = page.locator("#key-table tbody tr", has_text="made-in-the-dashboard")
    expect(row).to_contain_text("30/min")
    expect(row).to_contain_text("active")
    expect(page.locator("#channel-table tbody tr")).not_to_have_count(0)
    # Everyone's usage, by key: this key's two images.
    own = page.locator("#key-usage-table tbody tr", has_text="own")
    expect(own).to_contain_text("nano-banana-pro")
    expect(own.locator("td").nth(1)).to_have_text("2")
    w.shot("07-admin")
    row.locator("button", has_text="Revoke").click()
    expect(row).to_contain_text("revoked")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{base}/v1/models", headers={"Authorization": f"Bearer {secret}"}))
        raise AssertionError("a revoked key still works")
    except urllib.error.HTTPError as e:
        assert e.code == 401

    w.check_clean()
    w.close()


def test_dashboard_at_a_phone_width(browser, own_server):
    base, key, _ = own_server
    w = Watched(browser, base, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                device_scale_factor=2)
    page = w.page
    login(page, base, key=key)
    expect(page.locator("#tabs button[data-tab=admin]")).to_be_hidden()
    generate(page, "a small boat")
    expect(page.locator("#gen-images img").first).to_be_visible(timeout=30000)
    for tab in ("playground", "tasks", "gallery", "usage"):
        page.click(f"#tabs button[data-tab={tab}]")
        page.wait_for_timeout(300)
        width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{tab} scrolls sideways on a phone: {width}"
        w.shot(f"phone-{tab}")
    w.check_clean()
    w.close()


def test_docs_page_renders_offline(browser, own_server):
    base, _, _ = own_server
    w = Watched(browser, base, viewport={"width": 1280, "height": 900})
    w.page.goto(f"{base}/docs")
    expect(w.page.get_by_text("Generate images").first).to_be_visible(timeout=20000)
    expect(w.page.get_by_role("heading", name="Prometheus metrics")).to_be_attached()
    w.shot("docs")
    w.check_clean()
    w.close()
