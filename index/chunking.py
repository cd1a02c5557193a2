"""Cut a loaded document into passages measured in the encoder's own tokens.

Blocks (paragraphs, headings, pages) are packed greedily up to `chunk_tokens`. A page change always starts a
new passage (so every passage has one page to cite); a heading starts one once the current passage holds
`section_tokens`; a block too big for one passage is split at sentence or line ends, and a sentence too big
at token boundaries. When a passage is cut mid-section, the next one repeats the last `overlap_tokens`
tokens (snapped to a word start). Each passage keeps its character offsets into the document text.

Token positions come from the encoder's tokenizer (offset mapping). Joining pieces can tokenize slightly
differently from the pieces alone, so every passage is finally re-counted with the encoder's `count_tokens`
and split again if it exceeds the model's `max_length`: that limit is a guarantee, `chunk_tokens` a target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .config import ChunkingConfig
from .encoders import TokenCounter
from .errors import InvalidInputError
from .loaders import Block

_SENTENCE_END = re.compile(r"[.!?;:。！？](?=\s)|\n")


@dataclass(frozen=True)
class ChunkSpan:
    """One passage: text[start:end] of the document, on `page`, `token_count` tokens as a passage."""

    ordinal: int
    start: int
    end: int
    page: int | None
    text: str
    token_count: int


@dataclass
class _Unit:
    start: int
    end: int
    spans: np.ndarray  # (n, 2) absolute character spans of its tokens
    page: int | None
    heading: bool

    @property
    def ntok(self) -> int:
        return len(self.spans)


def chunk_document(text: str, blocks: Sequence[Block], counter: TokenCounter,
                   config: ChunkingConfig | None = None) -> list[ChunkSpan]:
    """Passages for a document; none longer than the encoder's `max_length` tokens."""
    config = config or ChunkingConfig()
    config.validate(counter.max_length)
    budget = config.chunk_tokens - counter.overhead
    if budget < 4:
        raise InvalidInputError(
            f"chunk_tokens={config.chunk_tokens} leaves no room for text after {counter.overhead} special tokens"
        )
    units = _units(text, blocks, counter, budget)
    spans = _pack(text, units, budget, config)
    return _finalise(text, spans, counter)


def _units(text: str, blocks: Sequence[Block], counter: TokenCounter, budget: int) -> Iterator[_Unit]:
    step = 512
    for i in range(0, len(blocks), step):
        group = blocks[i : i + step]
        token_spans = counter.spans([text[b.start : b.end] for b in group])
        for block, rel in zip(group, token_spans, strict=True):
            if len(rel) == 0:
                continue
            spans = rel + block.start
            if len(spans) <= budget:
                yield _Unit(block.start, block.end, spans, block.page, block.heading)
                continue
            first = True
            for piece in _split(text, block, spans, budget):
                yield _Unit(int(piece[0, 0]), int(piece[-1, 1]), piece, block.page, block.heading and first)
                first = False


def _split(text: str, block: Block, spans: np.ndarray, budget: int) -> Iterator[np.ndarray]:
    """Token runs of a block too big for one passage: its sentences (or lines), long ones cut at `budget`."""
    ends = np.fromiter((m.end() for m in _SENTENCE_END.finditer(text, block.start, block.end)), dtype=np.int64)
    sentence_of = np.searchsorted(ends, spans[:, 0], side="right")
    cuts = np.flatnonzero(np.diff(sentence_of)) + 1
    for sentence in np.split(spans, cuts):
        for j in range(0, len(sentence), budget):
            yield sentence[j : j + budget]


def _word_start(text: str, spans: np.ndarray) -> int:
    """Index of the first token in `spans` that starts a word (so an overlap never begins mid-word)."""
    for j, (s, _) in enumerate(spans):
        if s == 0 or not (text[s - 1].isalnum() and text[s].isalnum()):
            return j
    return len(spans)


def _pack(text: str, units: Iterator[_Unit], budget: int, config: ChunkingConfig) -> list[tuple[int, int, int | None]]:
    out: list[tuple[int, int, int | None]] = []
    current: list[_Unit] = []
    tokens = 0
    only_headings = True

    def emit() -> None:
        out.append((current[0].start, current[-1].end, current[0].page))

    for unit in units:
        if current:
            if unit.page != current[0].page:
                reason = "page"
            elif unit.heading and not only_headings and tokens >= config.section_tokens:
                reason = "section"
            elif tokens + unit.ntok > budget:
                reason = "full"
            else:
                reason = ""
            if reason:
                emit()
                tail: _Unit | None = None
                overlap = min(config.overlap_tokens, budget - unit.ntok)
                if reason == "full" and overlap > 0:
                    last = np.concatenate([u.spans for u in current[-overlap:]])[-overlap:]
                    last = last[_word_start(text, last):]
                    if len(last):
                        tail = _Unit(int(last[0, 0]), current[-1].end, last, unit.page, False)
                current, tokens, only_headings = ([tail], tail.ntok, False) if tail else ([], 0, True)
        current.append(unit)
        tokens += unit.ntok
        only_headings = only_headings and unit.heading
    if current:
        emit()
    return out


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _finalise(text: str, spans: list[tuple[int, int, int | None]], counter: TokenCounter) -> list[ChunkSpan]:
    result: list[ChunkSpan] = []
    pending = [(*_strip(text, s, e), page) for s, e, page in spans]
    pending = [p for p in pending if p[1] > p[0]]
    while pending:
        batch, pending = pending[:256], pending[256:]
        counts = counter.count([text[s:e] for s, e, _ in batch])
        redo: list[tuple[int, int, int | None]] = []
        for (s, e, page), n in zip(batch, counts, strict=True):
            if n <= counter.max_length or e - s <= 1:
                result.append(ChunkSpan(0, s, e, page, text[s:e], n))
                continue
            tok = counter.spans([text[s:e]])[0] + s
            # cut in the middle token (or the middle character when it is a single over-long "token")
            mid = int(tok[len(tok) // 2, 0]) if len(tok) >= 2 else s + (e - s) // 2
            mid = mid if s < mid < e else s + (e - s) // 2
            for a, b in ((s, mid), (mid, e)):
                a, b = _strip(text, a, b)
                if b > a:
                    redo.append((a, b, page))
        pending = sorted(redo + pending)  # keep document order
    result.sort(key=lambda c: (c.start, c.end))
    return [ChunkSpan(i, c.start, c.end, c.page, c.text, c.token_count) for i, c in enumerate(result)]
