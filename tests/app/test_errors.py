"""Each error case is a message in the page, never an exception or a traceback."""

from __future__ import annotations

import threading
import time

import pytest

import index
from index.testing import HashEncoder

from .conftest import (
    alerts,
    button,
    documents_table,
    job_table,
    no_exception,
    open_tab,
    page_text,
    result_cards,
    upload,
)


def test_corrupt_upload_is_a_message_and_the_good_file_still_goes_in(make_app, app_env):
    at = make_app().run()
    upload(at, [("broken.pdf", b"%PDF-1.7\n this is not a PDF at all"), ("fine.txt", b"harbor lantern text")])
    no_exception(at)
    errors = alerts(at, "error")
    assert any("broken.pdf" in e and "could not be ingested" in e for e in errors), errors
    rows = job_table(at)
    failed = rows[rows["file"] == "broken.pdf"].iloc[0]
    assert failed["status"] == "failed" and failed["reason"]
    assert list(rows[rows["file"] == "fine.txt"]["status"]) == ["added"]
    assert not (app_env["uploads"] / "broken.pdf").exists()  # a file that failed is not kept
    assert len(documents_table(at)) == 1


def test_empty_upload_and_unsupported_type_are_reported(make_app, app_env):
    at = make_app().run()
    upload(at, [("empty.txt", b""), ("data.txt", b"\x00\x01\x02")])
    no_exception(at)
    rows = job_table(at)
    assert set(rows["status"]) <= {"failed", "added"} and "failed" in set(rows["status"])
    assert all(r for r, s in zip(rows["reason"], rows["status"], strict=True) if s == "failed")


def test_index_built_with_another_model(make_app, app_env):
    docs = app_env["docs"]
    (docs / "a.txt").write_text("some text to index")
    with index.open(app_env["index"], HashEncoder(dimension=48), model_source="hash:48") as ix:
        ix.ingest(docs)
    at = make_app().run()  # NVEMBED_MODEL=tiny
    no_exception(at)
    errors = alerts(at, "error")
    assert any("built with another model" in e and "hash:48" in e for e in errors), errors
    assert any("--model hash:48" in i for i in alerts(at, "info"))
    assert "tiny-llama-0" in "\n".join(h.value for h in at.sidebar.html)  # the sidebar still says what is loaded


def test_index_built_with_another_model_opens_with_its_own_when_no_model_is_configured(make_app, app_env,
                                                                                      monkeypatch):
    docs = app_env["docs"]
    (docs / "a.txt").write_text("some text about a harbor")
    with index.open(app_env["index"], HashEncoder(dimension=48), model_source="hash:48") as ix:
        ix.ingest(docs)
    monkeypatch.delenv("NVEMBED_MODEL")
    at = make_app(q="harbor", mode="keyword").run()
    no_exception(at)
    assert not alerts(at, "error")
    assert result_cards(at) and "a.txt" in result_cards(at)[0]


def test_empty_index(make_app, app_env):
    at = make_app().run()
    no_exception(at)
    assert any("The index is empty" in i for i in alerts(at, "info"))
    open_tab(at, "documents")
    assert any("No documents yet" in i for i in alerts(at, "info"))


def test_query_while_nothing_is_ingested(make_app, app_env):
    at = make_app(q="where is the harbor").run()
    no_exception(at)
    assert any("Nothing is ingested yet" in w and "where is the harbor" in w for w in alerts(at, "warning"))


def test_folder_that_does_not_exist(make_app, app_env):
    at = open_tab(make_app().run(), "ingest")
    missing = app_env["docs"] / "not-there"
    at.text_input(key="folder_path").input(str(missing))
    button(at, "Ingest folder").click().run()
    no_exception(at)
    assert any("does not exist on the server" in e and str(missing) in e for e in alerts(at, "error"))


def test_upload_without_files_and_folder_without_path(make_app, app_env):
    at = open_tab(make_app().run(), "ingest")
    button(at, "Ingest uploaded files").click().run()
    assert any("Choose one or more files" in w for w in alerts(at, "warning"))
    button(at, "Ingest folder").click().run()
    assert any("Type the path of a folder" in w for w in alerts(at, "warning"))
    no_exception(at)


def test_model_that_cannot_be_loaded(make_app, app_env, monkeypatch):
    monkeypatch.setenv("NVEMBED_MODEL", str(app_env["docs"] / "no-such-model"))
    at = make_app().run()
    no_exception(at)
    assert any("The model could not be loaded" in e for e in alerts(at, "error"))


