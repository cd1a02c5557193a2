"""A search as a value: the query and its options, to and from the page URL, to index filters.

The URL holds only what differs from the defaults, e.g.

    /?q=boundary+layer+transition&mode=hybrid&k=5&task=SciFact&type=pdf&type=markdown&path=docs/&after=2024-01-01

so a search can be shared, bookmarked and reloaded. Unknown or malformed values fall back to the defaults
(and are reported in `SearchRequest.problems`) rather than breaking the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from encoder.instructions import INSTRUCTIONS
from index.filters import Filters
from index.retrieval import DEFAULT_MODE as INDEX_DEFAULT_MODE

#: UI name -> index mode.
MODES = {"semantic": "dense", "keyword": "keyword", "hybrid": "hybrid"}
#: The app's default mode: the index's measured best for the default model (index.retrieval.DEFAULT_MODE).
DEFAULT_MODE = next(ui for ui, mode in MODES.items() if mode == INDEX_DEFAULT_MODE)
MODE_HELP = {
    "semantic": "dense vectors from the embedding model (meaning, not words)",
    "keyword": "BM25 over the words (SQLite FTS5); needs no model",
    "hybrid": "semantic and keyword results fused, weighted by how good the model measured on the dev sets "
              "(python -m index.calibrate)",
}
#: Document kinds the filter offers, with labels.
KINDS = {"pdf": "PDF", "docx": "Word", "html": "HTML", "markdown": "Markdown", "text": "Text"}
DEFAULT_TASK = "retrieval"
MAX_K = 100
GLOB_CHARS = set("*?[")

PARAM_KEYS = ("q", "mode", "k", "task", "instruction", "type", "path", "after", "before")


def _first(value: Any) -> str:
    if isinstance(value, list | tuple):
        return str(value[-1]) if value else ""
    return "" if value is None else str(value)


def _all(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        out: list[str] = []
        for v in value:
            out.extend(str(v).split(","))
        return [v.strip() for v in out if v.strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


@dataclass(frozen=True)
class SearchRequest:
    query: str = ""
    mode: str = DEFAULT_MODE  # a key of MODES
    k: int = 10
    task: str = DEFAULT_TASK  # a key of encoder.INSTRUCTIONS
    instruction: str = ""  # free text; overrides `task` when given
    types: tuple[str, ...] = ()  # keys of KINDS
    path: str = ""  # a path prefix, or a glob when it contains * ? [
    after: date | None = None  # modified on or after this day
    before: date | None = None  # modified on or before this day
    problems: tuple[str, ...] = field(default=(), compare=False)

    # ------------------------------------------------------------------------------------ URL ----
    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SearchRequest:
        """From `st.query_params` (or any mapping of strings / lists of strings)."""
        problems: list[str] = []
        d = cls()
        mode = _first(params.get("mode")).lower() or d.mode
        if mode == "dense":
            mode = "semantic"
        if mode not in MODES:
            problems.append(f"unknown mode {mode!r} (semantic, keyword or hybrid); using {d.mode}")
            mode = d.mode
        k = d.k
        raw_k = _first(params.get("k"))
        if raw_k:
            try:
                k = min(MAX_K, max(1, int(raw_k)))
            except ValueError:
                problems.append(f"k={raw_k!r} is not a number; using {d.k}")
        task = _first(params.get("task")) or d.task
        if task not in INSTRUCTIONS:
            match = [name for name in INSTRUCTIONS if name.lower() == task.lower()]
            if match:
                task = match[0]
            else:
                problems.append(f"unknown task {task!r}; using {d.task}")
                task = d.task
        types = []
        for t in _all(params.get("type")):
            t = {"md": "markdown", "txt": "text", "htm": "html"}.get(t.lower(), t.lower())
            if t in KINDS:
                types.append(t)
            else:
                problems.append(f"unknown document type {t!r} ignored")
        dates = {}
        for key in ("after", "before"):
            raw = _first(params.get(key))
            dates[key] = None
            if raw:
                try:
                    dates[key] = date.fromisoformat(raw[:10])
                except ValueError:
                    problems.append(f"{key}={raw!r} is not a date (YYYY-MM-DD); ignored")
        return cls(query=_first(params.get("q")).strip(), mode=mode, k=k, task=task,
                   instruction=_first(params.get("instruction")).strip(), types=tuple(dict.fromkeys(types)),
                   path=_first(params.get("path")).strip(), after=dates["after"], before=dates["before"],
                   problems=tuple(problems))

    def to_params(self) -> dict[str, str | list[str]]:
        """What goes into the URL: only the values that differ from the defaults."""
        d = SearchRequest()
        out: dict[str, str | list[str]] = {}
        if self.query:
            out["q"] = self.query
        if self.mode != d.mode:
            out["mode"] = self.mode
        if self.k != d.k:
            out["k"] = str(self.k)
        if self.task != d.task:
            out["task"] = self.task
        if self.instruction:
            out["instruction"] = self.instruction
        if self.types:
            out["type"] = list(self.types)
        if self.path:
            out["path"] = self.path
        if self.after:
            out["after"] = self.after.isoformat()
        if self.before:
            out["before"] = self.before.isoformat()
        return out

    def key(self) -> tuple:
        return (self.query, self.mode, self.k, self.task, self.instruction, self.types, self.path, self.after,
                self.before)

    def with_query(self, query: str) -> SearchRequest:
        return replace(self, query=query)

    # ---------------------------------------------------------------------------- for the index ----
    @property
    def index_mode(self) -> str:
        return MODES[self.mode]

    @property
    def instruction_text(self) -> str:
        """The instruction the query is embedded with: the free text, else the task's."""
        return self.instruction or INSTRUCTIONS[self.task]

    @property
    def active_filters(self) -> int:
        return sum(bool(x) for x in (self.types, self.path, self.after, self.before))

    def filters(self) -> Filters | None:
        """`index.Filters` for this request (None when nothing restricts); may raise InvalidInputError."""
        if not self.active_filters:
            return None
        paths: tuple[str, ...] = ()
        globs: tuple[str, ...] = ()
        if self.path:
            if GLOB_CHARS & set(self.path):
                globs = (self.path,)
            else:
                paths = (self.path,)
        after = datetime.combine(self.after, time.min).timestamp() if self.after else None
        before = datetime.combine(self.before + timedelta(days=1), time.min).timestamp() if self.before else None
        return Filters(paths=paths, globs=globs, kinds=self.types, modified_after=after, modified_before=before)

    def describe_filters(self) -> str:
        parts = []
        if self.types:
            parts.append("type " + ", ".join(KINDS[t] for t in self.types))
        if self.path:
            parts.append(f"path {self.path}")
        if self.after:
            parts.append(f"from {self.after.isoformat()}")
        if self.before:
            parts.append(f"until {self.before.isoformat()}")
        return "; ".join(parts)
