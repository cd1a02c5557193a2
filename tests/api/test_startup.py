"""The servers refuse a network-reachable address without authentication, before loading anything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.security import UnsafeBindError
from app.testing import ROOT


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_api_refuses_a_non_loopback_bind_without_keys(host, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app.api", "--index", str(tmp_path / "ix"), "--model", "tiny",
                           "--host", host], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NVEMBED_API_KEYS": ""})
    assert proc.returncode == 2
    assert f"refusing to listen on {host}" in proc.stderr and "--api-key" in proc.stderr
    assert not (tmp_path / "ix").exists()  # nothing was loaded or created


def test_keys_make_a_network_bind_acceptable():
    from app.api.config import from_args

    from_args(["--host", "0.0.0.0", "--api-key", "a-long-enough-key"], environ={}).check()
    with pytest.raises(UnsafeBindError):
        from_args(["--host", "0.0.0.0"], environ={}).check()
    from_args(["--host", "127.0.0.1"], environ={}).check()
    from_args(["--host", "0.0.0.0"], environ={"NVEMBED_API_KEYS": "k-from-the-environment:write"}).check()
