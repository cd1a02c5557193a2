"""Every bad request gets an OpenAI-style JSON error naming the problem; the server stays up and the index
unchanged afterwards."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest

from .conftest import READ_KEY, call

E = "/v1/embeddings"
BAD = [
    (E, {"input": [], "model": "tiny"}, 400, "non-empty"),
    (E, {"input": "", "model": "tiny"}, 400, "input[0] is empty"),
    (E, {"input": [1, 2, 3], "model": "tiny"}, 400, "token arrays are not supported"),
    (E, {"input": [[1, 2]], "model": "tiny"}, 400, "token arrays are not supported"),
    (E, {"input": ["ok", 3], "model": "tiny"}, 400, "input[1] must be a string"),
    (E, {"input": ["x"] * 9, "model": "tiny"}, 400, "9 inputs in one request; the limit is 8"),
    (E, {"input": ["word " * 200], "model": "tiny"}, 400, "input[0] has"),
    (E, {"input": "x", "model": "gpt-4"}, 404, "not served here"),
    (E, {"input": "x", "model": "tiny", "dimensions": 7}, 400, "dimensions=7 is not available"),
    (E, {"input": "x", "model": "tiny", "encoding_format": "hex"}, 400, "encoding_format"),
    (E, {"input": "x", "model": "tiny", "input_type": "image"}, 400, "input_type"),
    (E, {"input": "x", "model": "tiny", "instruction": "SciFact"}, 400, "instruction applies to queries"),
    (E, {"input": "x", "model": "tiny", "bogus": 1}, 400, "bogus: Extra inputs are not permitted"),
    (E, {"input": "x"}, 400, "model: Field required"),
    ("/v1/search", {"query": ""}, 400, "query"),
    ("/v1/search", {"query": "x", "k": 0}, 400, "k: Input should be greater than or equal to 1"),
    ("/v1/search", {"query": "x", "k": 10_000}, 400, "k: Input should be less than or equal to 100"),
    ("/v1/search", {"query": "x", "mode": "fuzzy"}, 400, "mode"),
    ("/v1/search", {"query": "x", "filters": {"types": ["exe"]}}, 400, "unknown document type 'exe'"),
    ("/v1/search", {"query": "x", "filters": {"modified_after": "yesterday"}}, 400, "not a date or time"),
    ("/v1/search", {"query": "x", "filters": {"colour": "red"}}, 400, "filters.colour"),
    ("/v1/context", {"query": "x", "budget_tokens": 3}, 400, "budget_tokens"),
]


@pytest.fixture(scope="module")
def before(keyed):
    return call(keyed + "/v1/documents", key=READ_KEY)[1]["data"], call(keyed + "/info", key=READ_KEY)[1]["index"]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD, ids=[f"{p}:{m}" for p, _, _, m in BAD])
def test_bad_json_requests(keyed, before, path, body, status, message):
    got, err = call(keyed + path, "POST", body, key=READ_KEY)
    assert got == status, err
    assert set(err) == {"error"} and set(err["error"]) == {"message", "type", "param", "code"}
    assert message in err["error"]["message"], err
    assert "Traceback" not in json.dumps(err)


def test_not_json_wrong_method_unknown_route(keyed):
    status, err = call(keyed + E, "POST", raw=b"{not json", key=READ_KEY, headers={"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in err["error"]["message"]
    status, err = call(keyed + E, "GET", key=READ_KEY)
    assert status == 405 and err["error"]["code"] == "method_not_allowed"
    status, err = call(keyed + "/v2/nothing", key=READ_KEY)
    assert status == 404 and err["error"]["type"] == "not_found_error"


def test_body_over_the_limit_by_length_and_when_streamed(keyed):
    big = json.dumps({"input": "word " * 20_000, "model": "tiny"}).encode()  # 100 kB > 0.05 MB
    status, err = call(keyed + E, "POST", raw=big, key=READ_KEY, headers={"Content-Type": "application/json"})
    assert status == 413 and "over the limit of 0.05 MB" in err["error"]["message"]
    # no Content-Length: chunked transfer, counted as it streams in
    u = urlparse(keyed)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.putrequest("POST", E)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Authorization", f"Bearer {READ_KEY}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(big), 8192):
        part = big[i : i + 8192]
        conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 413 and "over the limit" in body["error"]["message"]
    conn.close()


def test_server_up_and_index_unchanged_after_bad_requests(keyed, before):
    for path, body, _, _ in BAD:
        call(keyed + path, "POST", body, key=READ_KEY)
    assert call(keyed + "/health")[0] == 200
    docs, stats = before
    assert call(keyed + "/v1/documents", key=READ_KEY)[1]["data"] == docs
    after = call(keyed + "/info", key=READ_KEY)[1]["index"]
    assert (after["documents"], after["chunks"], after["vectors"]) == (stats["documents"], stats["chunks"], stats["vectors"])
    status, body = call(keyed + "/v1/search", "POST", {"query": "violet lantern", "k": 1}, key=READ_KEY)
    assert status == 200 and body["data"][0]["path"].endswith("harbor.html")
