"""Small pure helpers that turn index data into safe HTML and readable strings (no Streamlit here)."""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

CSS = """
<style>
/* Cards, highlights and small print that read well on the light and the dark theme alike:
   colours are translucent or inherited, never fixed dark-on-light. */
.block-container {padding-top: 3.4rem;}
[data-testid="stAppDeployButton"] {display: none;}
.nv-stats {display: grid; grid-template-columns: 1fr 1fr; gap: .55rem .8rem; margin: .2rem 0 .6rem;}
.nv-stat-label {font-size: .72rem; text-transform: uppercase; letter-spacing: .05em; opacity: .62;}
.nv-stat-value {font-size: 1.12rem; font-weight: 600; font-variant-numeric: tabular-nums; line-height: 1.3;
                word-break: break-word;}
.nv-model {font-weight: 650; font-size: 1.02rem; word-break: break-all;}
.nv-hero {display: flex; align-items: baseline; gap: .8rem; flex-wrap: wrap; margin-bottom: .1rem;}
.nv-hero h1 {font-size: 1.9rem; margin: 0; padding: 0;}
.nv-tagline {opacity: .72; font-size: .98rem;}
.nv-head {display: flex; align-items: baseline; gap: .55rem; flex-wrap: nowrap;}
.nv-rank {font-weight: 700; opacity: .5; font-variant-numeric: tabular-nums; min-width: 1.6rem;}
.nv-title {font-weight: 650; font-size: 1.04rem; flex: 1 1 auto; min-width: 0; overflow: hidden;
            text-overflow: ellipsis; white-space: nowrap;}
.nv-score {flex: none; margin-left: auto; font-variant-numeric: tabular-nums; font-size: .8rem; white-space: nowrap;
           padding: .08rem .55rem; border-radius: 999px; background: rgba(128, 128, 128, .16);}
.nv-meta {font-size: .82rem; opacity: .68; margin: .1rem 0 .35rem 2.15rem; word-break: break-all;}
.nv-meta code {font-size: .8rem; background: transparent; padding: 0;}
.nv-kind {text-transform: uppercase; letter-spacing: .04em; font-size: .7rem; font-weight: 600;
          padding: .05rem .4rem; border-radius: .3rem; border: 1px solid rgba(128, 128, 128, .45);}
.nv-passage {line-height: 1.62; margin-left: 2.15rem; font-size: .97rem;}
.nv-full {line-height: 1.58; font-size: .92rem;}
.nv-neighbour {line-height: 1.5; font-size: .88rem; opacity: .85;
               border-left: 3px solid rgba(128, 128, 128, .35); padding-left: .7rem; margin: .2rem 0 .6rem;}
.nv-label {font-size: .75rem; text-transform: uppercase; letter-spacing: .05em; opacity: .6;}
mark.nv-hit {background: rgba(255, 184, 0, .38); color: inherit; padding: 0 .12em; border-radius: .2em;}
.nv-summary {opacity: .8; font-size: .92rem; margin: .2rem 0 .4rem;}
.nv-path {font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .78rem;
          word-break: break-all; opacity: .8;}
</style>
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


_MD_SPECIAL = re.compile(r"([\\*_\[\]<>#|~$])")


def md(text: object) -> str:
    """Text for Streamlit markdown (alerts, captions): markdown and LaTeX characters escaped outside
    `code spans`, so paths, queries and error messages show as written."""
    parts = re.split(r"(`[^`\n]+`)", str(text))
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else _MD_SPECIAL.sub(r"\\\1", p)
                   for p in parts)


def esc_lines(text: str) -> str:
    """Escaped, with line breaks kept as <br> (runs of blank lines become one empty line)."""
    return nl2br(esc(text))


def nl2br(markup: str) -> str:
    return re.sub(r"\n\s*\n+", "<br><br>", markup.strip("\n")).replace("\n", "<br>")


def highlight_html(text: str, spans: Sequence[tuple[int, int]], offset: int = 0, breaks: bool = True) -> str:
    """`text` escaped, with each (start, end) span (relative to `offset`) wrapped in <mark>; line breaks
    kept as <br> (`breaks`) or folded into spaces."""
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        s, e = start - offset, end - offset
        if e <= 0 or s >= len(text) or s < pos:
            continue
        s = max(s, 0)
        e = min(e, len(text))
        out.append(esc(text[pos:s]))
        out.append(f'<mark class="nv-hit">{esc(text[s:e])}</mark>')
        pos = e
    out.append(esc(text[pos:]))
    joined = "".join(out)
    return nl2br(joined) if breaks else re.sub(r"\s*\n\s*", " ", joined.strip())


def passage_html(result: object) -> str:
    """The best-matching sentence of a result, highlighted, with ellipses where the chunk goes on."""
    text = result.text
    s, e = result.passage_start, result.passage_end
    if e <= s:
        s, e = 0, min(len(text), 400)
    body = highlight_html(text[s:e], result.highlights, offset=s, breaks=False)
    before = "… " if text[:s].strip() else ""
    after = " …" if text[e:].strip() else ""
    return before + body + after


def stats_grid(items: Sequence[tuple[str, str]]) -> str:
    """Label/value pairs as a compact two-column grid (the sidebar's figures)."""
    cells = "".join(f"<div><div class='nv-stat-label'>{esc(label)}</div><div class='nv-stat-value'>{esc(value)}</div>"
                    "</div>" for label, value in items)
    return f"<div class='nv-stats'>{cells}</div>"


def human_bytes(n: int | float) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def score_label(mode: str, score: float, fusion: str | None = None) -> str:
    """The score as its kind: cosine, BM25, or the hybrid's fused score (RRF, or min-max / z-score)."""
    if mode == "dense":
        return f"cosine {score:.3f}"
    if mode == "keyword":
        return f"BM25 {score:.3g}"
    if fusion in (None, "rrf"):
        return f"RRF {score:.4f}"
    return f"fused {score:.3f}"


def display_title(result: object, limit: int = 160) -> str:
    """The document's title (its first line for plain text), else the file name; at most `limit` chars."""
    title = " ".join((getattr(result, "title", None) or "").split())
    title = title or Path(result.path).name
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def short_path(path: str, root: str | None = None) -> str:
    """A path relative to `root` (default: the working directory) when it lies under it."""
    base = str(root or Path.cwd()).rstrip(os.sep) + os.sep
    return path[len(base):] if path.startswith(base) else path


def js_string(text: str) -> str:
    """`text` as a JavaScript string literal that is safe inside an HTML <script> element."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
