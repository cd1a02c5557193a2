"""Fixtures for the API tests: a small corpus indexed with the tiny model, and real `python -m app.api`
processes on free loopback ports (one with read and write keys, one with no keys)."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import pytest

import index

READ_KEY = "read-key-0123456789"
WRITE_KEY = "write-key-0123456789"
CORPUS = {
    "wings.md": "# Wings\n\nA wing produces lift because the airflow over it is deflected downwards.\n\n"
                "The boundary layer on the upper surface can separate at high angles of attack.",
    "bread.txt": "Banana bread needs very ripe bananas, flour, butter and a hot oven.",
    "harbor.html": "<html><head><title>Harbor lights</title></head><body><h1>Harbor lights</h1>"
                   "<p>The violet lantern at the harbor is lit every evening at dusk.</p></body></html>",
}


@pytest.fixture(scope="session")
def tiny():
    from encoder.testing import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("api")
    docs = root / "docs"
    docs.mkdir()
    for name, text in CORPUS.items():
        (docs / name).write_text(text)
    extra = root / "extra"  # an allowed folder that is not indexed yet
    extra.mkdir()
    (extra / "orchestra.txt").write_text("The orchestra played a quantum galaxy symphony under velvet lights.")
    with index.open(root / "index", tiny, model_source="tiny") as ix:
        assert len(ix.ingest(docs).added) == 3
    shutil.copytree(root / "index", root / "index-open")
    return root


@pytest.fixture(scope="session")
def keyed(corpus, tmp_path_factory):
    """A server with a read key and a write key, small limits, one allowed folder."""
    from app.api.testing import serve_api

    args = ["--index", str(corpus / "index"), "--model", "tiny", "--uploads", str(corpus / "uploads"),
            "--api-key", READ_KEY, "--api-key", f"{WRITE_KEY}:write", "--allow-dir", str(corpus / "extra"),
            "--max-inputs", "8", "--max-input-tokens", "64", "--max-body-mb", "0.05", "--max-upload-mb", "0.02"]
    log = tmp_path_factory.mktemp("logs") / "keyed.log"
    with serve_api(args, log_path=log) as url:
        yield url


@pytest.fixture(scope="session")
def open_server(corpus, tmp_path_factory):
    """A server without keys (loopback only: reads open, writes disabled)."""
    from app.api.testing import serve_api

    log = tmp_path_factory.mktemp("logs") / "open.log"
    with serve_api(["--index", str(corpus / "index-open"), "--model", "tiny"], log_path=log) as url:
        yield url


def call(url: str, method: str = "GET", body: object = None, key: str | None = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """(status, JSON body) of one request; error statuses are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None and raw is None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text.strip().startswith((b"{", b"[")) else {"text": text.decode()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
