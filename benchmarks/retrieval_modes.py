"""Dense, keyword (BM25) and hybrid search, measured through the real index on BEIR-layout dev sets.

Each document of the corpus is written as a text file and ingested with `index` (the app's and CLI's own
chunking, FAISS and FTS5), then every judged query is searched in each mode; a document's rank is that
of its best passage. This is what a user of the app gets, so it decides the default search mode.

    python benchmarks/retrieval_modes.py --model default --beir ../shared/data/eval/cranfield ../shared/data/eval/cisi
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import index  # noqa: E402
from training.evaluate import load_beir, retrieval_metrics  # noqa: E402

MODES = ("dense", "keyword", "hybrid")


def evaluate_modes(encoder, beir_dir: Path, workdir: Path, k: int = 100) -> dict[str, dict[str, float]]:
    data = load_beir(beir_dir)
    docs = workdir / "docs"
    docs.mkdir(parents=True)
    for doc_id, text in data.corpus.items():
        (docs / f"{doc_id}.txt").write_text(text + "\n", encoding="utf-8")
    results: dict[str, dict[str, float]] = {}
    with index.open(workdir / "index", encoder) as ix:
        started = time.perf_counter()
        ix.ingest(docs)
        ingest_s = time.perf_counter() - started
        for mode in MODES:
            ranked: dict[str, list[str]] = {}
            started = time.perf_counter()
            for query_id, query in data.queries.items():
                seen: list[str] = []
                for hit in ix.search(query, k=k, mode=mode):
                    doc_id = Path(hit.path).stem
                    if doc_id not in seen:
                        seen.append(doc_id)
                ranked[query_id] = seen
            per_query_ms = 1000 * (time.perf_counter() - started) / len(data.queries)
            results[mode] = {**retrieval_metrics(ranked, data.qrels), "ms_per_query": per_query_ms}
    results["_ingest"] = {"seconds": ingest_s, "docs": len(data.corpus), "queries": len(data.queries)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--beir", type=Path, nargs="+", required=True)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from encoder import NVEmbedModel

    encoder = NVEmbedModel.from_pretrained(args.model)
    print(f"model {encoder.name} ({encoder.num_layers} layers), fingerprint {encoder.fingerprint}")
    table = {}
    for beir_dir in args.beir:
        with tempfile.TemporaryDirectory() as tmp:
            table[beir_dir.name] = evaluate_modes(encoder, beir_dir, Path(tmp))
    print("| set | mode | nDCG@10 | R@10 | R@100 | MRR@10 | ms/query |\n|---|---|---:|---:|---:|---:|---:|")
    for name, rows in table.items():
        for mode in MODES:
            r = rows[mode]
            print(f"| {name} | {mode} | {r['ndcg@10']:.3f} | {r['recall@10']:.3f} | {r['recall@100']:.3f} | "
                  f"{r['mrr@10']:.3f} | {r['ms_per_query']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
