"""Search results as a prompt-ready context block with numbered citations, within a token budget.

Each passage is introduced by its citation number, path and page:

    [1] /docs/manual.pdf, page 3
    passage text...

Passages from the same source (path and page) share a number, so a model's "[1]" always means one place.
Passages are added in rank order while they fit `budget_tokens` (counted with the given counter, by default
the encoder's tokenizer; a passage that does not fit is cut at a word boundary when at least
`min_passage_tokens` remain, otherwise assembly stops). The text can go straight into an LLM prompt; the
`citations` list maps numbers back to sources for display.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .retrieval import SearchResult

TokenCount = Callable[[list[str]], list[int]]


@dataclass
class Citation:
    number: int
    path: str
    page: int | None
    title: str | None
    chunk_ids: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.path}, page {self.page}" if self.page is not None else self.path


@dataclass
class RagContext:
    text: str  # the context block
    citations: list[Citation]
    tokens: int  # its size by the counter used
    passages: int  # passages included
    truncated: bool  # a passage was cut or left out for the budget

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": self.text, "tokens": self.tokens, "passages": self.passages, "truncated": self.truncated,
            "citations": [{"number": c.number, "path": c.path, "page": c.page, "title": c.title,
                           "chunk_ids": c.chunk_ids} for c in self.citations],
        }


def approx_tokens(texts: list[str]) -> list[int]:
    """About 4 characters per token: the counter used when no tokenizer is given."""
    return [(len(t) + 3) // 4 for t in texts]


def _cut(text: str, limit: int, count: TokenCount) -> str:
    """The longest prefix of `text` ending at a word boundary with at most `limit` tokens."""
    cuts = [m.start() for m in re.finditer(r"\s+", text)] + [len(text)]
    lo, hi = 0, len(cuts) - 1
    best = ""
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = text[: cuts[mid]].rstrip() + " …"
        if count([candidate])[0] <= limit:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def build_context(results: Sequence[SearchResult], budget_tokens: int = 2000, count_tokens: TokenCount | None = None,
                  min_passage_tokens: int = 32) -> RagContext:
    """The context block for `results` (best first) in at most `budget_tokens` tokens."""
    count = count_tokens or approx_tokens
    numbers: dict[tuple[str, int | None], int] = {}
    entries: list[tuple[str, SearchResult, int]] = []  # (block, result, citation number)
    used = 0
    truncated = False
    for result in results:
        key = (result.path, result.page)
        number = numbers.get(key, len(numbers) + 1)
        label = f"[{number}] {result.path}" + (f", page {result.page}" if result.page is not None else "")
        body = result.text.strip()
        separator = "\n\n" if entries else ""
        block = f"{separator}{label}\n{body}"
        cost = count([block])[0]
        if used + cost > budget_tokens:
            truncated = True
            room = budget_tokens - used - count([f"{separator}{label}\n"])[0]
            body = _cut(body, room, count) if room >= min_passage_tokens else ""
            if not body:
                break
            block = f"{separator}{label}\n{body}"
            cost = count([block])[0]
        numbers.setdefault(key, number)
        entries.append((block, result, number))
        used += cost
        if truncated:
            break
    text = "".join(e[0] for e in entries)
    tokens = count([text])[0] if text else 0
    while entries and tokens > budget_tokens:  # joined text can tokenize a little longer than its parts
        entries.pop()
        truncated = True
        text = "".join(e[0] for e in entries)
        tokens = count([text])[0] if text else 0
    citations: dict[int, Citation] = {}
    for _, result, number in entries:
        citation = citations.setdefault(number, Citation(number, result.path, result.page, result.title))
        citation.chunk_ids.append(result.chunk_id)
    return RagContext(text, list(citations.values()), tokens, len(entries), truncated)
