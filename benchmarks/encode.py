"""Encoding throughput and quality of the encoder's CPU configurations, measured side by side in one run.

Variants (all the same model and batch size):

- `naive`: a plain loop in input order, each batch padded to its longest text, float32, the latent layer's
  cross-attention computed as written (what a DataLoader loop gives);
- `float32`: `encode_passages` as it was before int8: length-sorted batches, float32, unfolded latents;
- `float32-folded`: the same with the latent cross-attention folded into two linear layers (exact);
- `int8`: folded latents and int8 linear layers (onnxruntime) that skip padding rows: the shipped CPU default
  (q/k/v and gate/up fused into one product each, MLPs on the real rows only: encoder/int8.py);
- `unfused-int8`: the same without the fused products and packed MLPs (every linear layer its own product,
  padding skipped layer by layer), on a copy of the model: what the fusion buys, in the same run;
- `ingest-float32` and `ingest-int8`: what an ingest does with each configuration: the passages in input
  order, handed to `encode_passages` in the ingest's slices (2 x `IngestConfig.batch_size` passages, each
  sorted by length within, batches of `IngestConfig.batch_size`), so padding is what an ingest really pays.

`--outlier-ratios R ...` adds `int8@R` (and `ingest-int8@R` when `ingest-int8` runs): the int8 variants at
another outlier ratio (encoder/int8.py) in the same rotation; plain `int8` runs at the model's own ratio.

`--allocators glibc jemalloc` runs the variants in one child process per allocator (the jemalloc one started
through scripts/with-jemalloc.sh), all at the same time on the same cores, so both see the same load; ratios
are against glibc's float32. The allocator is a property of the process, hence the children. The first
child also measures quality (the allocator does not change a single bit of the vectors) and alone runs the
float32 baselines; the other children run the int8 variants only.

The passages are split into `--rounds` slices and every slice is encoded by every variant in turn (the order
rotating), so a change of load on a shared machine hits all variants alike. Each time is reported as wall
clock and as this process's CPU time (what the variant costs, less the time other processes held the core).
Quality: nDCG@10 and recall@100 on a BEIR-layout dev subset (`--beir`), per numeric variant.

    python benchmarks/encode.py [--model default] [--n 512] [--batch-size 16] [--rounds 4] \
        [--beir ../shared/data/eval/cranfield --max-queries 50 --max-docs 300] [--allocators glibc jemalloc]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder import NVEmbedModel  # noqa: E402
from encoder import int8 as int8_kernels  # noqa: E402
from encoder.tokenization import collate, token_ids  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = {"cranfield": SHARED / "eval" / "cranfield" / "corpus.jsonl",
           "medquad": SHARED / "train" / "medquad" / "pairs.jsonl"}
VARIANTS = ("naive", "float32", "float32-folded", "int8", "unfused-int8", "ingest-float32", "ingest-int8")
BASELINE = "baseline-float32"  # --baseline-model's float32, beside this model's variants
ROOT = Path(__file__).resolve().parents[1]


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


def kind(variant: str) -> str:
    """A variant's name without its outlier ratio: `int8@3` -> `int8`."""
    return variant.partition("@")[0]


def computed_as(variant: str) -> str:
    """The variant whose vectors this one's are: the same numbers in another order, up to rounding."""
    if variant.startswith("ingest-"):
        return variant.removeprefix("ingest-")
    return {"naive": "float32", "unfused-int8": "int8"}.get(variant, variant)


def with_ratios(variants: list[str], ratios: list[float]) -> list[str]:
    """The variants, then `int8@R` / `ingest-int8@R` for every ratio whose plain int8 variant is among them."""
    extra = [f"{v}@{r:g}" for r in ratios for v in ("int8", "ingest-int8") if v in variants]
    return list(variants) + extra


def configure(model: NVEmbedModel, variant: str) -> None:
    """Put the model in a variant's numeric configuration (`@R`: int8 at outlier ratio R)."""
    name, ratio = kind(variant), variant.partition("@")[2]
    model.int8 = name.endswith("int8")
    model.int8_outlier_ratio = float(ratio) if ratio else None  # None: the model's own ratio
    model.latent_attention_model.fold_latents = name in ("float32-folded", "int8", "unfused-int8", "ingest-int8")
    if variant == "unfused-int8":
        int8_kernels.unfuse(model)  # the int8 setter groups the layers again; ungrouping is cheap (kernels kept)


def ingest_encode(model: NVEmbedModel, texts: list[str], max_length: int) -> np.ndarray:
    """The encoder calls of an ingest (index/pipeline.py `embed`): input order, slices of 2 x batch_size."""
    from index.config import IngestConfig

    batch = IngestConfig().batch_size
    step = 2 * batch
    return np.concatenate([model.encode_passages(texts[lo : lo + step], batch_size=batch, max_length=max_length,
                                                 show_progress=False) for lo in range(0, len(texts), step)])


