"""Depth and speed of the embedded default: quality and passages/s side by side, to choose with numbers.

Each variant is loaded in turn and measured in the same process on the same inputs: encoding throughput on
real MedQuAD passages (length-sorted `encode_passages`), and nDCG@10 / recall@100 on BEIR-layout sets
(a subset with --max-queries/--max-docs: every judged document of the kept queries stays in).

Variants: `untrained@N` (SmolLM2-135M-Instruct's first N layers + a fresh latent layer, the recipe's
starting point), `trained` (the shipped default), `trained-int8` (the same with dynamic int8 quantisation
of every linear layer, torch.ao's `quantize_dynamic`), or any checkpoint directory.

    python benchmarks/depth.py --beir ../shared/data/eval/cranfield ../shared/data/eval/cisi \
        --variants untrained@8 untrained@16 trained trained-int8 [--max-queries 100 --max-docs 800]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.encode import load_passages  # noqa: E402
from encoder import NVEmbedModel  # noqa: E402
from training.evaluate import evaluate_beir, load_beir  # noqa: E402


def load_variant(name: str) -> NVEmbedModel:
    if name.startswith("untrained@"):
        model = NVEmbedModel.from_pretrained("default-untrained", device="cpu")
        model.truncate_layers(int(name.split("@", 1)[1]))
        return model
    if name in ("trained", "trained-int8"):
        model = NVEmbedModel.from_pretrained("default", device="cpu")
        if name == "trained-int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
                torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        return model
    return NVEmbedModel.from_pretrained(name, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["untrained@8", "untrained@16", "trained", "trained-int8"])
    parser.add_argument("--beir", type=Path, nargs="*", default=[])
    parser.add_argument("--max-queries", type=int)
    parser.add_argument("--max-docs", type=int)
    parser.add_argument("--n", type=int, default=256, help="MedQuAD passages for the throughput measurement")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    texts = load_passages(args.n)
    sets = [load_beir(path, max_queries=args.max_queries, max_docs=args.max_docs) for path in args.beir]
    rows = {}
    for name in args.variants:
        model = load_variant(name)
        model.encode_passages(texts[:4], batch_size=4)  # warm-up
        start = time.perf_counter()
        model.encode_passages(texts, batch_size=args.batch_size, max_length=args.max_length, show_progress=False)
        row = {"layers": model.num_layers, "passages_per_s": args.n / (time.perf_counter() - start)}
        for path, data in zip(args.beir, sets, strict=True):
            metrics = evaluate_beir(model, data, batch_size=args.batch_size, max_length=args.max_length)
            row[path.name] = {"ndcg@10": metrics["ndcg@10"], "recall@100": metrics["recall@100"]}
        rows[name] = row
        print(f"[depth] {name}: {json.dumps(row)}", file=sys.stderr, flush=True)
        del model

    baseline = rows.get("trained", next(iter(rows.values())))["passages_per_s"]
    names = [p.name for p in args.beir]
    subset = f" (subset: {args.max_queries} queries, {args.max_docs} docs)" if args.max_queries or args.max_docs else ""
    print(f"{args.n} MedQuAD passages, batch {args.batch_size}, max_length {args.max_length}, "
          f"{torch.get_num_threads()} threads; BEIR sets{subset}: {', '.join(names) or 'none'}")
    header = "| variant | layers | passages/s | speed vs trained | " + " | ".join(f"{n} nDCG@10 | {n} R@100" for n in names)
    print(header + " |\n|" + "---|" * (4 + 2 * len(names)))
    for name, row in rows.items():
        cells = [f"{row[n]['ndcg@10']:.3f} | {row[n]['recall@100']:.3f}" for n in names]
        print(f"| {name} | {row['layers']} | {row['passages_per_s']:.1f} | {row['passages_per_s'] / baseline:.2f}x | "
              + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
