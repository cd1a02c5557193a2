"""Dense, keyword and hybrid search over an index, returning results ready to show or cite.

- `dense`: the query is embedded with an instruction (default: the encoder's retrieval instruction) and
  searched in FAISS; filters become an id selector inside the search.
- `keyword`: BM25 through SQLite FTS5 on the external-content table; each whitespace-separated query word
  becomes an FTS5 phrase (so `XJ-9000` matches that exact token sequence and FTS syntax in a query can never
  raise), alternatives joined with OR; filters are part of the same SQL query.
- `hybrid`: both candidate lists fused (`fusion.py`: weighted RRF, or min-max / z-score convex fusion),
  with the settings measured for the model (its `search` block, written by `python -m index.calibrate`),
  or equal-weight RRF for a model nobody calibrated; any field given in `SearchConfig` overrides them.

A reader whose vector file is older than the database (another process just committed) can meet ids whose
rows are gone; those are skipped and the search widened, so k results still come back when k exist.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .errors import InvalidInputError
from .filters import Filters
from .fusion import FusionConfig, Method, fuse, model_fusion
from .highlight import best_passage, mark, query_terms, term_spans
from .store import Store
from .vectors import VectorIndex

Mode = Literal["dense", "keyword", "hybrid"]
MODES = ("dense", "keyword", "hybrid")
#: The mode the CLI and the app use unless told otherwise: the best one for the shipped default model on
#: the development sets, measured with benchmarks/retrieval_modes.py (docs/model-card.md, Results).
DEFAULT_MODE: Mode = "hybrid"


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of one search call. Hybrid fields left at None come from the model's measured fusion
    settings (`fusion.model_fusion`)."""

    mode: Mode = DEFAULT_MODE
    rrf_k: int | None = None  # reciprocal rank fusion constant
    dense_weight: float | None = None  # hybrid: weight of the dense list
    keyword_weight: float | None = None  # hybrid: weight of the keyword list
    candidates: int | None = None  # hybrid: candidates taken from each list (at least k)
    fusion: Method | None = None  # hybrid: rrf, minmax or zscore

    def fusion_for(self, encoder: Any) -> FusionConfig:
        """The model's fusion settings with this config's explicit fields on top."""
        base = model_fusion(encoder)
        given = {"method": self.fusion, "dense_weight": self.dense_weight, "keyword_weight": self.keyword_weight,
                 "rrf_k": self.rrf_k, "candidates": self.candidates}
        return replace(base, **{k: v for k, v in given.items() if v is not None}).validate()


@dataclass
class SearchResult:
    """One passage found: where it is, what it says, why it matched."""

    rank: int
    score: float  # dense: cosine; keyword: BM25 (higher is better); hybrid: the fused score (see `fusion`)
    path: str
    page: int | None
    text: str
    title: str | None
    kind: str
    chunk_id: int
    document_id: int
    ordinal: int
    char_start: int  # offsets of `text` in the document's extracted text
    char_end: int
    highlights: list[tuple[int, int]] = field(default_factory=list)  # query words in `text` (chunk offsets)
    highlighted: str = ""  # `text` with **marked** query words
    passage: str = ""  # the sentence that matches best
    passage_start: int = 0  # its offsets in `text`
    passage_end: int = 0
    dense_score: float | None = None
    keyword_score: float | None = None
    mode: str = "dense"
    fusion: str | None = None  # hybrid: the fusion method that made `score` (rrf, minmax, zscore)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["highlights"] = [list(s) for s in self.highlights]
        return d


def fts_query(query: str) -> str | None:
    """An FTS5 MATCH expression: every query word as a quoted phrase, joined with OR (None when empty)."""
    phrases = []
    for word in query.split():
        if re.search(r"\w", word):
            phrases.append('"' + word.replace('"', '""') + '"')
    return " OR ".join(dict.fromkeys(phrases)) or None