def runner(model: NVEmbedModel, variant: str, batch_size: int, max_length: int) -> Callable[[list[str]], np.ndarray]:
    if variant == "unfused-int8":
        model = copy.deepcopy(model)  # its own ungrouped kernels, so neither variant rebuilds any per slice

    def run(texts: list[str]) -> np.ndarray:
        configure(model, variant)
        if variant == "naive":
            return naive_encode(model, texts, batch_size, max_length)
        if variant.startswith("ingest-"):
            return ingest_encode(model, texts, max_length)
        return model.encode_passages(texts, batch_size=batch_size, max_length=max_length, show_progress=False)
    return run


def measure(model: NVEmbedModel, texts: list[str], variants: list[str], batch_size: int, max_length: int,
            rounds: int, baseline: NVEmbedModel | None = None) -> dict[str, dict]:
    """Wall and CPU seconds of each variant over all texts, interleaved slice by slice; and the vectors.

    With `baseline` (another model), `baseline-float32` (and `baseline-ingest-float32` when `ingest-float32`
    is measured) join the rotation: that model as it ran before int8, timed slice by slice beside the others.
    """
    runs = {v: runner(model, v, batch_size, max_length) for v in variants}
    if baseline is not None:
        extra = [v for v in ("float32", "ingest-float32") if v in variants] or ["float32"]
        for v in extra:
            runs[f"baseline-{v}"] = runner(baseline, v, batch_size, max_length)
        variants = [f"baseline-{v}" for v in extra] + variants
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
        if computed_as(v) != v:
            continue
        configure(model, v)
        table[v] = {}
        for path, data in zip(beir, sets, strict=True):
            metrics = evaluate_beir(model, data, batch_size=batch_size)
            table[v][path.name] = {"ndcg@10": metrics["ndcg@10"], "recall@100": metrics["recall@100"]}
        print(f"[encode] quality {v}: {json.dumps(table[v])}", file=sys.stderr, flush=True)
    for v in variants:
        if computed_as(v) != v and computed_as(v) in table:
            table[v] = table[computed_as(v)]
    return table


def run(args: argparse.Namespace) -> dict:
    """Every variant's times, vectors' agreement and quality in this process."""
    model = NVEmbedModel.from_pretrained(args.model, device="cpu")
    baseline = NVEmbedModel.from_pretrained(args.baseline_model, device="cpu") if args.baseline_model else None
    texts = load_passages(args.n, corpus=args.corpus)
    lengths = [len(r) for r in token_ids(model.tokenizer, texts, "", args.max_length)]
    variants = with_ratios(list(args.variants), args.outlier_ratios)
    results = measure(model, texts, variants, args.batch_size, args.max_length, args.rounds, baseline)
    scores = quality(model, variants, args.beir, args.max_queries, args.max_docs, args.batch_size)
    if baseline is not None:
        scores[BASELINE] = quality(baseline, ["float32"], args.beir, args.max_queries, args.max_docs,
                                   args.batch_size).get("float32", {})
    reference = results.get("float32", next(iter(results.values())))
    variants = {v: {"wall_s": r["wall"], "cpu_s": r["cpu"], "quality": scores.get(v, {}),
                    "min_cosine": None if v.startswith("baseline-") else  # another model: another vector space
                    float((r["vectors"] * reference["vectors"]).sum(axis=1).min())}
                for v, r in results.items()}
    return {"model": f"{model.name} ({model.num_layers} layers, d={model.dimension})", "n": args.n,
            "baseline_model": f"{baseline.name} ({baseline.num_layers} layers)" if baseline is not None else None,
            "tokens": sum(lengths), "lengths": [min(lengths), int(np.median(lengths)), max(lengths)],
            "threads": torch.get_num_threads(), "allocator": allocator(), "variants": variants}


def allocator() -> str:
    return "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc"


