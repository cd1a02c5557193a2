"""Encoding throughput: length-sorted batching (`encode_passages`) against a naive loop.

The naive loop uses the same model and batch size but keeps input order and pads each batch to its
longest text, as a plain DataLoader would. Both run in the same process, on the same real passages
(MedQuAD answers, whose lengths vary widely), so the ratio is meaningful on a noisy machine.

    python benchmarks/encode.py [--model default] [--n 512] [--batch-size 16] [--max-length 512]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder import NVEmbedModel  # noqa: E402
from encoder.tokenization import collate, token_ids  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "medquad" / "pairs.jsonl"


def load_passages(n: int, seed: int = 0) -> list[str]:
    rows = [json.loads(line)["positive"] for line in DATA.open()]
    random.Random(seed).shuffle(rows)
    return rows[:n]


@torch.inference_mode()
def naive_encode(model: NVEmbedModel, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    rows = token_ids(model.tokenizer, texts, "", max_length)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start : start + batch_size], model.tokenizer.pad_token_id, 0).to(model.device)
        out.append(model(batch.input_ids, batch.attention_mask, batch.pool_mask).float().cpu().numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()

    model = NVEmbedModel.from_pretrained(args.model)
    texts = load_passages(args.n)
    lengths = [len(r) for r in token_ids(model.tokenizer, texts, "", args.max_length)]
    tokens = sum(lengths)
    model.encode_passages(texts[:4], batch_size=4)  # warm-up

    results = {}
    start = time.perf_counter()
    naive = naive_encode(model, texts, args.batch_size, args.max_length)
    results["naive loop (input order, padded)"] = time.perf_counter() - start
    start = time.perf_counter()
    ours = model.encode_passages(texts, batch_size=args.batch_size, max_length=args.max_length, show_progress=False)
    results["encode_passages (length-sorted)"] = time.perf_counter() - start
    diff = float(np.abs(naive - ours).max())

    device = f"{model.device.type}, {str(model.dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads"
    print(f"model {model.name} ({model.num_layers} layers, d={model.dimension}), {device}")
    print(f"{args.n} MedQuAD passages, {tokens} tokens (min {min(lengths)}, median {int(np.median(lengths))}, "
          f"max {max(lengths)}), batch {args.batch_size}, max_length {args.max_length}; max |diff| {diff:.1e}")
    print("| method | seconds | passages/s | tokens/s | ratio |\n|---|---|---|---|---|")
    base = results["naive loop (input order, padded)"]
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.1f} | {args.n / seconds:.2f} | {tokens / seconds:.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
