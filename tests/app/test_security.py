"""Secure by default: allowed roots, safe upload names, loopback, keys, the app's password gate, and a plain
`streamlit run app/main.py` from the repository root listening on 127.0.0.1 only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.jobs import safe_name
from app.security import (
    ApiKeys,
    PathNotAllowedError,
    SecurityError,
    allowed_roots,
    check_folder,
    check_upload,
    is_loopback,
    require_auth_for_bind,
)
from app.testing import ROOT, free_port, wait_healthy

from .conftest import alerts, button, job_table, no_exception, open_tab


def test_check_folder_inside_and_outside(tmp_path):
    root = tmp_path / "allowed"
    (root / "sub").mkdir(parents=True)
    roots = allowed_roots(tmp_path / "uploads", [root])
    assert check_folder(root / "sub", roots) == (root / "sub").resolve()
    assert check_folder(str(root), roots) == root.resolve()
    for outside in ("/etc", tmp_path, root / ".." / "elsewhere", str(root) + "-sibling"):
        with pytest.raises(PathNotAllowedError, match="outside the folders this server may read") as err:
            check_folder(outside, roots)
        assert "--allow-dir" in str(err.value)
    (root / "out").symlink_to("/etc")
    with pytest.raises(PathNotAllowedError):
        check_folder(root / "out", roots)
    with pytest.raises(PathNotAllowedError, match="allowed: none"):
        check_folder(root, ())


def test_upload_names_cannot_escape_and_sizes_are_limited():
    assert safe_name("../../x") == "x"
    assert safe_name("..\\..\\evil.txt") == "evil.txt"
    assert safe_name("/etc/passwd") == "passwd"
    assert safe_name("..") == "upload" and safe_name(".bashrc") == "bashrc"
    check_upload("a.txt", 10, max_mb=1)
    with pytest.raises(SecurityError, match="over the upload limit of 1 MB"):
        check_upload("a.txt", 2_000_000, max_mb=1)


def test_loopback_and_bind_rules():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.1", "example.com"))
    require_auth_for_bind("127.0.0.1", False)
    require_auth_for_bind("0.0.0.0", True)
    with pytest.raises(SecurityError, match="refusing to listen on 0.0.0.0"):
        require_auth_for_bind("0.0.0.0", False)


def test_api_keys(tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nfile-key-12345678 write\nfile-key-read-123\n")
    keys = ApiKeys.load(["cli-key-12345678", "cli-write-1234567:write"], [keyfile], "env-key-12345678:read")
    assert keys.permission("cli-key-12345678") == "read" and keys.permission("cli-write-1234567") == "write"
    assert keys.permission("file-key-12345678") == "write" and keys.permission("file-key-read-123") == "read"
    assert keys.permission("env-key-12345678") == "read"
    assert keys.permission("nope") is None and keys.permission(None) is None
    with pytest.raises(SecurityError, match="too short"):
        ApiKeys.load(["abc"])
    assert not ApiKeys.load()


def test_app_refuses_a_folder_outside_the_allowed_roots(make_app, app_env):
    at = open_tab(make_app().run(), "ingest")
    at.text_input(key="folder_path").input("/etc")
    button(at, "Ingest folder").click().run()
    no_exception(at)
    assert any("outside the folders this server may read" in e and "--allow-dir" in e for e in alerts(at, "error"))
    assert job_table(at) is None  # no ingest job was started


@pytest.fixture
def address():
    from streamlit import config

    before = config.get_option("server.address")
    yield lambda value: config.set_option("server.address", value)
    config.set_option("server.address", before)


def test_app_on_a_network_address_without_password_refuses(make_app, app_env, address):
    address("0.0.0.0")
    at = make_app().run()
    no_exception(at)
    assert any("Refusing to serve on 0.0.0.0 without a password" in e for e in alerts(at, "error"))
    assert not at.tabs  # nothing of the app is shown


def test_app_password_gate(make_app, app_env, address, monkeypatch):
    address("0.0.0.0")
    monkeypatch.setenv("NVEMBED_APP_PASSWORD", "open sesame")
    at = make_app().run()
    assert not at.tabs and at.text_input(key="_nv_password")
    at.text_input(key="_nv_password").input("wrong")
    at = button(at, "Enter").click().run()
    assert any("Wrong password" in e for e in alerts(at, "error")) and not at.tabs
    at.text_input(key="_nv_password").input("open sesame")
    at = button(at, "Enter").click().run()
    no_exception(at)
    assert at.tabs


def _listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(host)
    return found


def test_plain_streamlit_run_from_the_repo_root_listens_on_loopback_only(tmp_path):
    port = free_port()
    env = {**os.environ, "NVEMBED_MODEL": "tiny", "NVEMBED_INDEX_DIR": str(tmp_path / "index")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
                             "--server.port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 120, proc)
        time.sleep(0.2)
        assert _listening(port) == {"0100007F"}, _listening(port)  # 127.0.0.1 (little-endian hex), nothing else
    finally:
        proc.terminate()
        proc.wait(timeout=15)
