"""Fixtures for the app tests: AppTest on app/main.py with the tiny random model and a fresh index per test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "app" / "main.py"
TIMEOUT = 120  # seconds per script run: the first one builds the tiny model and imports torch

TAGS = re.compile(r"<[^>]+>")


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """Environment for one app: tiny model, index and uploads under tmp_path."""
    env = {"index": tmp_path / "index", "uploads": tmp_path / "uploads", "docs": tmp_path / "docs"}
    env["docs"].mkdir()
    monkeypatch.setenv("NVEMBED_MODEL", "tiny")
    monkeypatch.setenv("NVEMBED_INDEX_DIR", str(env["index"]))
    monkeypatch.setenv("NVEMBED_UPLOAD_DIR", str(env["uploads"]))
    monkeypatch.delenv("NVEMBED_APP_TIMING", raising=False)
    monkeypatch.setenv("NVEMBED_ALLOW_DIRS", str(env["docs"]))  # folder ingest reads only allowed roots
    monkeypatch.delenv("NVEMBED_APP_PASSWORD", raising=False)
    # The first page waits for the model, as before background loading: these tests follow one sequence.
    # tests/app/test_startup.py checks the page without the model (the default, NVEMBED_MODEL_WAIT=0).
    monkeypatch.setenv("NVEMBED_MODEL_WAIT", "600")
    return env


@pytest.fixture
def make_app(app_env):
    from streamlit.testing.v1 import AppTest

    def _make(**query):
        at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
        for key, value in query.items():
            at.query_params[key] = value
        return at

    return _make


# ----------------------------------------------------------------------------------------- helpers ----
def button(at, label: str):
    """The button (form submit buttons included) whose label is `label`."""
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return found[0]


def page_text(at) -> str:
    """Everything the page shows as text (markdown, HTML with tags removed, alerts, captions, code)."""
    parts = [m.value for m in at.markdown] + [TAGS.sub("", h.value) for h in at.html]
    parts += [MD_ESCAPE.sub(r"\1", e.value) for kind in ("error", "warning", "info", "success", "caption", "code")
              for e in getattr(at, kind)]
    return "\n".join(parts)


MD_ESCAPE = re.compile(r"\\(.)")


def alerts(at, kind: str) -> list[str]:
    """The text of the page's alerts of one kind, markdown escapes removed."""
    return [MD_ESCAPE.sub(r"\1", e.value) for e in getattr(at, kind)]


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def result_cards(at) -> list[str]:
    """The text of each result card's head and passage, in rank order."""
    return [TAGS.sub("", h.value) for h in at.html if "nv-head" in h.value and "<style" not in h.value]


def documents_table(at):
    open_tab(at, "documents")
    tables = [d.value for d in at.dataframe if "ingested" in d.value.columns]
    return tables[0] if tables else None


def job_table(at):
    tables = [d.value for d in at.dataframe if "status" in d.value.columns]
    return tables[0] if tables else None


def open_tab(at, name: str):
    """Switch to a tab ("search", "ingest", "documents"): only the open tab is computed."""
    from app.components import TAB_KEY, TABS

    at.session_state[TAB_KEY] = TABS[name]
    return at.run()


def upload(at, files: list[tuple[str, bytes]]):
    open_tab(at, "ingest")
    mime = {"txt": "text/plain", "md": "text/markdown", "pdf": "application/pdf", "html": "text/html"}
    at.file_uploader[0].set_value([(n, data, mime.get(n.rsplit(".", 1)[-1], "application/octet-stream"))
                                   for n, data in files])
    return button(at, "Ingest uploaded files").click().run()


def search(at, query: str, mode: str | None = None):
    if not any(t.key == "s_query" for t in at.text_input):
        open_tab(at, "search")
    at.text_input(key="s_query").input(query)
    if mode is not None:
        at.segmented_control(key="s_mode").set_value(mode)
    return button(at, "Search").click().run()