def rrf(rankings: list[list[int]], weights: list[float], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: ids sorted by sum of weight / (k + rank), rank starting at 1."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _allowed(store: Store, filters: Filters | None) -> tuple[np.ndarray | None, str, dict[str, Any]]:
    if filters is None or filters.empty:
        return None, "", {}
    where, params = filters.to_sql()
    return store.filtered_chunk_ids(where, params), where, params


def dense_ids(store: Store, vectors: VectorIndex, query_vector: np.ndarray, k: int,
              allowed: np.ndarray | None) -> list[tuple[int, float]]:
    """Top-k (chunk id, cosine) whose rows exist, widening the search past ids a stale reader cannot see."""
    want = k
    while True:
        scores, ids = vectors.search(query_vector.reshape(1, -1), want, allowed)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        rows = store.chunks_by_id([i for i, _ in pairs])
        live = [(i, s) for i, s in pairs if i in rows]
        if len(live) >= k or len(pairs) < want or want >= vectors.ntotal:  # (ntotal is a round trip on Milvus)
            return live[:k]
        want = min(vectors.ntotal, want * 2)


def candidate_lists(store: Store, vectors: VectorIndex, encoder: Any, query: str, depth: int,
                    mode: Mode = "hybrid", filters: Filters | None = None,
                    instruction: str | None = None) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The (chunk id, score) lists fusion works on: dense (cosine) and keyword (BM25), best first, at most
    `depth` each; a list the mode does not use is empty. Used by `run_search` and the fusion calibration."""
    allowed, where, params = _allowed(store, filters)
    dense: list[tuple[int, float]] = []
    keyword: list[tuple[int, float]] = []
    if mode in ("dense", "hybrid"):
        if encoder is None:
            raise InvalidInputError("dense and hybrid search need the model: open the index with an encoder")
        kwargs = {} if instruction is None else {"instruction": instruction}
        qv = np.asarray(encoder.encode_queries([query], show_progress=False, **kwargs), dtype=np.float32)
        dense = dense_ids(store, vectors, qv[0], depth, allowed)
    if mode in ("keyword", "hybrid"):
        if getattr(vectors, "provides_keyword", False):  # Milvus: its own BM25 over the same passages
            keyword = vectors.keyword(query, depth, allowed) if query_terms(query) else []
        else:
            match = fts_query(query)
            if match is not None:
                keyword = store.keyword(match, depth, where, params)
    return dense, keyword


def run_search(store: Store, vectors: VectorIndex, encoder: Any, query: str, k: int = 10,
               config: SearchConfig | None = None, filters: Filters | None = None,
               instruction: str | None = None) -> list[SearchResult]:
    """Search and build `SearchResult`s (see the module docstring for the modes)."""
    config = config or SearchConfig()
    if config.mode not in MODES:
        raise InvalidInputError(f"search mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query is empty")
    k = int(k)
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    fusion = config.fusion_for(encoder) if config.mode == "hybrid" else None
    pool = k if fusion is None else max(k, fusion.candidates)
    dense, keyword = candidate_lists(store, vectors, encoder, query, pool, config.mode, filters, instruction)
    dense_score = dict(dense)
    keyword_score = dict(keyword)
    if config.mode == "dense":
        ranked = dense
    elif config.mode == "keyword":
        ranked = keyword
    else:
        ranked = fuse(dense, keyword, fusion)
    ranked = ranked[:k]
    rows = store.chunks_by_id([i for i, _ in ranked])
    terms = query_terms(query)
    results = []
    for chunk_id, score in ranked:
        if chunk_id not in rows:
            continue
        chunk, doc = rows[chunk_id]
        spans = term_spans(chunk.text, terms)
        ps, pe = best_passage(chunk.text, spans)
        results.append(SearchResult(
            rank=len(results) + 1, score=float(score), path=doc.path, page=chunk.page, text=chunk.text,
            title=doc.title, kind=doc.kind, chunk_id=chunk.id, document_id=doc.id, ordinal=chunk.ordinal,
            char_start=chunk.char_start, char_end=chunk.char_end, highlights=spans,
            highlighted=mark(chunk.text, spans), passage=chunk.text[ps:pe], passage_start=ps, passage_end=pe,
            dense_score=dense_score.get(chunk_id), keyword_score=keyword_score.get(chunk_id), mode=config.mode,
            fusion=fusion.method if fusion is not None else None,
        ))
    return results
