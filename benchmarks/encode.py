"""Encoding throughput and quality of the encoder's CPU configurations, measured side by side in one run.

Variants (all the same model and batch size):

- `naive`: a plain loop in input order, each batch padded to its longest text, float32, the latent layer's
  cross-attention computed as written (what a DataLoader loop gives);
- `float32`: `encode_passages` as it was before int8: length-sorted batches, float32, unfolded latents;
- `float32-folded`: the same with the latent cross-attention folded into two linear layers (exact);
- `int8`: folded latents and int8 linear layers (onnxruntime): the shipped CPU default.

The passages are split into `--rounds` slices and every slice is encoded by every variant in turn (the order
rotating), so a change of load on a shared machine hits all variants alike. Each time is reported as wall
clock and as this process's CPU time (what the variant costs, less the time other processes held the core).
Quality: nDCG@10 and recall@100 on a BEIR-layout dev subset (`--beir`), per numeric variant.

    python benchmarks/encode.py [--model default] [--n 512] [--batch-size 16] [--rounds 4] \
        [--beir ../shared/data/eval/cranfield --max-queries 50 --max-docs 300]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder import NVEmbedModel  # noqa: E402
from encoder.tokenization import collate, token_ids  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = {"cranfield": SHARED / "eval" / "cranfield" / "corpus.jsonl",
           "medquad": SHARED / "train" / "medquad" / "pairs.jsonl"}
VARIANTS = ("naive", "float32", "float32-folded", "int8")


def load_passages(n: int, seed: int = 0, corpus: str = "medquad") -> list[str]:
    """`n` real passages, shuffled with `seed`: Cranfield abstracts or MedQuAD answers."""
    rows = [json.loads(line) for line in CORPORA[corpus].open(encoding="utf-8") if line.strip()]
    texts = [r["positive"] for r in rows] if corpus == "medquad" else [
        r["text"] if r["text"].startswith(r.get("title") or "") else f"{r['title']} {r['text']}" for r in rows]
    random.Random(seed).shuffle(texts)
    return texts[:n]


@torch.inference_mode()
def naive_encode(model: NVEmbedModel, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    rows = token_ids(model.tokenizer, texts, "", max_length)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start : start + batch_size], model.tokenizer.pad_token_id, 0).to(model.device)
        out.append(model(batch.input_ids, batch.attention_mask, batch.pool_mask).float().cpu().numpy())
    return np.concatenate(out)


def configure(model: NVEmbedModel, variant: str) -> None:
    """Put the model in a variant's numeric configuration."""
    model.int8 = variant == "int8"
    model.latent_attention_model.fold_latents = variant in ("float32-folded", "int8")


def runner(model: NVEmbedModel, variant: str, batch_size: int, max_length: int) -> Callable[[list[str]], np.ndarray]:
    def run(texts: list[str]) -> np.ndarray:
        configure(model, variant)
        if variant == "naive":
            return naive_encode(model, texts, batch_size, max_length)
        return model.encode_passages(texts, batch_size=batch_size, max_length=max_length, show_progress=False)
    return run


def measure(model: NVEmbedModel, texts: list[str], variants: list[str], batch_size: int, max_length: int,
            rounds: int) -> dict[str, dict]:
    """Wall and CPU seconds of each variant over all texts, interleaved slice by slice; and the vectors."""
    runs = {v: runner(model, v, batch_size, max_length) for v in variants}
    for v in variants:  # warm-up: int8 kernels, the folded latents, allocator pools
        runs[v](texts[:4])
    results = {v: {"wall": 0.0, "cpu": 0.0, "vectors": []} for v in variants}
    slices = [texts[i::rounds] for i in range(rounds)]
    for number, part in enumerate(slices):
        order = variants[number % len(variants):] + variants[: number % len(variants)]
        for v in order:
            wall, cpu = time.perf_counter(), time.process_time()
            vectors = runs[v](part)
            results[v]["wall"] += time.perf_counter() - wall
            results[v]["cpu"] += time.process_time() - cpu
            results[v]["vectors"].append(vectors)
        print(f"[encode] slice {number + 1}/{rounds}: " + ", ".join(
            f"{v} {results[v]['wall']:.0f} s wall {results[v]['cpu']:.0f} s CPU" for v in variants), file=sys.stderr, flush=True)
    for v in variants:
        results[v]["vectors"] = np.concatenate(results[v]["vectors"])
    return results


