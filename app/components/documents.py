"""The Documents tab: every ingested document, filtered as you type, with re-ingest and delete."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:  # pandas is imported when a table is built: 1 s less before the first page
    import pandas as pd

from index.errors import IndexStoreError

from ..jobs import BusyError, JobManager
from ..render import esc, md, short_path
from .ingest import start_reingest

FILTER = "doc_filter"
TABLE = "doc_table"
SELECTED = "doc_selected"
ROWS = "_doc_rows"
PENDING = "_doc_pending_delete"
FLASH = "_doc_flash"
CLEAR = "_doc_clear_selection"
DOCS = "_doc_list"
MAX_OPTIONS = 2000  # the selection list offers the documents shown in the table, up to this many


def matches(doc: Any, needle: str) -> bool:
    hay = f"{doc.path} {doc.title or ''} {doc.kind}".lower()
    return all(term in hay for term in needle.lower().split())


COLUMNS = ["path", "type", "passages", "modified", "ingested", "title", "pages", "size (KB)"]


def frame(docs: list[Any]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame({
        "path": [short_path(d.path) for d in docs], "type": [d.kind for d in docs],
        "passages": [d.chunks for d in docs],
        "modified": [datetime.fromtimestamp(d.mtime) for d in docs],
        "ingested": [datetime.fromtimestamp(d.ingested_at) for d in docs],
        "title": [d.title or "" for d in docs], "pages": [d.pages for d in docs],
        "size (KB)": [round(d.size / 1024, 1) for d in docs],
    }, columns=COLUMNS)
    if df["pages"].isna().all():
        df = df.drop(columns=["pages"])
    return df


def cached_documents(reader: Any, generation: int) -> list[Any]:
    """The document list, read again only when the index changed (a commit bumps the generation)."""
    key = (str(reader.directory), generation)
    cached = st.session_state.get(DOCS)
    if cached is None or cached[0] != key:
        cached = (key, reader.documents())
        st.session_state[DOCS] = cached
    return cached[1]


def _table_selected() -> None:
    """The table's row selection becomes the selection the buttons act on."""
    rows = st.session_state.get(ROWS, [])
    picked = st.session_state[TABLE].selection.rows
    st.session_state[SELECTED] = [rows[i] for i in picked if i < len(rows)]


def render(reader: Any, manager: JobManager, encoder: Any, source: str, generation: int) -> None:
    flash = st.session_state.pop(FLASH, None)
    if flash:
        getattr(st, flash[0])(flash[1])
    docs = cached_documents(reader, generation)
    if not docs:
        st.info("No documents yet. Add some in the **Ingest** tab.", icon=":material/inbox:")
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    needle = c1.text_input("Find documents", key=FILTER, live=True, type="search", icon=":material/search:",
                           placeholder="Type part of a path, title or type…", label_visibility="collapsed")
    shown = [d for d in docs if matches(d, needle or "")]
    c2.html(f"<div class='nv-summary' style='text-align:right'>{len(shown):,} of {len(docs):,} documents"
                "</div>")
    st.session_state[ROWS] = [d.path for d in shown]
    st.dataframe(
        frame(shown), key=TABLE, on_select=_table_selected, selection_mode="multi-row", hide_index=True,
        width="stretch", height=min(38 + 35 * max(len(shown), 1), 460),
        column_config={
            "path": st.column_config.TextColumn("Path", width="large"),
            "type": st.column_config.TextColumn("Type", width="small"),
            "passages": st.column_config.NumberColumn("Passages", width="small"),
            "modified": st.column_config.DatetimeColumn("Modified", format="YYYY-MM-DD HH:mm", width=140),
            "ingested": st.column_config.DatetimeColumn("Ingested at", format="YYYY-MM-DD HH:mm", width=140),
            "title": st.column_config.TextColumn("Title", width="medium"),
            "pages": st.column_config.NumberColumn("Pages", width="small"),
            "size (KB)": st.column_config.NumberColumn("Size (KB)", width="small"),
        },
    )
    known = {d.path for d in docs}
    if st.session_state.pop(CLEAR, False):
        st.session_state[SELECTED] = []
    current = [p for p in st.session_state.get(SELECTED, []) if p in known]
    if current != st.session_state.get(SELECTED, current):
        st.session_state[SELECTED] = current
    options = list(dict.fromkeys(current + [d.path for d in shown[:MAX_OPTIONS]]))
    selected = st.multiselect("Selected documents", options, key=SELECTED, format_func=short_path,
                              placeholder="Select rows in the table, or pick documents here")
    busy = manager.busy
    b1, b2, _ = st.columns([1, 1, 3])
    if b1.button("Re-ingest", icon=":material/refresh:", disabled=not selected or busy, width="stretch",
                 help="Read the files again and re-embed them, even when unchanged."):
        if start_reingest(manager, list(selected), encoder, source) is not None:
            st.rerun()
    if b2.button("Delete…", icon=":material/delete:", disabled=not selected or busy, width="stretch"):
        st.session_state[PENDING] = list(selected)
    if busy:
        st.caption("An ingest is running: re-ingest and delete wait until it is done.")
    pending = st.session_state.get(PENDING)
    if pending:
        with st.container(border=True):
            n = len(pending)
            st.warning(f"Delete {n} document{'s' * (n != 1)} from the index? Their passages disappear from "
                       "search. The files themselves are not touched.", icon=":material/delete_forever:")
            st.html("".join(f"<div class='nv-path'>{esc(short_path(p))}</div>" for p in pending[:20])
                        + (f"<div>…and {n - 20} more</div>" if n > 20 else ""))
            y, no, _ = st.columns([1, 1, 3])
            if y.button(f"Yes, delete {n}", type="primary", key="doc_confirm_delete", width="stretch"):
                st.session_state.pop(PENDING, None)
                try:
                    report = manager.delete(pending, encoder, source)
                    msg = f"Deleted {len(report.deleted)} document(s), {report.chunks_removed} passages."
                    if report.not_found:
                        msg += f" Not in the index: {md(', '.join(report.not_found))}."
                    st.session_state[FLASH] = ("success", msg)
                    st.session_state[CLEAR] = True
                except (BusyError, IndexStoreError) as exc:
                    st.session_state[FLASH] = ("error", f"Nothing deleted: {md(exc)}")
                st.rerun()
            if no.button("Cancel", key="doc_cancel_delete", width="stretch"):
                st.session_state.pop(PENDING, None)
                st.rerun()
