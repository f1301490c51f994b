"""`/openapi.json` as its users check it: it validates (openapi-spec-validator), every path it
documents is a route of the server, `/docs` works with nothing fetched from elsewhere, and
schemathesis, run against a server with a key (and again with the admin token on the admin
routes) for a bounded number of cases, following the document's links from what it creates to
what reads it, finds no 5xx and no answer outside its documented shape.
"""

import gzip
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from openapi_spec_validator import validate

from conftest import ADMIN_TOKEN

BASE = os.environ["IMAGEGATE_BASE_URL"]
KEY = os.environ["IMAGEGATE_KEY"]
BIN = os.environ["IMAGEGATE_BIN"]


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def spec():
    status, headers, body = get(f"{BASE}/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def test_the_spec_validates_and_names_the_surfaces():
    doc = spec()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for p in ("/v1/images/generations", "/v1/images/edits", "/v1/tasks/{id}", "/v1/batches", "/v1/files",
              "/v1beta/models/{model}:generateContent", "/admin/v1/keys", "/images/{file}", "/metrics"):
        assert p in paths, p
    op = paths["/v1/images/generations"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/GenerationRequest")
    assert "200" in op["responses"] and "429" in op["responses"] and "default" in op["responses"]
    assert {"api_key", "admin_token", "goog_api_key"} <= set(doc["components"]["securitySchemes"])
    edits = paths["/v1/images/edits"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(edits)


def test_the_cli_prints_the_same_document():
    printed = subprocess.run([BIN, "openapi"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(printed) == spec()


def test_every_documented_path_is_a_route(own_server):
    # On a server of its own: some of these calls change things (a webhook secret is rotated).
    base, key, _ = own_server
    doc = spec()
    for path, item in doc["paths"].items():
        url = base + re.sub(r"\{[^}]+\}", "x", path)
        for method in item:
            req = urllib.request.Request(url, method=method.upper(), headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, body = resp.status, b""
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read()
            assert status != 405, (method, path)
            assert b"unknown_route" not in body, (method, path, body)


def test_docs_page_is_served_from_the_binary():
    status, headers, page = get(f"{BASE}/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    sources = re.findall(rb'(?:src|href|spec-url)="([^"]+)"', page)
    assert sources and all(s.startswith(b"/") for s in sources), sources
    status, headers, js = get(f"{BASE}/docs/rapidoc-min.js", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    plain = gzip.decompress(js)
    assert b"rapi-doc" in plain
    status, headers, same = get(f"{BASE}/docs/rapidoc-min.js")
    assert status == 200 and "Content-Encoding" not in headers and same == plain


def schemathesis(base, token, work, *extra):
    cmd = [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run", f"{base}/openapi.json",
           "-H", f"Authorization: Bearer {token}", "-H", f"x-goog-api-key: {token}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
           "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "8", "--seed", "7", "--workers", "2",
           "--request-timeout", "60", "--no-color", "--generation-database", "none", *extra]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-12000:] + out.stderr[-3000:]
    assert re.search(r"Tested: [1-9]", out.stdout), out.stdout[-3000:]
    return out.stdout


def test_schemathesis_finds_no_5xx_and_no_undocumented_answer(own_server):
    base, key, work = own_server
    schemathesis(base, key, work, "--exclude-path-regex", "^/admin/")


def test_schemathesis_on_the_admin_routes(own_server):
    base, _, work = own_server
    schemathesis(base, ADMIN_TOKEN, work, "--include-path-regex", "^/admin/")
