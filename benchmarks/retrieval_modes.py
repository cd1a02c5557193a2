"""Dense, keyword (BM25) and hybrid search, measured through the real index on BEIR-layout dev sets.

Each document of the corpus is written as a text file and ingested with `index` (the app's and CLI's own
chunking, FAISS and FTS5), then every judged query is searched in each mode; a document's rank is that
of its best passage. This is what a user of the app gets, so it decides the default search mode. Hybrid
uses the fusion settings stored with the model (`python -m index.calibrate`, see index/fusion.py); the
JSON records which.

    python benchmarks/retrieval_modes.py --model default --beir ../shared/data/eval/cranfield ../shared/data/eval/cisi

`--reuse-index` ingests into the dev-set index kept per model under ~/.cache/nvembed-search/fusion/indexes/
(the one `index.calibrate` built) instead of a fresh temporary one: the ingest is the same incremental
ingest (a no-op when the corpus is already in), the searches are the same, only the embedding is not repeated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.fusion import search_block  # noqa: E402
from index.rankings import dev_index_dir, ingested  # noqa: E402
from index.retrieval import SearchConfig  # noqa: E402
from training.evaluate import BeirData, load_beir, retrieval_metrics  # noqa: E402

MODES = ("dense", "keyword", "hybrid")


def documents_ranked(ix: Any, data: BeirData, mode: str, instruction: str | None = None,
                     k: int = 100) -> dict[str, list[str]]:
    """Each judged query's documents, best first, each at the rank of its best passage (`k` passages deep)."""
    ranked = {}
    for query_id, query in data.queries.items():
        seen: list[str] = []
        for hit in ix.search(query, k=k, mode=mode, instruction=instruction):
            doc_id = Path(hit.path).stem
            if doc_id not in seen:
                seen.append(doc_id)
        ranked[query_id] = seen
    return ranked


def evaluate_modes(encoder, beir_dir: Path, workdir: Path, k: int = 100) -> dict[str, dict[str, float]]:
    data = load_beir(beir_dir)
    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    with ingested(encoder, beir_dir, data, workdir) as ix:
        ingest_s = time.perf_counter() - started
        for mode in MODES:
            started = time.perf_counter()
            ranked = documents_ranked(ix, data, mode, k=k)
            per_query_ms = 1000 * (time.perf_counter() - started) / len(data.queries)
            results[mode] = {**retrieval_metrics(ranked, data.qrels), "ms_per_query": per_query_ms}
    results["_ingest"] = {"seconds": ingest_s, "docs": len(data.corpus), "queries": len(data.queries),
                          "index": str(workdir)}
    results["_fusion"] = {**SearchConfig().fusion_for(encoder).to_dict(),
                          "stored_with_model": search_block(encoder) is not None}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--beir", type=Path, nargs="+", required=True)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--reuse-index", action="store_true",
                        help="ingest into the dev-set index kept for this model (see above) instead of a fresh one")
    args = parser.parse_args()
    from encoder import NVEmbedModel

    encoder = NVEmbedModel.from_pretrained(args.model)
    print(f"model {encoder.name} ({encoder.num_layers} layers), fingerprint {encoder.fingerprint}")
    print(f"hybrid: {SearchConfig().fusion_for(encoder).describe()}"
          f" ({'stored with the model' if search_block(encoder) else 'no search block: the safe default'})")
    table = {}
    for beir_dir in args.beir:
        if args.reuse_index:
            table[beir_dir.name] = evaluate_modes(encoder, beir_dir, dev_index_dir(encoder.fingerprint, beir_dir))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            table[beir_dir.name] = evaluate_modes(encoder, beir_dir, Path(tmp))
    print("| set | mode | nDCG@10 | x keyword | R@10 | R@100 | MRR@10 | ms/query |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for name, rows in table.items():
        for mode in MODES:
            r = rows[mode]
            ratio = r["ndcg@10"] / rows["keyword"]["ndcg@10"] if rows["keyword"]["ndcg@10"] else float("nan")
            print(f"| {name} | {mode} | {r['ndcg@10']:.3f} | {ratio:.3f} | {r['recall@10']:.3f} | "
                  f"{r['recall@100']:.3f} | {r['mrr@10']:.3f} | {r['ms_per_query']:.0f} |")
        better = max(rows["dense"]["ndcg@10"], rows["keyword"]["ndcg@10"])
        print(f"| {name} | hybrid - better single | {rows['hybrid']['ndcg@10'] - better:+.3f} | | | | | |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
