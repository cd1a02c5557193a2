"""Start a real `python -m app.api` process on a free loopback port, for tests and benchmarks.

    with serve_api(["--index", str(ix), "--model", "tiny"]) as url:
        urllib.request.urlopen(url + "/health")
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..testing import ROOT, free_port


def wait_up(url: str, timeout: float, proc: subprocess.Popen) -> float:
    """Seconds until `url/health` answers; RuntimeError (with the server's output) if it dies or times out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with status {proc.returncode} before it was up")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API server at {url} was not up after {timeout:.0f} s")


@contextlib.contextmanager
def serve_api(args: Sequence[str] = (), env: dict[str, str] | None = None, timeout: float = 180,
              log_path: Path | None = None) -> Iterator[str]:
    """Run the API server with `args` on 127.0.0.1 and a free port; yields its base URL; stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "app.api", "--host", "127.0.0.1", "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_up(url, timeout, proc)
        except RuntimeError as exc:
            output = Path(log_path).read_text()[-3000:] if log_path else ""
            raise RuntimeError(f"{exc}\n{output}") from None
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()
