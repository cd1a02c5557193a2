"""The quality cost of int8 encoding on whole dev sets: float32 against int8, same model, same process.

Why this file exists: int8 is the CPU default only if it costs at most 0.01 nDCG@10 on the dev sets
(issue 13), and `python -m training.evaluate` cannot measure that: it loads models through training's
`load_base`, which always runs in float. This script loads the model once with `NVEmbedModel.from_pretrained`
(the path the app, the CLI and the API take), encodes every document and judged query of each BEIR-layout
set in float32 and then in int8, and prints nDCG@10, recall@100 and MRR@10 of both, their difference, and
how far the vectors and rankings agree (cosine of each passage's two vectors, overlap of each query's top 10).

    python benchmarks/int8_quality.py --beir ../shared/data/eval/cranfield ../shared/data/eval/cisi \
        [--max-queries N --max-docs N] [--outlier-ratio R] [--only int8] [--json out.json]

`--outlier-ratio` tries another threshold for the rows int8 computes in float (the model's own by default:
`encoder.model.INT8_MEASURED`, else `encoder.int8.OUTLIER_RATIO`); a new default's is chosen this way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder import NVEmbedModel  # noqa: E402
from encoder.instructions import DEFAULT_RETRIEVAL  # noqa: E402
from training.evaluate import BeirData, load_beir, retrieval_metrics, search  # noqa: E402

PRECISIONS = ("float32", "int8")
LIMIT = 0.01  # the largest nDCG@10 cost that lets int8 be the CPU default


def encode_set(model: NVEmbedModel, data: BeirData, batch_size: int) -> dict[str, np.ndarray | float]:
    started = time.process_time()
    docs = model.encode_passages(list(data.corpus.values()), batch_size=batch_size)
    queries = model.encode_queries(list(data.queries.values()), DEFAULT_RETRIEVAL, batch_size=batch_size)
    return {"docs": docs, "queries": queries, "cpu_s": time.process_time() - started}


def metrics(data: BeirData, vectors: dict) -> tuple[dict[str, float], np.ndarray]:
    doc_ids, query_ids = list(data.corpus), list(data.queries)
    top = search(vectors["queries"], vectors["docs"], 100)
    ranked = {q: [doc_ids[j] for j in top[i]] for i, q in enumerate(query_ids)}
    return retrieval_metrics(ranked, data.qrels), top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--beir", type=Path, nargs="+", required=True)
    parser.add_argument("--max-queries", type=int)
    parser.add_argument("--max-docs", type=int)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--outlier-ratio", type=float,
                        help="int8 computes rows over this many times the median row's peak in float "
                             "(default: the model's own ratio)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", choices=PRECISIONS,
                        help="measure one precision only (e.g. int8 again after a change to the int8 kernels; "
                             "float32 figures from an earlier run stay valid while the float path is unchanged)")
    args = parser.parse_args()

    model = NVEmbedModel.from_pretrained(args.model, device="cpu", int8=False)
    model.int8_outlier_ratio = args.outlier_ratio
    print(f"model {model.name} ({model.num_layers} layers, d={model.dimension}), fingerprint {model.fingerprint}, "
          f"int8 outlier ratio {model.int8_outlier_ratio:g}", file=sys.stderr, flush=True)
    table: dict[str, dict] = {}
    if args.only:
        for path in args.beir:
            data = load_beir(path, max_queries=args.max_queries, max_docs=args.max_docs)
            model.int8 = args.only == "int8"
            run = encode_set(model, data, args.batch_size)
            table[data.name] = {**metrics(data, run)[0], "cpu_s": run["cpu_s"], "docs": len(data.corpus),
                                "queries": len(data.queries), "outlier_ratio": model.int8_outlier_ratio}
            print(f"| {data.name} | {args.only} | nDCG@10 {table[data.name]['ndcg@10']:.4f} | R@100 "
                  f"{table[data.name]['recall@100']:.3f} | {run['cpu_s']:.0f} CPU s |", flush=True)
        if args.json:
            args.json.write_text(json.dumps({args.only: table, "outlier_ratio": model.int8_outlier_ratio}, indent=2))
        return
    for path in args.beir:
        data = load_beir(path, max_queries=args.max_queries, max_docs=args.max_docs)
        runs = {}
        for precision in PRECISIONS:
            model.int8 = precision == "int8"
            assert model.precision == precision, model.precision
            runs[precision] = encode_set(model, data, args.batch_size)
            print(f"[int8_quality] {data.name} {precision}: {len(data.corpus)} docs, {len(data.queries)} queries, "
                  f"{runs[precision]['cpu_s']:.0f} CPU s", file=sys.stderr, flush=True)
        scores, tops = {}, {}
        for precision in PRECISIONS:
            scores[precision], tops[precision] = metrics(data, runs[precision])
        cos_docs = (runs["float32"]["docs"] * runs["int8"]["docs"]).sum(axis=1)
        cos_queries = (runs["float32"]["queries"] * runs["int8"]["queries"]).sum(axis=1)
        overlap = [len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(tops["float32"], tops["int8"], strict=True)]
        same_first = float(np.mean(tops["float32"][:, 0] == tops["int8"][:, 0]))
        table[data.name] = {
            "docs": len(data.corpus), "queries": len(data.queries),
            **{p: {**scores[p], "cpu_s": runs[p]["cpu_s"]} for p in PRECISIONS},
            "ndcg@10_cost": scores["float32"]["ndcg@10"] - scores["int8"]["ndcg@10"],
            "cosine_docs": {"mean": float(cos_docs.mean()), "min": float(cos_docs.min())},
            "cosine_queries": {"mean": float(cos_queries.mean()), "min": float(cos_queries.min())},
            "top10_overlap": float(np.mean(overlap)), "same_top1": same_first,
            "outlier_ratio": model.int8_outlier_ratio,
        }
        print(f"[int8_quality] {data.name}: {json.dumps(table[data.name])}", file=sys.stderr, flush=True)

    print(f"model {model.name}, {model.num_layers} layers, one process, int8 outlier ratio "
          f"{model.int8_outlier_ratio:g}; cost = float32 - int8 (limit {LIMIT})")
    print("| set | docs | queries | float32 nDCG@10 | int8 nDCG@10 | cost | float32 R@100 | int8 R@100 | "
          "cosine mean / min | top-10 overlap | same top 1 | CPU s float32 / int8 |\n|" + "---|" * 12)
    for name, r in table.items():
        print(f"| {name} | {r['docs']} | {r['queries']} | {r['float32']['ndcg@10']:.4f} | {r['int8']['ndcg@10']:.4f} | "
              f"{r['ndcg@10_cost']:+.4f} | {r['float32']['recall@100']:.3f} | {r['int8']['recall@100']:.3f} | "
              f"{r['cosine_docs']['mean']:.4f} / {r['cosine_docs']['min']:.4f} | {r['top10_overlap']:.3f} | "
              f"{r['same_top1']:.3f} | {r['float32']['cpu_s']:.0f} / {r['int8']['cpu_s']:.0f} |")
    worst = max(r["ndcg@10_cost"] for r in table.values())
    print(f"largest cost {worst:+.4f}: int8 {'within' if worst <= LIMIT else 'OVER'} the {LIMIT} limit")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
