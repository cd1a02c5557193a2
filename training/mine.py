"""Positive-aware hard-negative mining (NV-Retriever's TopK-PercPos, used by NV-Embed-v2).

    python -m training.mine --model M --input train.jsonl --output mined.jsonl [--pool corpus.jsonl ...]
        [--num-negatives 7] [--range-min 0] [--range-max 30] [--margin 0.05]
        [--margin-type relative|absolute|none] [--sampling random|top] [--seed 0]

A teacher model embeds the queries (with their instruction) and a candidate pool (every positive and
existing negative of the file, plus `--pool` files of `{"text": ...}` lines), exact inner-product search
(FAISS, on the GPU when a GPU FAISS build is present; else a torch matrix product on CUDA; else FAISS on
the CPU; else numpy) returns the top candidates, and for each query:

1. the positive and every pool text identical to it are removed (never returned as a negative), as are
   repeated texts;
2. candidates keep their rank in what remains; only ranks in [range_min, range_max) are considered;
3. the margin filter drops false-negative suspects: `relative` keeps a candidate only if its score is
   below (1 - margin) x the positive's score (margin 0.05: below 95 %, the paper's rule), `absolute` only
   if below the positive's score minus margin, `none` keeps all (plain top-k, for comparison);
4. `num_negatives` are taken: the best ones (`top`) or a seeded random sample (`random`, the paper's
   "sample from the top"), listed in rank order.

Same inputs and seed give the same output.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from encoder.registry import NAMES_HELP

from .batching import text_key
from .data import DataError, Example, json_lines, read_jsonl, write_jsonl

MARGIN_TYPES = ("relative", "absolute", "none")


@dataclass
class MiningConfig:
    num_negatives: int = 7
    range_min: int = 0
    range_max: int = 30
    margin: float = 0.05
    margin_type: str = "relative"
    sampling: str = "random"  # random (seeded sample of the kept candidates) or top
    seed: int = 0

    def validate(self) -> None:
        if self.margin_type not in MARGIN_TYPES:
            raise ValueError(f"margin_type must be one of {', '.join(MARGIN_TYPES)}, got {self.margin_type!r}")
        if self.sampling not in ("random", "top"):
            raise ValueError(f"sampling must be random or top, got {self.sampling!r}")
        if not 0 <= self.range_min < self.range_max:
            raise ValueError(f"need 0 <= range_min < range_max, got {self.range_min}, {self.range_max}")
        if self.num_negatives < 1 or self.margin < 0:
            raise ValueError("num_negatives must be at least 1 and margin non-negative")


def passes_margin(score: float, positive_score: float, config: MiningConfig) -> bool:
    if config.margin_type == "relative":
        return score < (1.0 - config.margin) * positive_score
    if config.margin_type == "absolute":
        return score < positive_score - config.margin
    return True


def select_negatives(ranked: Sequence[int], scores: Sequence[float], positive_score: float, positive_key: int,
                     keys: Sequence[int], config: MiningConfig, rng: random.Random) -> list[int]:
    """Pool indices of the chosen negatives for one query, from its candidates in descending score order."""
    kept: list[int] = []
    seen = {positive_key}
    rank = 0
    for index, score in zip(ranked, scores, strict=True):
        if index < 0 or keys[index] in seen:  # the positive, a copy of it, or a text already ranked
            continue
        seen.add(keys[index])
        if rank >= config.range_max:
            break
        if rank >= config.range_min and passes_margin(float(score), positive_score, config):
            kept.append(index)
        rank += 1
    if config.sampling == "top" or len(kept) <= config.num_negatives:
        return kept[: config.num_negatives]
    chosen = set(rng.sample(range(len(kept)), config.num_negatives))
    return [kept[i] for i in sorted(chosen)]


def search(queries: np.ndarray, pool: np.ndarray, k: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices), each (n, k), of the top-k pool vectors by inner product (exact)."""
    k = min(k, pool.shape[0])
    faiss = None
    if backend in ("auto", "faiss"):
        try:
            import faiss
        except ImportError:
            if backend == "faiss":
                raise
    if faiss is not None:
        index = faiss.IndexFlatIP(pool.shape[1])
        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        index.add(np.ascontiguousarray(pool, dtype=np.float32))
        scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, indices
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pool_t = torch.from_numpy(pool).to(device)
    out_scores, out_indices = [], []
    for start in range(0, queries.shape[0], 1024):
        block = torch.from_numpy(queries[start : start + 1024]).to(device) @ pool_t.T
        scores, indices = block.topk(k, dim=1)
        out_scores.append(scores.cpu().numpy())
        out_indices.append(indices.cpu().numpy())
    return np.concatenate(out_scores), np.concatenate(out_indices)


