"""The first page does not wait for the model: keyword search, the index's figures and the sidebar come first,
the model loads on a background thread, and a semantic search (or the Ingest tab) waits for it."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import index
from app import state
from index.encoders import load_encoder

from .conftest import button, no_exception, page_text, result_cards

SOURCE = "hash:40"  # a stand-in no other test uses, so its loader is this test's own


@pytest.fixture
def slow_model(app_env, monkeypatch):
    """An index built with SOURCE, and a model load that waits until the test releases it."""
    (app_env["docs"] / "zebra.txt").write_text("The zebra has black and white stripes across its back.")
    (app_env["docs"] / "wing.txt").write_text("Airflow over a wing at high speed and the boundary layer.")
    encoder, recorded = load_encoder(SOURCE, None)
    with index.open(app_env["index"], encoder, model_source=recorded) as ix:
        ix.ingest(app_env["docs"])
    monkeypatch.setenv("NVEMBED_MODEL", SOURCE)
    monkeypatch.setenv("NVEMBED_MODEL_WAIT", "0")
    release = threading.Event()
    real = state.load_index_encoder

    def slow(source, device):
        assert release.wait(60), "the test never released the model"
        return real(source, device)

    monkeypatch.setattr(state, "load_index_encoder", slow)
    state.clear_loaders()
    state.open_reader.clear()
    yield release
    release.set()
    state.clear_loaders()
    state.open_reader.clear()


def search(at, query: str, mode: str):
    at.segmented_control(key="s_mode").set_value(mode)
    at.text_input(key="s_query").input(query)
    return button(at, "Search").click().run()


def test_the_first_page_and_keyword_search_do_not_wait_for_the_model(make_app, slow_model):
    at = make_app().run()
    no_exception(at)
    text = page_text(at)
    assert "2 documents (2 passages)" in text  # the index's figures: the page is usable
    assert any("Loading `hash:40`" in i.value for i in at.sidebar.info)
    loader = state.model_loader(SOURCE, None)
    assert not loader.done()

    search(at, "zebra", "keyword")
    no_exception(at)
    assert any("zebra.txt" in card for card in result_cards(at))
    assert not loader.done()  # keyword search never needed the model

    threading.Timer(1.0, slow_model.set).start()
    search(at, "stripes of a zebra", "semantic")  # waits for the model, then searches with it
    no_exception(at)
    assert loader.done() and result_cards(at)
    at.run()
    assert not at.sidebar.info and "fingerprint" in page_text(at)  # the model's card replaces the note


def test_a_new_index_waits_for_the_model(app_env, make_app, monkeypatch):
    monkeypatch.setenv("NVEMBED_MODEL", SOURCE)
    monkeypatch.setenv("NVEMBED_MODEL_WAIT", "0")
    state.clear_loaders()
    state.open_reader.clear()
    try:
        at = make_app().run()  # no index yet: it is created with the model's identity, so the page waits
        no_exception(at)
        assert state.model_loader(SOURCE, None).done()
        assert "The index is empty" in page_text(at)
    finally:
        state.clear_loaders()
        state.open_reader.clear()


def test_app_modules_import_without_torch():
    """What the first page imports leaves torch and transformers to the model's background load."""
    import subprocess

    code = ("import sys; import streamlit; import app.state, app.components.search, app.components.sidebar, "
            "app.components.documents, app.components.ingest, app.components.rag, index.cli, index.grouping; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         cwd=root)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
