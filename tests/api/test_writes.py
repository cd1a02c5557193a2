"""Uploads, folder ingest and delete through the API: write keys only, safe names, size limit, allowed roots."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
import uuid

from .conftest import READ_KEY, WRITE_KEY, call


def upload(url: str, files: list[tuple[str, bytes]], key: str | None) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return call(url + "/v1/documents", "POST", raw=body, key=key,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_writes_need_a_write_key(keyed, open_server):
    files = [("note.txt", b"zebra marble lantern")]
    status, err = upload(keyed, files, READ_KEY)
    assert status == 403 and err["error"]["code"] == "read_only_key"
    status, err = upload(open_server, files, None)
    assert status == 403 and err["error"]["code"] == "writes_disabled" and "--api-key KEY:write" in err["error"]["message"]
    status, err = call(open_server + "/v1/documents/delete", "POST", {"paths": ["/x"]})
    assert status == 403


def test_upload_is_stored_under_a_safe_name_and_searchable(keyed, corpus):
    status, job = upload(keyed, [("../../escape-attempt.txt", b"A quantum zebra crossed the velvet harbor.")], WRITE_KEY)
    assert status == 201, job
    assert job["state"] == "done" and job["files"][0]["status"] == "added"
    stored = corpus / "uploads" / "escape-attempt.txt"
    assert stored.is_file() and job["files"][0]["path"] == str(stored)
    assert not (corpus.parent / "escape-attempt.txt").exists() and not (corpus / "escape-attempt.txt").exists()
    hits = call(keyed + "/v1/search", "POST", {"query": "quantum zebra", "k": 1, "mode": "keyword"}, key=READ_KEY)[1]
    assert hits["data"][0]["path"] == str(stored)
    status, job_again = call(keyed + f"/v1/jobs/{job['id']}", key=READ_KEY)
    assert status == 200 and job_again["id"] == job["id"]


def test_upload_over_the_size_limit_is_refused(keyed, corpus):
    big = b"word " * 5000  # 25 kB > 0.02 MB
    status, err = upload(keyed, [("big.txt", big)], WRITE_KEY)
    assert status == 403 and "over the upload limit of 0.02 MB" in err["error"]["message"]
    assert not (corpus / "uploads" / "big.txt").exists()
    status, err = upload(keyed, [("huge.txt", b"x" * 1_100_000)], WRITE_KEY)  # over the whole-request limit
    assert status == 413 and err["error"]["code"] == "request_too_large"
    assert not (corpus / "uploads" / "huge.txt").exists()


def test_a_huge_declared_body_is_refused_before_it_is_sent(keyed):
    """Headers only, declaring 100 GB: the 413 comes back without the server waiting for (or reading) a byte."""
    host, port = urllib.parse.urlsplit(keyed).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v1/documents")
    for name, value in (("Authorization", f"Bearer {WRITE_KEY}"), ("Content-Length", str(100 * 10**9)),
                        ("Content-Type", "multipart/form-data; boundary=x")):
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_folder_ingest_only_under_allowed_roots(keyed, corpus):
    for outside in ("/etc", str(corpus / "docs"), str(corpus / "extra" / ".." / "docs")):
        status, err = call(keyed + "/v1/ingest", "POST", {"folder": outside}, key=WRITE_KEY)
        assert status == 403, err
        assert "outside the folders this server may read" in err["error"]["message"] and "--allow-dir" in err["error"]["message"]
    (corpus / "extra" / "escape").symlink_to("/etc")  # a link out of an allowed folder
    status, err = call(keyed + "/v1/ingest", "POST", {"folder": str(corpus / "extra" / "escape")}, key=WRITE_KEY)
    assert status == 403
    (corpus / "extra" / "escape").unlink()
    status, job = call(keyed + "/v1/ingest", "POST", {"folder": str(corpus / "extra")}, key=WRITE_KEY)
    assert status == 200 and job["state"] == "done", job
    assert [f["status"] for f in job["files"]] == ["added"]
    hits = call(keyed + "/v1/search", "POST", {"query": "orchestra symphony", "k": 1, "mode": "keyword"}, key=READ_KEY)[1]
    assert hits["data"][0]["path"].endswith("orchestra.txt")


def test_delete_by_path(keyed, corpus):
    target = str(corpus / "docs" / "bread.txt")
    status, report = call(keyed + "/v1/documents/delete", "POST", {"paths": [target, "/no/such/doc"]}, key=WRITE_KEY)
    assert status == 200 and report["deleted"] == [target] and report["not_found"] == ["/no/such/doc"]
    paths = [d["path"] for d in call(keyed + "/v1/documents", key=READ_KEY)[1]["data"]]
    assert target not in paths
    req = urllib.request.Request(keyed + "/v1/documents", method="DELETE", data=b'{"paths": ["/nothing"]}',
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_KEY}"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
