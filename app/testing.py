"""Run the app headless and look at it with Debian's Chromium: for the browser test, the README screenshot
and the start-up benchmark.

    with serve(["--index", str(ix), "--model", "tiny"]) as url, Browser() as browser:
        browser.goto(url + "/?q=zebra")
        browser.wait_for_text("1 result")
        browser.screenshot(out / "page.png")
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "app" / "main.py"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium() -> str | None:
    """The path of a Chromium/Chrome binary, or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit and shutil.which(explicit):
        return shutil.which(explicit)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc: subprocess.Popen, log: IO[str] | None = None) -> None:
    """Terminate a test server (kill it after 15 s) and close its log file."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if log is not None:
        log.close()


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None, path: str = "/_stcore/health",
                 what: str = "the app") -> float:
    """Seconds until `url + path` answers ok; RuntimeError when the server dies or times out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} at {url} was not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def serve(app_args: Sequence[str] = (), env: dict[str, str] | None = None, port: int | None = None,
          timeout: float = 120, theme: str | None = None, log_path: Path | None = None,
          root: Path | None = None) -> Iterator[str]:
    """Start `streamlit run app/main.py` headless on 127.0.0.1; yields its base URL; stops it afterwards.

    `root`: another checkout of this repository to run the app of (the start-up benchmark compares two)."""
    port = port or free_port()
    root = Path(root) if root is not None else ROOT
    cmd = [sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
    if theme:
        cmd += ["--theme.base", theme]
    cmd += ["--", *app_args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout, proc)
        yield url
    finally:
        stop_server(proc, log if log_path else None)


class Browser:
    """Headless Chromium driven over the DevTools protocol: open a URL, wait for text, type, screenshot.

    Waiting on the page's own content (rather than a fixed `--virtual-time-budget`) makes screenshots and
    timings independent of how long the model takes to load.
    """

    def __init__(self, window: tuple[int, int] = (1400, 1000), dark: bool = False, timeout: float = 30):
        from websockets.sync.client import connect

        binary = chromium()
        if binary is None:
            raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", "--remote-allow-origins=*",
             f"--remote-debugging-port={self.port}", f"--user-data-dir={self.profile}",
             f"--window-size={window[0]},{window[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._id = 0
        self._stack = contextlib.ExitStack()
        try:
            target = self._page_target(timeout)
            self.ws = self._stack.enter_context(connect(target, max_size=None, open_timeout=timeout))
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=window[0], height=window[1],
                      deviceScaleFactor=1, mobile=False)
            scheme = "dark" if dark else "light"
            self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])
        except BaseException:
            self.close()
            raise

    def _page_target(self, timeout: float) -> str:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as resp:
                    pages = [t for t in json.load(resp) if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("chromium's DevTools endpoint did not come up")

    def call(self, method: str, timeout: float = 60, **params: object) -> dict:
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.perf_counter() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.perf_counter())))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return str(self.eval("document.body ? document.body.innerText : ''") or "")

    def html(self) -> str:
        return str(self.eval("document.documentElement.outerHTML") or "")

    def wait_for(self, predicate: str, timeout: float = 60, poll: float = 0.05) -> float:
        """Seconds until the JavaScript `predicate` is true; TimeoutError otherwise."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            try:
                if self.eval(predicate):
                    return time.perf_counter() - started
            except RuntimeError:
                pass
            time.sleep(poll)
        raise TimeoutError(f"not true after {timeout:.0f} s: {predicate}")

    def wait_for_text(self, needle: str, timeout: float = 60) -> float:
        return self.wait_for(f"document.body && document.body.innerText.includes({json.dumps(needle)})", timeout)

    def wait_idle(self, timeout: float = 60, settle: float = 0.6) -> float:
        """Seconds until Streamlit shows no running script (its status widget is gone) for `settle` s."""
        started = time.perf_counter()
        quiet_since = None
        while time.perf_counter() - started < timeout:
            running = self.eval("!!document.querySelector('[data-testid=\"stStatusWidget\"]')")
            now = time.perf_counter()
            if running:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= settle:
                return quiet_since - started
            time.sleep(0.05)
        raise TimeoutError("the app kept running")

    def type_and_submit(self, selector: str, text: str) -> None:
        """Focus the input matching the CSS `selector`, replace its text and press Enter."""
        self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()")
        self.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      nativeVirtualKeyCode=13, text="\r" if kind == "keyDown" else "")

    def screenshot(self, out: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def png_stats(path: Path) -> tuple[int, int, int]:
    """(width, height, number of distinct colours) of an image: a blank page has one or two colours."""
    from PIL import Image  # a dependency of streamlit

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        return rgb.width, rgb.height, len(colours) if colours is not None else 1 << 20
