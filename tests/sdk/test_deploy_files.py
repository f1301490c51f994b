"""The container set-up kept in step with the gateway: no container engine runs on the test
machines (no daemon), so the Dockerfile, compose.yaml and nginx.conf are checked by parsing
them against what the gateway reads and documents, and the image's health check command runs
against a real server.
"""

import os
import re
import subprocess

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BASE = os.environ["IMAGEGATE_BASE_URL"]
BIN = os.environ["IMAGEGATE_BIN"]


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def documented_env():
    """The environment names the README's configuration table lists."""
    return set(re.findall(r"^\| `([A-Z_]+)` \|", read("README.md"), re.M))


def test_compose_runs_two_replicas_on_one_database_and_bucket_behind_a_balancer():
    compose = yaml.safe_load(read("compose.yaml"))
    services = compose["services"]
    replicas = [s for s in services if s.startswith("imagegate-")]
    assert len(replicas) == 2
    envs = [services[r]["environment"] for r in replicas]
    for key in ("IMAGEGATE_DATABASE_URL", "IMAGEGATE_STORAGE_URL", "IMAGEGATE_SECRET_KEY"):
        assert envs[0][key] == envs[1][key], key
    assert envs[0]["IMAGEGATE_DATABASE_URL"].startswith("postgres://")
    assert envs[0]["IMAGEGATE_STORAGE_URL"].startswith("s3://")
    assert "postgres" in services and "minio" in services and "lb" in services
    assert services["migrate"]["command"] == ["migrate"]
    # Every imagegate variable set is one the gateway documents (a renamed one would be ignored).
    known = documented_env() | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GEMINI_API_KEY"}
    for key in envs[0]:
        assert key in known, f"{key} is not in the README's configuration table"
    # The balancer sends to both replicas, with timeouts and body sizes the gateway needs.
    nginx = read("deploy/nginx.conf")
    for r in replicas:
        assert f"server {r}:8080" in nginx
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", nginx).group(1))
    assert read_timeout >= 600, "a 4K sync generation may take 600 s"
    assert "proxy_buffering off;" in nginx, "server-sent events must not be buffered"
    body = int(re.search(r"client_max_body_size (\d+)m;", nginx).group(1))
    assert body * 1024 * 1024 >= 200 * 1024 * 1024, "batch files are up to 200 MB"


def test_the_image_is_multi_stage_non_root_with_a_data_volume_and_a_health_check():
    docker = read("Dockerfile")
    assert len(re.findall(r"^FROM ", docker, re.M)) == 2, "a build stage and a runtime stage"
    user = re.search(r"^USER (\S+)", docker, re.M).group(1)
    assert user not in ("root", "0")
    assert 'VOLUME ["/data"]' in docker
    assert 'CMD ["imagegate", "health"]' in docker
    assert "IMAGEGATE_LISTEN=0.0.0.0:8080" in docker


def test_the_health_check_command_answers_for_a_running_gateway_only():
    ok = subprocess.run([BIN, "health", "--url", f"{BASE}/healthz"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run([BIN, "health", "--url", "http://127.0.0.1:9/healthz"], capture_output=True, text=True,
                          timeout=30)
    assert down.returncode != 0
