"""Streamlit entry point: `streamlit run app/main.py [-- --index DIR --model NAME_OR_PATH ...]`.

Options and environment variables are listed in `app/config.py` (and the README). The page: a sidebar with
the model, the index and where data is kept; a status strip for a running or finished ingest; tabs for
Search (results as cards, and the RAG context), Ingest and Documents. All index work is done by the
`index` facade and the model by `encoder`; this package only wires and presents them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import gate  # noqa: E402
from app.components import TAB_KEY, TABS, documents, ingest, rag, results, search, sidebar  # noqa: E402
from app.config import AppConfig, ConfigError, load_config, script_args  # noqa: E402
from app.render import CSS, esc, md  # noqa: E402
from app.state import (  # noqa: E402
    ModelLoadError,
    attach_model,
    job_manager,
    load_encoder,
    model_loader,
    model_ready,
    open_reader,
    resolve_model_source,
)
from index.cli import stored_model_source  # noqa: E402
from index.errors import IndexStoreError, ModelMismatchError  # noqa: E402
from index.grouping import collapse  # noqa: E402

log = logging.getLogger("app")

TAGLINE = "Semantic, keyword and hybrid search over your own documents, with citations ready for RAG."


@contextlib.contextmanager
def guard(area: str) -> Iterator[None]:
    """An unexpected error in one part of the page becomes a message there; the rest still renders."""
    try:
        yield
    except Exception as exc:  # st.rerun / st.stop are BaseExceptions and pass through
        log.exception("%s failed", area)
        st.error(f"Something went wrong in {area}: {type(exc).__name__}: {md(exc)}. The details are in the server "
                 "log.", icon=":material/error:")


def header() -> None:
    st.html(f"<div class='nv-hero'><h1>NV-Embed search</h1><span class='nv-tagline'>{esc(TAGLINE)}</span>"
                "</div>")


def model_failed(cfg: AppConfig, source: str, exc: Exception) -> None:
    sidebar.render(cfg, source, model_error=str(exc))
    st.error(f"The model could not be loaded: {md(exc)}. Start the app with another one "
             "(`streamlit run app/main.py -- --model PATH`, or `NVEMBED_MODEL=PATH`).", icon=":material/error:")


def wait_for_model(reader: Any, source: str, cfg: AppConfig) -> Any:
    """The model, attached to the reader, waiting for it if it is still loading (errors as on open)."""
    with st.spinner(f"Loading the embedding model `{source}`…"):
        return attach_model(reader, source, cfg.device)


def search_tab(reader: Any, encoder: Any, stats: Any, cfg: AppConfig, source: str) -> search.SearchOutcome | None:
    req = search.render_form()
    if stats.documents == 0:
        if req.query:
            st.warning(f"Nothing is ingested yet, so there is nothing to search for “{md(req.query)}”. "
                       "Add documents in the **Ingest** tab, then search again.", icon=":material/search_off:")
        else:
            st.info("The index is empty. Add documents in the **Ingest** tab: upload files, or give a folder "
                    "on the server.", icon=":material/inbox:")
        return None
    if not req.query:
        st.caption(f"Search {stats.documents:,} documents ({stats.chunks:,} passages). **Semantic** finds "
                   "meaning, **keyword** exact words, **hybrid** both. The search goes into the page address, "
                   "so it can be shared.")
        return None
    if encoder is None and req.mode != "keyword":
        encoder = wait_for_model(reader, source, cfg)  # a semantic or hybrid search needs the model
    outcome = search.run_search(reader, req, stats.generation)
    if outcome.error:
        st.error(f"The search failed: {md(outcome.error)}", icon=":material/error:")
        return outcome
    if not outcome.results:
        hint = " Try fewer filters." if req.active_filters else ""
        if req.mode == "keyword":
            hint += " Keyword search needs one of the words to occur; semantic search does not."
        st.warning(f"No results for “{md(req.query)}”.{hint}", icon=":material/search_off:")
        return outcome
    groups = collapse(outcome.results)  # near-duplicate passages of a file: one card; the RAG tab keeps all
    st.html(results.summary_line(outcome, len(groups)))
    cards, context = st.tabs([f"Results ({len(groups)})", "RAG context"])
    with cards:
        for group in groups:
            results.card(group, reader)
    with context:
        rag.render(outcome, encoder, cfg.budget)
    return outcome


def main() -> None:
    st.set_page_config(page_title="NV-Embed search", page_icon=":material/travel_explore:", layout="wide",
                       initial_sidebar_state="expanded")
    st.set_option("client.toolbarMode", "minimal")  # no "Deploy" button in a product
    st.html(CSS)
    header()
    try:
        cfg = load_config(script_args(__file__))
    except ConfigError as exc:
        st.error(md(exc), icon=":material/settings:")
        return
    if not gate.admitted(cfg.password):
        return
    source = resolve_model_source(cfg.model, cfg.index_dir)
    # The model loads on a background thread, started at the end of the first run at the latest (see
    # app/state.py): keyword search, the index's figures and the documents list do not need it.
    if cfg.model_wait > 0 and not model_ready(source, cfg.device):
        loader = model_loader(source, cfg.device)
        assert loader is not None
        with st.spinner(f"Loading the embedding model `{source}`…"), contextlib.suppress(TimeoutError, ModelLoadError):
            loader.result(timeout=cfg.model_wait)
    encoder = None
    try:
        with st.spinner(f"Opening the index (a new one waits for the embedding model `{source}`; the very first "
                        "start converts the default model once, about a minute)…"):
            reader = open_reader(str(cfg.index_dir), source, cfg.device)
        if model_ready(source, cfg.device):
            encoder = attach_model(reader, source, cfg.device)
    except ModelLoadError as exc:
        model_failed(cfg, source, exc)
        return
    except ModelMismatchError as exc:  # raised once the model is loaded: the sidebar says which one it is
        sidebar.render(cfg, source, load_encoder(source, cfg.device)[0])
        built_with = stored_model_source(cfg.index_dir)
        fix = (f"Start the app with that model (`streamlit run app/main.py -- --model {built_with}`), "
               if built_with else "Start the app with the model the index was built with (`-- --model PATH`), ")
        st.error(f"**This index was built with another model.** {md(exc)}", icon=":material/error:")
        st.info(fix + "or use another index directory (`-- --index DIR`). Re-embedding everything with the new "
                "model: `python -m index.ingest DOCS --reindex --model ...`.", icon=":material/lightbulb:")
        return
    except IndexStoreError as exc:
        sidebar.render(cfg, source, encoder)
        st.error(f"The index at `{cfg.index_dir}` cannot be opened: {md(exc)}", icon=":material/error:")
        return
    stats = reader.stats()
    manager = job_manager(str(cfg.index_dir))
    side = st.sidebar.empty()
    sidebar.render(cfg, source, encoder, stats, model_loading=encoder is None, into=side.container())

    status = st.container()
    # Only the open tab is computed (a search does not rebuild the documents table, and so on).
    tab_search, tab_ingest, tab_docs = st.tabs(list(TABS.values()), key=TAB_KEY, on_change="rerun")
    if tab_search.open:
        with tab_search, guard("the search"):
            search_tab(reader, encoder, stats, cfg, source)
    if tab_docs.open:
        with tab_docs, guard("the documents table"):
            encoder = wait_for_model(reader, source, cfg) if encoder is None else encoder
            documents.render(reader, manager, encoder, source, stats.generation)
    if tab_ingest.open:
        with tab_ingest, guard("the ingest forms"):
            encoder = wait_for_model(reader, source, cfg) if encoder is None else encoder
            ingest.render_forms(manager, encoder, source, cfg.uploads_dir, cfg.roots)
    model_loader(source, cfg.device)  # the page is drawn: start loading the model now, if not yet
    if encoder is None and model_ready(source, cfg.device) and reader.encoder is not None:
        # a search or tab of this run waited for the model: the sidebar drawn before it still says "Loading"
        sidebar.render(cfg, source, reader.encoder, stats, into=side.container())
    with status, guard("the ingest status"):
        ingest.render_status(manager)  # last: it follows a job started by this run until it ends


main()
