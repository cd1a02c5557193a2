"""Training-free changes to dense search, measured through the real index: do any of them close the gap?

Why this file exists: before spending CPU hours on training, three cheap explanations of a weak dense score
can be checked on the model as it ships, each through the dev-set index that `index.calibrate` and
`benchmarks/retrieval_modes.py --reuse-index` keep per model (a document ranks as its best passage):

- `instructions`: the query instruction. The default ("Given a question, retrieve passages that answer the
  question") never occurs in training (each weak source has its own; MedQuAD's is the medical one), so it
  may be the wrong key. Only the queries are embedded again, once per instruction.
- `center`: removing a common direction (the mean passage vector of a corpus) from every vector before the
  cosine, as post-processing against anisotropy and hubness; the mean of each set is tried on both sets, so
  what transfers can be told from what fits one corpus.
- `chunk`: smaller passages (the index cuts at 256 tokens; the model was trained at 64, its cool-downs at
  128): the set is ingested again into a separate index with `--chunk-tokens`, and all three modes are read.

    python benchmarks/dense_probes.py instructions --beir ../shared/data/eval/cranfield ../shared/data/eval/cisi
    python benchmarks/dense_probes.py center --beir ../shared/data/eval/cranfield ../shared/data/eval/cisi
    python benchmarks/dense_probes.py chunk --chunk-tokens 128 --beir ../shared/data/eval/cranfield

Prints nDCG@10 per set and variant (`--json` writes every metric); the first two reuse the kept index when
it exists and build it otherwise (minutes per set on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.retrieval_modes import documents_ranked  # noqa: E402
from encoder.instructions import DEFAULT_RETRIEVAL  # noqa: E402
from index.config import ChunkingConfig, IndexConfig  # noqa: E402
from index.rankings import dev_index_dir, ingested, write_corpus  # noqa: E402
from training.evaluate import BeirData, load_beir, retrieval_metrics  # noqa: E402

INSTRUCTIONS = {  # name -> instruction (None: the encoder's own default)
    "default": None,
    "none": "",
    "generic_query": "Given a query, retrieve relevant documents",
    "scientific": "Given a question about science or engineering, retrieve passages that answer the question",
    "section": "Given a section title from a scientific guide, retrieve the section text",
    "medical": "Given a medical question, retrieve passages that answer the question",
}


def probe_instructions(encoder: Any, sets: list[Path]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for beir_dir in sets:
        data = load_beir(beir_dir)
        with ingested(encoder, beir_dir, data, dev_index_dir(encoder.fingerprint, beir_dir)) as ix:
            for name, instruction in INSTRUCTIONS.items():
                out.setdefault(name, {})[beir_dir.name] = retrieval_metrics(
                    documents_ranked(ix, data, "dense", instruction), data.qrels)
    return out


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ndcg_of_vectors(data: BeirData, passages: np.ndarray, doc_of: np.ndarray, query_ids: list[str],
                     queries: np.ndarray) -> dict[str, float]:
    scores = queries @ passages.T
    ranked = {}
    for i, query_id in enumerate(query_ids):
        seen: list[str] = []
        for j in np.argsort(-scores[i])[:300]:
            if doc_of[j] not in seen:
                seen.append(doc_of[j])
            if len(seen) >= 100:
                break
        ranked[query_id] = seen
    return retrieval_metrics(ranked, data.qrels)


def probe_center(encoder: Any, sets: list[Path]) -> dict[str, dict[str, Any]]:
    loaded = {}
    for beir_dir in sets:
        data = load_beir(beir_dir)
        with ingested(encoder, beir_dir, data, dev_index_dir(encoder.fingerprint, beir_dir)) as ix:
            ids, vectors = ix.vectors.all_vectors()
            with ix.store.snapshot():
                chunks = ix.store.chunks_by_id(ids.tolist())
            doc_of = np.array([Path(chunks[int(c)][1].path).stem for c in ids])
        query_ids = list(data.queries)
        queries = encoder.encode_queries([data.queries[q] for q in query_ids], DEFAULT_RETRIEVAL)
        loaded[beir_dir.name] = (data, vectors.astype(np.float32), doc_of, query_ids, queries)
    out: dict[str, dict[str, Any]] = {}
    for name, (data, passages, doc_of, query_ids, queries) in loaded.items():
        out.setdefault("raw", {})[name] = _ndcg_of_vectors(data, passages, doc_of, query_ids, queries)
        for source in loaded:
            mean = loaded[source][1].mean(0)
            for amount in (0.5, 1.0):
                shifted = _normalised(passages - amount * mean)
                out.setdefault(f"center {amount} x mean of {source}", {})[name] = _ndcg_of_vectors(
                    data, shifted, doc_of, query_ids, _normalised(queries - amount * mean))
                out.setdefault(f"center {amount} x mean of {source}, passages only", {})[name] = _ndcg_of_vectors(
                    data, shifted, doc_of, query_ids, queries)
    return out


def probe_chunk(encoder: Any, sets: list[Path], chunk_tokens: int) -> dict[str, dict[str, Any]]:
    from index.facade import Index

    chunking = ChunkingConfig(chunk_tokens=chunk_tokens, overlap_tokens=chunk_tokens // 8)
    out: dict[str, dict[str, Any]] = {}
    for beir_dir in sets:
        data = load_beir(beir_dir)
        kept = dev_index_dir(encoder.fingerprint, beir_dir)
        folder = kept.with_name(f"{kept.name}-chunk{chunk_tokens}")
        write_corpus(data.corpus, folder / "docs")
        with Index.open(folder / "index", encoder, config=IndexConfig(chunking=chunking)) as ix:
            ix.ingest(folder / "docs")
            for mode in ("dense", "keyword", "hybrid"):
                out.setdefault(f"{mode}, chunks of {chunk_tokens}", {})[beir_dir.name] = retrieval_metrics(
                    documents_ranked(ix, data, mode), data.qrels)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=("instructions", "center", "chunk"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--beir", type=Path, nargs="+", required=True)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write every metric here")
    args = parser.parse_args(argv)
    from encoder import NVEmbedModel

    encoder = NVEmbedModel.from_pretrained(args.model)
    if args.probe == "instructions":
        table = probe_instructions(encoder, args.beir)
    elif args.probe == "center":
        table = probe_center(encoder, args.beir)
    else:
        table = probe_chunk(encoder, args.beir, args.chunk_tokens)
    names = [d.name for d in args.beir]
    print(f"model {encoder.name}, fingerprint {encoder.fingerprint}; dense nDCG@10 unless the row names a mode")
    print("| variant | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for variant, per_set in table.items():
        print(f"| {variant} | " + " | ".join(f"{per_set[n]['ndcg@10']:.4f}" for n in names) + " |")
    if args.json:
        args.json.write_text(json.dumps({"model": encoder.name, "fingerprint": encoder.fingerprint,
                                         "probe": args.probe, "results": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
