"""Result cards: title, path, page, score, the matching passage highlighted, the full passage and its
neighbours on demand. Near-duplicate passages of one file are one card (`index.grouping.collapse`), the
others behind "n more from this file"."""

from __future__ import annotations

from typing import Any

import streamlit as st

from index.grouping import ResultGroup

from ..render import display_title, esc, esc_lines, highlight_html, passage_html, score_label, short_path
from .search import SearchOutcome


def summary_line(outcome: SearchOutcome, shown: int | None = None) -> str:
    req = outcome.request
    n = len(outcome.results) if shown is None else shown
    head = f"<b>{n} result{'s' * (n != 1)}</b> for “{esc(req.query)}”"
    if n != len(outcome.results):
        head += f" ({len(outcome.results)} passages)"
    parts = [head, esc(req.mode), f"{outcome.seconds:.2f} s"]
    if req.active_filters:
        parts.append("filtered by " + esc(req.describe_filters()))
    if req.mode != "keyword":
        parts.append(f"instruction: <i>{esc(req.instruction_text)}</i>")
    return "<div class='nv-summary nv-results-summary'>" + " · ".join(parts) + "</div>"


def card(group: ResultGroup, reader: Any) -> None:
    result = group.best
    with st.container(border=True):
        meta = [f"<code>{esc(short_path(result.path))}</code>"]
        if result.page is not None:
            meta.append(f"page {result.page}")
        around = reader.neighbours(result.document_id, result.ordinal)
        if around.total > 1:
            meta.append(f"passage {result.ordinal + 1} of {around.total}")
        meta.append(f"<span class='nv-kind'>{esc(result.kind)}</span>")
        sub = []
        if result.mode == "hybrid":
            if result.dense_score is not None:
                sub.append(f"cosine {result.dense_score:.3f}")
            if result.keyword_score is not None:
                sub.append(f"BM25 {result.keyword_score:.3g}")
        score_help = f" title='{esc(' · '.join(sub))}'" if sub else ""
        st.html(
            f"<div class='nv-head'><span class='nv-rank'>{group.position}</span>"
            f"<span class='nv-title' title='{esc(display_title(result, 400))}'>{esc(display_title(result))}</span>"
            f"<span class='nv-score'{score_help}>{esc(score_label(result.mode, result.score, result.fusion))}</span></div>"
            f"<div class='nv-meta'>{' · '.join(meta)}</div>"
            f"<div class='nv-passage'>{passage_html(result)}</div>")
        c1, c2 = st.columns(2)
        with c1.expander("Full passage", icon=":material/article:"):
            st.html(f"<div class='nv-full'>{highlight_html(result.text, result.highlights)}</div>")
        with c2.expander("Neighbouring passages", icon=":material/unfold_more:"):
            if around.previous is None and around.next is None:
                st.caption("This document has no other passage.")
            if around.previous is not None:
                st.html(f"<div class='nv-label'>Before (passage {result.ordinal})</div>"
                            f"<div class='nv-neighbour'>{esc_lines(around.previous)}</div>")
            if around.next is not None:
                st.html(f"<div class='nv-label'>After (passage {result.ordinal + 2})</div>"
                            f"<div class='nv-neighbour'>{esc_lines(around.next)}</div>")
        if group.more:
            with st.expander(group.more_label, icon=":material/content_copy:"):
                for other in group.similar:
                    st.html(f"<div class='nv-label nv-more'>passage {other.ordinal + 1} · "
                            f"{esc(score_label(other.mode, other.score, other.fusion))}</div>"
                            f"<div class='nv-neighbour'>{passage_html(other)}</div>")

