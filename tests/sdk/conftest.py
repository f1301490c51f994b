"""Shared by the tests that need a server of their own (an admin token, fast or slow simulated
images) rather than the shared ones `scripts/test` starts."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ADMIN_TOKEN = "sdk-test-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def own_server():
    """`(base_url, api_key, work_dir)` of a fresh `imagegate serve` with the admin token
    `ADMIN_TOKEN` and the simulated provider at 20 ms an image."""
    binary = os.environ["IMAGEGATE_BIN"]
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "imagegate.toml"), "w") as f:
        f.write('[providers.simulated]\nlatency = "20ms"\n')
    port = free_port()
    env = dict(os.environ, IMAGEGATE_ADMIN_TOKEN=ADMIN_TOKEN)
    env.pop("GEMINI_API_KEY", None)
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen([binary, "--data-dir", f"{work}/data", "serve", "--listen", f"127.0.0.1:{port}"],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    key = subprocess.run([binary, "--data-dir", f"{work}/data", "keys", "create", "--name", "own", "--quiet"],
                         cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    yield base, key, work
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    shutil.rmtree(work, ignore_errors=True)
