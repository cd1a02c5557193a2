"""Start a real `python -m app.api` process on a free loopback port, for tests and benchmarks.

    with serve_api(["--index", str(ix), "--model", "tiny"]) as url:
        urllib.request.urlopen(url + "/health")
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..testing import ROOT, free_port, stop_server, wait_healthy


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
            wait_healthy(url, timeout, proc, path="/health", what="the API server")
        except RuntimeError as exc:
            output = Path(log_path).read_text()[-3000:] if log_path else ""
            raise RuntimeError(f"{exc}\n{output}") from None
        yield url
    finally:
        stop_server(proc, log if log_path else None)