def run_children(args: argparse.Namespace, argv: list[str]) -> dict:
    """One child per allocator, all started at once; the first also measures quality."""
    children, outputs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number, name in enumerate(args.allocators):
            out = Path(tmp) / f"{name}.json"
            child = [a for a in argv if a != "--allocators" and a not in args.allocators]
            if number:  # the baseline runs once, in the first (glibc) child (the last --baseline-model wins)
                child += ["--baseline-model", ""]
            # The float32 baselines once is enough (glibc's are the reference); other allocators run int8 only.
            variants = [v for v in args.variants if number == 0 or v.endswith("int8")]
            command = [sys.executable, str(Path(__file__).resolve()), *child, "--child-json", str(out),
                       "--variants", *variants] + ([] if number == 0 else ["--beir"])
            prefix = [str(ROOT / "scripts" / "with-jemalloc.sh")] if name == "jemalloc" else []
            env = {**os.environ, "REQUIRE_JEMALLOC": "1"} if name == "jemalloc" else dict(os.environ)
            children.append(subprocess.Popen(prefix + command, env=env))
            outputs.append((name, out))
        for child in children:
            if child.wait() != 0:
                raise SystemExit(f"a benchmark child failed (exit {child.returncode})")
        runs = {name: json.loads(out.read_text()) for name, out in outputs}
    first = runs[args.allocators[0]]
    merged = {**first, "variants": {}}
    for name, result in runs.items():
        if result["allocator"] != name:
            raise SystemExit(f"the {name} child ran with {result['allocator']}")
        for v, row in result["variants"].items():
            same = first["variants"].get(v, row)  # the same numbers: quality and agreement are the first child's
            merged["variants"][f"{v} ({name})"] = {**row, "quality": same.get("quality", {}),
                                                   "min_cosine": same["min_cosine"]}
    return merged


def print_table(result: dict, args: argparse.Namespace) -> None:
    rows = result["variants"]
    base_key = next((k for k in rows if k.split(" ")[0] == "float32"), next(iter(rows)))
    base = rows[base_key]
    baselines = {k.split(" ")[0]: r for k, r in rows.items() if k.startswith("baseline-")}
    other = baselines.get(BASELINE)

    def baseline_of(variant: str) -> dict:  # an ingest row against the baseline's ingest, others its float32
        kind = variant.split(" ")[0].removeprefix("baseline-")
        return baselines.get("baseline-ingest-float32", other) if kind.startswith("ingest-") else other
    low, median, high = result["lengths"]
    print(f"model {result['model']}, cpu, {result['threads']} torch threads; {result['n']} {args.corpus} passages, "
          f"{result['tokens']} tokens (min {low}, median {median}, max {high}), batch {args.batch_size}, "
          f"max_length {args.max_length}, {args.rounds} interleaved slices")
    subset = f" (subset: {args.max_queries} queries, {args.max_docs} docs)" if args.beir else ""
    names = [p.name for p in args.beir]
    print(f"quality on{subset}: {', '.join(names) or 'not measured'}; ratios against {base_key}")
    if other is not None:
        print(f"baseline-*: {result['baseline_model']} in float32, timed in the same rotation; 'vs baseline' is "
              "against baseline-ingest-float32 for ingest rows, baseline-float32 for the others")
    extra = " vs baseline (CPU) |" if other is not None else ""
    head = "| variant | wall s | CPU s | passages/s (CPU) | tokens/s (CPU) | vs float32 (CPU) | vs float32 (wall) |" \
           f"{extra} min cosine to float32 |" + "".join(f" {n} nDCG@10 | {n} R@100 |" for n in names)
    print(head + "\n|" + "---|" * (8 + (other is not None) + 2 * len(names)))
    for v, r in rows.items():
        cells = [f"{r['quality'][n]['ndcg@10']:.3f} | {r['quality'][n]['recall@100']:.3f}" if n in r["quality"]
                 else "– | –" for n in names]
        versus = f" {baseline_of(v)['cpu_s'] / r['cpu_s']:.2f}x |" if other is not None else ""
        cosine = "–" if r["min_cosine"] is None else f"{r['min_cosine']:.4f}"
        print(f"| {v} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {result['n'] / r['cpu_s']:.2f} | "
              f"{result['tokens'] / r['cpu_s']:.0f} | {base['cpu_s'] / r['cpu_s']:.2f}x | "
              f"{base['wall_s'] / r['wall_s']:.2f}x |{versus} {cosine} |" + "".join(f" {c} |" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--baseline-model", help="another model (e.g. an earlier default) timed in float32 in the "
                                                 "same rotation, as `baseline-float32`")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="cranfield")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4, help="slices, each encoded by every variant in turn")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--outlier-ratios", nargs="+", type=float, default=[], metavar="R",
                        help="also time int8 (and ingest-int8) at these outlier ratios: variants int8@R")
    parser.add_argument("--beir", type=Path, nargs="*", default=[], help="dev sets for the quality columns")
    parser.add_argument("--max-queries", type=int, default=50)
    parser.add_argument("--max-docs", type=int, default=300)
    parser.add_argument("--allocators", nargs="+", choices=("glibc", "jemalloc"),
                        help="one child process per allocator, run side by side (see above)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if args.child_json:
        args.child_json.write_text(json.dumps(run(args)))
        return
    result = run_children(args, argv) if args.allocators else run(args)
    print_table(result, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
