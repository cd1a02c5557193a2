"""The top results as a prompt-ready context block with numbered citations (`index.build_context`)."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import streamlit as st

from index.rag import build_context

from ..render import esc, js_string, short_path
from .search import SearchOutcome

COPY_BUTTON = """
<div style="display:flex;gap:.5rem;align-items:center">
<button id="nv-copy-{uid}" type="button" style="font:inherit;font-size:.9rem;padding:.35rem .9rem;
 border-radius:.5rem;border:1px solid rgba(128,128,128,.45);background:transparent;color:inherit;cursor:pointer">
 <svg xmlns="http://www.w3.org/2000/svg" width="15" height="15" viewBox="0 0 24 24" fill="none"
 stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"
 style="vertical-align:-2px;margin-right:.35rem"><rect x="9" y="9" width="13" height="13" rx="2"/>
 <path d="M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1"/></svg>Copy context</button><span id="nv-copied-{uid}" style="font-size:.85rem;opacity:.75"></span></div>
<script>
(function() {{
  const text = {text};
  const button = document.getElementById("nv-copy-{uid}");
  const note = document.getElementById("nv-copied-{uid}");
  if (!button) return;
  button.addEventListener("click", async () => {{
    try {{ await navigator.clipboard.writeText(text); }}
    catch (e) {{
      const area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      document.execCommand("copy"); area.remove();
    }}
    note.textContent = "copied";
    setTimeout(() => {{ note.textContent = ""; }}, 2000);
  }});
}})();
</script>
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "context"


def render(outcome: SearchOutcome, encoder: Any, default_budget: int) -> None:
    if not outcome.results:
        st.info("No results, so no context.")
        return
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    budget = c1.number_input("Token budget", min_value=64, max_value=32768, value=default_budget, step=250,
                             key="rag_budget", help="Passages are added in rank order while they fit; counted "
                                                    "with the model's tokenizer.")
    count = getattr(encoder, "count_tokens", None)
    context = build_context(outcome.results, int(budget), count)
    c2.html(
        f"<div class='nv-summary'><b>{context.passages}</b> passages from <b>{len(context.citations)}</b> "
        f"sources · {context.tokens:,} tokens"
        + (" · cut to fit the budget" if context.truncated else "") + "</div>")
    lines = sum(1 + len(line) // 110 for line in context.text.splitlines())
    st.code(context.text, language=None, wrap_lines=True, height=min(460, 40 + 21 * lines))
    b1, b2, b3, _ = st.columns([1.3, 1.3, 1.3, 3], vertical_alignment="center")
    with b1:
        st.html(COPY_BUTTON.format(uid=zlib.crc32(context.text.encode()), text=js_string(context.text)),
                unsafe_allow_javascript=True)
    name = _slug(outcome.request.query)
    b2.download_button("Download .md", context.text, file_name=f"context-{name}.md", mime="text/markdown",
                       icon=":material/download:", on_click="ignore")
    payload = {"query": outcome.request.query, "mode": outcome.request.mode, **context.to_dict()}
    b3.download_button("Download .json", json.dumps(payload, indent=2, ensure_ascii=False),
                       file_name=f"context-{name}.json", mime="application/json", icon=":material/data_object:",
                       on_click="ignore")
    st.markdown("**Citations**")
    rows = "".join(
        f"<div>[{c.number}] <span class='nv-path'>{esc(short_path(c.path))}</span>"
        + (f" · page {c.page}" if c.page is not None else "")
        + (f" · <i>{esc(c.title)}</i>" if c.title else "") + "</div>"
        for c in context.citations
    )
    st.html(rows)