def quality(model: NVEmbedModel, variants: list[str], beir: list[Path], max_queries: int | None,
            max_docs: int | None, batch_size: int) -> dict[str, dict[str, dict[str, float]]]:
    """nDCG@10 and recall@100 per numeric configuration (`naive` computes what `float32` does)."""
    from training.evaluate import evaluate_beir, load_beir

    sets = [load_beir(path, max_queries=max_queries, max_docs=max_docs) for path in beir]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for v in variants:
        if v == "naive":
            continue
        configure(model, v)
        table[v] = {}
        for path, data in zip(beir, sets, strict=True):
            metrics = evaluate_beir(model, data, batch_size=batch_size)
            table[v][path.name] = {"ndcg@10": metrics["ndcg@10"], "recall@100": metrics["recall@100"]}
        print(f"[encode] quality {v}: {json.dumps(table[v])}", file=sys.stderr, flush=True)
    if "naive" in variants and "float32" in table:
        table["naive"] = table["float32"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="cranfield")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4, help="slices, each encoded by every variant in turn")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--beir", type=Path, nargs="*", default=[], help="dev sets for the quality columns")
    parser.add_argument("--max-queries", type=int, default=50)
    parser.add_argument("--max-docs", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    model = NVEmbedModel.from_pretrained(args.model, device="cpu")
    texts = load_passages(args.n, corpus=args.corpus)
    lengths = [len(r) for r in token_ids(model.tokenizer, texts, "", args.max_length)]
    tokens = sum(lengths)
    results = measure(model, texts, list(args.variants), args.batch_size, args.max_length, args.rounds)
    scores = quality(model, list(args.variants), args.beir, args.max_queries, args.max_docs, args.batch_size)

    reference = results.get("float32", next(iter(results.values())))
    base = results.get("float32", next(iter(results.values())))
    print(f"model {model.name} ({model.num_layers} layers, d={model.dimension}), cpu, {torch.get_num_threads()} "
          f"torch threads; {args.n} {args.corpus} passages, {tokens} tokens (min {min(lengths)}, median "
          f"{int(np.median(lengths))}, max {max(lengths)}), batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.rounds} interleaved slices")
    subset = f" (subset: {args.max_queries} queries, {args.max_docs} docs)" if args.beir else ""
    names = [p.name for p in args.beir]
    print(f"quality on{subset}: {', '.join(names) or 'not measured'}; ratios against float32 (today's default)")
    head = "| variant | wall s | CPU s | passages/s (CPU) | tokens/s (CPU) | vs float32 (CPU) | vs float32 (wall) | " \
           "min cosine to float32 | " + " | ".join(f"{n} nDCG@10 | {n} R@100" for n in names)
    print(head + " |\n|" + "---|" * (8 + 2 * len(names)))
    table = {}
    for v, r in results.items():
        cos = float((r["vectors"] * reference["vectors"]).sum(axis=1).min())
        cells = [f"{scores[v][n]['ndcg@10']:.3f} | {scores[v][n]['recall@100']:.3f}" for n in names]
        print(f"| {v} | {r['wall']:.1f} | {r['cpu']:.1f} | {args.n / r['cpu']:.2f} | {tokens / r['cpu']:.0f} | "
              f"{base['cpu'] / r['cpu']:.2f}x | {base['wall'] / r['wall']:.2f}x | {cos:.4f} | " + " | ".join(cells) + " |")
        table[v] = {"wall_s": r["wall"], "cpu_s": r["cpu"], "min_cosine": cos, "quality": scores.get(v, {})}
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "tokens": tokens, "variants": table}, indent=2))


if __name__ == "__main__":
    main()
