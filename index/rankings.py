"""The dense and keyword candidate lists of a judged dev set, built once through the real index and cached.

Choosing fusion settings means scoring many settings on the same queries. Only the two candidate lists
depend on the model (embedding a 1,400-document corpus takes minutes on a CPU); fusing them takes
microseconds. So the corpus is ingested once with the index's own chunking, FAISS and FTS5, every judged
query's lists (chunk id, score; `DEPTH` deep) are read through `retrieval.candidate_lists` (what
`run_search` fuses) and kept in a file under `~/.cache/nvembed-search/fusion/`, named by the model's
fingerprint, the data's hash and the settings that shape the lists. Any later sweep reads that file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 1
DEPTH = 300  # list depth kept per query: more than any candidate depth a sweep tries


@dataclass
class DevRankings:
    """One dev set's candidate lists: what fusion needs, nothing model-specific beyond them."""

    name: str
    qrels: dict[str, dict[str, int]]
    doc_of: dict[int, str]  # chunk id -> document id of the set
    dense: dict[str, list[tuple[int, float]]]  # query id -> (chunk id, cosine), best first
    keyword: dict[str, list[tuple[int, float]]]  # query id -> (chunk id, BM25), best first
    fingerprint: str
    seconds: float  # what building them took (ingest + searches)

    def to_json(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "name": self.name, "qrels": self.qrels, "fingerprint": self.fingerprint,
                "seconds": self.seconds, "doc_of": {str(k): v for k, v in self.doc_of.items()},
                "dense": {q: [[i, s] for i, s in v] for q, v in self.dense.items()},
                "keyword": {q: [[i, s] for i, s in v] for q, v in self.keyword.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DevRankings:
        lists = {m: {q: [(int(i), float(s)) for i, s in v] for q, v in d[m].items()} for m in ("dense", "keyword")}
        return cls(d["name"], d["qrels"], {int(k): v for k, v in d["doc_of"].items()}, lists["dense"],
                   lists["keyword"], d["fingerprint"], float(d["seconds"]))


def cache_root() -> Path:
    from encoder.default import cache_dir

    return cache_dir() / "fusion"


def data_hash(beir_dir: Path, split: str = "test") -> str:
    digest = hashlib.sha256()
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        digest.update(name.encode())
        digest.update((beir_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_path(fingerprint: str, beir_dir: Path, instruction: str | None, max_length: int = 512) -> Path:
    from .config import ChunkingConfig

    key = json.dumps({"v": CACHE_VERSION, "depth": DEPTH, "instruction": instruction,
                      "chunking": repr(ChunkingConfig.default_for(int(max_length)))}, sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:8]
    return cache_root() / f"{beir_dir.name}-{data_hash(beir_dir)}-{fingerprint}-{tag}.json.gz"


def dev_index_dir(fingerprint: str, beir_dir: Path) -> Path:
    """Where a dev set is kept ingested for one model: `docs/` (one file per document) and `index/`.

    Kept so that a later calibration or `benchmarks/retrieval_modes.py --reuse-index` searches the same
    real index without embedding the corpus again (ingest is incremental: unchanged files are skipped)."""
    return cache_root() / "indexes" / f"{beir_dir.name}-{data_hash(beir_dir)}-{fingerprint}"


def ingested(encoder: Any, beir_dir: Path, data: Any, folder: Path) -> Any:
    """The dev set's corpus written under `folder/docs` and ingested into `folder/index`: an open `Index`."""
    from .facade import Index

    write_corpus(data.corpus, folder / "docs")
    ix = Index.open(folder / "index", encoder)
    try:
        ix.ingest(folder / "docs")
    except BaseException:
        ix.close()
        raise
    return ix


def write_corpus(corpus: dict[str, str], folder: Path) -> None:
    """Each document of a BEIR corpus as `<id>.txt` (how the benchmarks ingest a dev set)."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, text in corpus.items():
        path, body = folder / f"{doc_id}.txt", text + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != body:  # unchanged files keep their mtime
            path.write_text(body, encoding="utf-8")


def build(encoder: Any, beir_dir: Path, instruction: str | None = None, depth: int = DEPTH,
          keep_index: bool = True) -> DevRankings:
    """Ingest the set (into `dev_index_dir`, or a temporary index) and read every judged query's two lists."""
    from training.evaluate import load_beir

    from .retrieval import candidate_lists

    data = load_beir(beir_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nvembed-fusion-") as tmp:
        folder = dev_index_dir(str(encoder.fingerprint), beir_dir) if keep_index else Path(tmp)
        with ingested(encoder, beir_dir, data, folder) as ix:
            with ix.store.snapshot():
                chunks = ix.store.chunks_by_id(ix.vectors.ids().tolist())
                doc_of = {cid: Path(doc.path).stem for cid, (_, doc) in chunks.items()}
                dense, keyword = {}, {}
                for qid, query in data.queries.items():
                    dense[qid], keyword[qid] = candidate_lists(ix.store, ix.vectors, encoder, query, depth,
                                                               "hybrid", None, instruction)
    return DevRankings(data.name, data.qrels, doc_of, dense, keyword, str(encoder.fingerprint),
                       time.perf_counter() - started)


def load_or_build(encoder: Any, beir_dir: Path, instruction: str | None = None, refresh: bool = False) -> DevRankings:
    """The cached lists of `beir_dir` for `encoder` (built and cached on first use)."""
    beir_dir = Path(beir_dir)
    path = cache_path(str(encoder.fingerprint), beir_dir, instruction, int(encoder.max_length))
    if path.is_file() and not refresh:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return DevRankings.from_json(json.load(handle))
    print(f"[calibrate] embedding {beir_dir.name} once through the index (cached in {path})", file=sys.stderr,
          flush=True)
    rankings = build(encoder, beir_dir, instruction)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as handle:
        json.dump(rankings.to_json(), handle)
    tmp.replace(path)
    return rankings
