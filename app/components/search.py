"""The search form, kept in step with the URL, and running the search (cached per session)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import streamlit as st

from encoder.instructions import INSTRUCTIONS
from index.errors import IndexStoreError

from ..params import KINDS, MAX_K, MODE_HELP, MODES, PARAM_KEYS, SearchRequest
from ..render import md
from ..threads import run_query

log = logging.getLogger(__name__)

W = {  # widget keys
    "query": "s_query", "mode": "s_mode", "k": "s_k", "task": "s_task", "instruction": "s_instruction",
    "types": "s_types", "path": "s_path", "after": "s_after", "before": "s_before",
}
SYNCED = "_s_synced"
CACHE = "_s_cache"


@dataclass
class SearchOutcome:
    request: SearchRequest
    results: list[Any]
    seconds: float
    error: str | None = None


def url_request() -> SearchRequest:
    return SearchRequest.from_params({k: st.query_params.get_all(k) for k in PARAM_KEYS if k in st.query_params})


def _load_widgets(req: SearchRequest) -> None:
    ss = st.session_state
    for field, key in W.items():
        value = getattr(req, field)
        ss[key] = list(value) if field == "types" else value


def widget_request() -> SearchRequest:
    ss = st.session_state
    raw = {
        "q": ss.get(W["query"], ""), "mode": ss.get(W["mode"]) or "semantic", "k": str(ss.get(W["k"], 10)),
        "task": ss.get(W["task"]) or "retrieval", "instruction": ss.get(W["instruction"], ""),
        "type": list(ss.get(W["types"]) or []), "path": ss.get(W["path"], ""),
        "after": ss[W["after"]].isoformat() if ss.get(W["after"]) else "",
        "before": ss[W["before"]].isoformat() if ss.get(W["before"]) else "",
    }
    return SearchRequest.from_params(raw)


def _submit() -> None:
    """Form callback: the submitted search goes into the URL, so it can be shared and reloaded."""
    req = widget_request()
    st.query_params.from_dict(req.to_params())
    st.session_state[SYNCED] = req.key()


def sync_from_url() -> SearchRequest:
    """Load the URL's search into the form when the URL changed (first load, shared link, back button)."""
    req = url_request()
    if st.session_state.get(SYNCED) != req.key():
        _load_widgets(req)
        st.session_state[SYNCED] = req.key()
    return req


def render_form() -> SearchRequest:
    url_req = sync_from_url()
    with st.form("search", border=False, enter_to_submit=True):
        c1, c2, c3 = st.columns([6, 3.2, 1.5], vertical_alignment="center")
        c1.text_input("Query", key=W["query"], placeholder="Ask a question or type keywords…",
                      label_visibility="collapsed")
        c2.segmented_control("Mode", list(MODES), key=W["mode"], required=True, label_visibility="collapsed",
                             format_func=str.capitalize, width="stretch",
                             help="\n\n".join(f"**{m.capitalize()}**: {h}" for m, h in MODE_HELP.items()))
        c3.form_submit_button("Search", type="primary", icon=":material/search:", on_click=_submit,
                              width="stretch")
        req = widget_request()
        label = "Options and filters" + (f" · {req.active_filters} active" if req.active_filters else "")
        with st.expander(label, icon=":material/tune:"):
            o1, o2, o3 = st.columns([2, 3, 1])
            o1.selectbox("Task instruction", list(INSTRUCTIONS), key=W["task"],
                         help="NV-Embed embeds a query as `Instruct: {instruction}\\nQuery: {text}`. "
                              "Pick the task closest to yours.")
            o2.text_input("…or your own instruction", key=W["instruction"],
                          placeholder="e.g. Given a bug report, retrieve the log lines that explain it",
                          help="When given, it replaces the task's instruction.")
            o3.number_input("Results", min_value=1, max_value=MAX_K, step=1, key=W["k"])
            f1, f2, f3, f4 = st.columns([3, 3, 1.5, 1.5])
            f1.multiselect("File type", list(KINDS), key=W["types"], format_func=KINDS.get,
                           placeholder="any type")
            f2.text_input("Path", key=W["path"], placeholder="a folder, a file or a glob such as *.pdf")
            f3.date_input("Modified from", key=W["after"], value=None, format="YYYY-MM-DD")
            f4.date_input("Modified until", key=W["before"], value=None, format="YYYY-MM-DD")
    for problem in url_req.problems:
        st.caption(f":orange[Link: {md(problem)}]")
    return widget_request()


def run_search(reader: Any, req: SearchRequest, generation: int) -> SearchOutcome:
    """The results of `req`, computed once per request and index generation in this session."""
    key = (req.key(), generation)
    cached = st.session_state.get(CACHE)
    if cached is not None and cached[0] == key:
        return cached[1]
    started = time.perf_counter()
    try:
        results = run_query(reader.search, req.query, req.k, mode=req.index_mode, filters=req.filters(),
                            instruction=req.instruction_text)
        outcome = SearchOutcome(req, results, time.perf_counter() - started)
    except IndexStoreError as exc:
        outcome = SearchOutcome(req, [], time.perf_counter() - started, str(exc))
    except Exception as exc:  # shown as a message; the traceback goes to the server log
        log.exception("search failed")
        outcome = SearchOutcome(req, [], time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    st.session_state[CACHE] = (key, outcome)
    return outcome