def test_index_path_that_is_a_file(make_app, app_env, monkeypatch):
    bad = app_env["docs"] / "a-file"
    bad.write_text("x")
    monkeypatch.setenv("NVEMBED_INDEX_DIR", str(bad))
    at = make_app().run()
    no_exception(at)
    assert any("cannot be opened" in e and "not a directory" in e for e in alerts(at, "error"))


def test_bad_link_parameters_fall_back_to_defaults(make_app, app_env):
    at = make_app().run()
    upload(at, [("a.txt", b"harbor lantern evening")])
    at2 = make_app(q="harbor", mode="fuzzy", k="lots", type="exe", after="yesterday").run()
    no_exception(at2)
    text = page_text(at2)
    assert "unknown mode 'fuzzy'" in text and "not a number" in text and "not a date" in text
    assert result_cards(at2)


def test_bad_app_argument_is_a_message(make_app, app_env, monkeypatch):
    monkeypatch.setenv("NVEMBED_RAG_BUDGET", "lots")
    at = make_app().run()
    no_exception(at)
    assert any("NVEMBED_RAG_BUDGET" in e for e in alerts(at, "error"))


class SlowEncoder:
    """The tiny model, slowed down while embedding passages, so an ingest lasts long enough to search.

    `gate` is set when an embed starts; with `hold`, every embed also waits for `release` (set by the test).
    """

    def __init__(self, model, delay: float, hold: bool = False):
        self._model, self._delay = model, delay
        self.gate, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_passages(self, texts, *args, **kwargs):
        self.gate.set()
        time.sleep(self._delay)
        self.release.wait(60)
        return self._model.encode_passages(texts, *args, **kwargs)


def test_search_works_while_an_ingest_holds_the_writer_lock(make_app, app_env):
    from filelock import FileLock, Timeout

    from app.state import job_manager, load_encoder

    at = make_app().run()
    upload(at, [("a.txt", b"harbor lantern evening")])
    docs = app_env["docs"]
    for i in range(4):
        (docs / f"d{i}.txt").write_text(f"document number {i} about the ocean")
    model, _ = load_encoder("tiny", None)
    slow = SlowEncoder(model, delay=0.0, hold=True)  # the folder's passages are embedded in one call
    manager = job_manager(str(app_env["index"]))
    job = manager.ingest_folder(str(docs), slow, "tiny")
    assert slow.gate.wait(30)
    try:
        with pytest.raises(Timeout):  # the facade holds the writer lock for the ingest
            FileLock(str(app_env["index"] / "write.lock")).acquire(timeout=0)
        started = time.perf_counter()
        at2 = make_app(q="harbor lantern", mode="hybrid").run()  # another visitor searches meanwhile
        assert time.perf_counter() - started < 10
        no_exception(at2)
        assert job.running and result_cards(at2) and "a.txt" in result_cards(at2)[0]
        assert any(p.value < 1 for p in at2.get("progress")) or "Ingesting" in page_text(at2)
    finally:
        slow.release.set()
        deadline = time.time() + 60
        while job.running and time.time() < deadline:
            time.sleep(0.1)
    assert job.state == "done" and job.counts()["added"] == 4
    at2.run()
    assert len(documents_table(at2)) == 5


def test_stopping_an_ingest_keeps_what_was_committed(app_env):
    from app.jobs import JobManager
    from app.state import load_encoder

    docs = app_env["docs"]
    for i in range(6):
        (docs / f"d{i}.txt").write_text(f"document number {i} about the harbor")
    from index.config import IngestConfig

    model, _ = load_encoder("tiny", None)
    manager = JobManager(app_env["index"], IngestConfig(embed_group=1, commit_every_chunks=2))
    slow = SlowEncoder(model, delay=0.4)
    job = manager.ingest_folder(str(docs), slow, "tiny")
    assert slow.gate.wait(30)
    job.stop_requested.set()
    deadline = time.time() + 60
    while job.running and time.time() < deadline:
        time.sleep(0.05)
    assert job.state == "stopped" and 1 <= job.counts()["added"] < 6
    with index.open(app_env["index"], model) as ix:
        assert ix.stats().documents == job.counts()["added"]  # each file embedded before the stop was committed