def read_pool(path: str | Path) -> list[str]:
    """Texts of a pool file: JSON Lines with a `text` field (and an optional `title`)."""
    texts = []
    for number, row, problem in json_lines(Path(path)):
        if problem:
            raise DataError(f"{path}:{number}: {problem}")
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataError(f"{path}:{number}: expected an object with a non-empty `text`")
        title = (row.get("title") or "").strip()
        texts.append(f"{title} {row['text']}".strip() if title and not row["text"].startswith(title) else row["text"])
    return texts


def mine_examples(model, examples: list[Example], config: MiningConfig, extra_pool: Sequence[str] = (),
                  batch_size: int = 64, max_length: int | None = None, keep_existing: bool = False,
                  backend: str = "auto") -> tuple[list[Example], dict[str, float]]:
    """New examples with mined negatives, and statistics (mean scores, queries short of negatives)."""
    config.validate()
    symmetric = {(e.symmetric, e.instruction if e.symmetric else None) for e in examples}
    if len(symmetric) > 1:
        raise DataError("mining needs one document-side treatment per file: mix of symmetric and asymmetric "
                        "examples (or several symmetric instructions); split the file")
    doc_instruction = next(iter(symmetric))[1]
    pool: dict[int, str] = {}
    for text in [t for e in examples for t in (e.positive, *e.negatives)] + list(extra_pool):
        pool.setdefault(text_key(text), text)
    keys = list(pool)
    texts = [pool[k] for k in keys]
    position = {k: i for i, k in enumerate(keys)}
    show = len(texts) >= 256
    pool_emb = model.encode_passages(texts, batch_size, max_length, show_progress=show, instruction=doc_instruction)
    by_instruction: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_instruction.setdefault(e.instruction, []).append(i)
    query_emb = np.zeros((len(examples), pool_emb.shape[1]), dtype=np.float32)
    for instruction, rows in by_instruction.items():
        query_emb[rows] = model.encode_queries([examples[i].query for i in rows], instruction, batch_size,
                                               max_length, show_progress=show)
    k = min(len(texts), config.range_max + 16)
    scores, indices = search(query_emb, pool_emb, k, backend)
    rng = random.Random(config.seed)
    out, short, pos_scores, neg_scores = [], 0, [], []
    for i, example in enumerate(tqdm(examples, desc="mining", unit="query", disable=not show)):
        positive_key = text_key(example.positive)
        positive_score = float(query_emb[i] @ pool_emb[position[positive_key]])
        chosen = select_negatives(indices[i], scores[i], positive_score, positive_key, keys, config, rng)
        mined = [texts[j] for j in chosen]
        pos_scores.append(positive_score)
        neg_scores += [float(query_emb[i] @ pool_emb[j]) for j in chosen]
        short += len(mined) < config.num_negatives
        negatives = list(dict.fromkeys((example.negatives if keep_existing else []) + mined))
        out.append(Example(example.query, example.positive, example.instruction, example.task,
                           negatives=negatives, symmetric=example.symmetric, id=example.id))
    stats = {"examples": len(out), "pool": len(texts), "mean_positive_score": float(np.mean(pos_scores)),
             "mean_negative_score": float(np.mean(neg_scores)) if neg_scores else float("nan"),
             "short_of_negatives": short}
    return out, stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mine", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help=f"teacher: {NAMES_HELP}")
    parser.add_argument("--input", required=True, help="training JSONL (training/data.py format)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--pool", nargs="*", default=[], help="extra candidate files ({\"text\": ...} lines)")
    parser.add_argument("--num-negatives", type=int, default=7)
    parser.add_argument("--range-min", type=int, default=0)
    parser.add_argument("--range-max", type=int, default=30)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--margin-type", choices=MARGIN_TYPES, default="relative")
    parser.add_argument("--sampling", choices=("random", "top"), default="random")
    parser.add_argument("--keep-existing", action="store_true", help="keep the file's negatives, add mined ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--num-layers", type=int, help="keep only the first N decoder layers of the teacher")
    parser.add_argument("--backend", choices=("auto", "faiss", "torch"), default="auto")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from .modeling import resolve_device
    from .teacher import load_embedder

    config = MiningConfig(args.num_negatives, args.range_min, args.range_max, args.margin, args.margin_type,
                          args.sampling, args.seed)
    try:
        config.validate()
        examples = read_jsonl(args.input)
        pool = [t for path in args.pool for t in read_pool(path)]
    except (ValueError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, precision = load_embedder(args.model, args.num_layers, resolve_device(args.device))
    with precision.context():
        mined, stats = mine_examples(model, examples, config, pool, args.batch_size, args.max_length,
                                     args.keep_existing, args.backend)
    write_jsonl(mined, args.output)
    print(json.dumps({"output": args.output, **stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
