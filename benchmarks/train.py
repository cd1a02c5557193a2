"""Training-step throughput and memory: the plain contrastive step against the GradCache chunked step.

Both compute the same loss and gradients (tests/training/test_losses.py); the chunked step embeds the
batch twice (once without a graph) so it costs about a third more compute, and in exchange holds the
activations of only `--chunk-size` texts at a time. The point to measure: peak memory of the plain step
grows with the batch, the chunked step's does not.

Each configuration runs in its own subprocess (so that its peak resident memory is its own) on the same
random model and the same synthetic batch; the baseline (plain step) is measured in the same run, and
every ratio is against the plain step at the same batch. CPU, float32.

`--allocators glibc jemalloc` instead compares memory allocators on the plain step (each child started
through scripts/with-jemalloc.sh or not; ratios against glibc at the same batch): with activations of
tens of MB, glibc's malloc returns them to the kernel and faults them back in every step.

    python benchmarks/train.py [--batch-sizes 8 32] [--chunk-size 8] [--negatives 3] [--length 64]
        [--hidden 256] [--layers 4] [--steps 3] [--threads 1] [--allocators glibc jemalloc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> dict:
    """One configuration: build the model and batch, run warm-up + measured steps, report figures."""
    warnings.filterwarnings("ignore")
    import torch

    from encoder.model import NVEmbedModel
    from encoder.testing import tiny_backbone
    from training.batching import Item, make_batch
    from training.config import ModelConfig
    from training.data import Example
    from training.losses import grad_cache_step, info_nce, plain_step
    from training.modeling import Precision, add_lora, encoder_fn, trainable_parameters

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone, tokenizer = tiny_backbone("llama", hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                                        num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                                        num_key_value_heads=max(1, args.hidden // 192))
    model = NVEmbedModel.from_backbone(backbone, tokenizer, {"num_latents_value": args.latents}, seed=0)
    add_lora(model, ModelConfig())
    model.train()
    words = "the river flight wing pressure boundary layer heat transfer library card bank money".split()

    def text(i: int, n: int) -> str:
        return " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(n))

    items = [Item(Example(query=text(i, args.length // 4), positive=text(i + 1, args.length), instruction="retrieval",
                          task="retrieval"), [text(i + 2 + k, args.length) for k in range(args.negatives)], 0)
             for i in range(args.batch_size)]
    batch = make_batch(model, items, 0, ["retrieval"], max_length=args.length)
    encode = encoder_fn(model, Precision(torch.device("cpu"), torch.float32, None))
    optimizer = torch.optim.AdamW([p for _, p in trainable_parameters(model)], lr=1e-5)

    def loss_fn(q, p):
        return info_nce(q, p, batch.positive, batch.owner, batch.query_ids, batch.in_batch, 0.02, batch.passage_keys)

    def step():
        if args.chunk_size:
            out = grad_cache_step(encode, batch.queries, batch.passages, loss_fn, args.chunk_size)
        else:
            out = plain_step(encode, batch.queries, batch.passages, loss_fn)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out

    setup = rss_mb()  # model, batch and libraries resident, before any step
    step()  # warm-up (allocations, optimizer state)
    started = time.perf_counter()
    tokens = 0
    for _ in range(args.steps):
        tokens += step().num_tokens
    seconds = (time.perf_counter() - started) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"examples_per_s": args.batch_size / seconds, "tokens_per_s": tokens / args.steps / seconds,
            "step_s": seconds, "peak_rss_mb": peak, "step_mb": peak - setup,
            "texts": args.batch_size * (2 + args.negatives), "threads": torch.get_num_threads()}


def run_child(args: argparse.Namespace, batch_size: int, chunk_size: int | None, allocator: str = "glibc") -> dict:
    prefix = [str(ROOT / "scripts" / "with-jemalloc.sh")] if allocator == "jemalloc" else []
    command = prefix + [sys.executable, __file__, "--child", "--batch-size", str(batch_size), "--negatives",
               str(args.negatives), "--length", str(args.length), "--hidden", str(args.hidden), "--layers",
               str(args.layers), "--latents", str(args.latents), "--steps", str(args.steps), "--threads", str(args.threads)]
    command += ["--chunk-size", str(chunk_size or 0)]  # 0: the plain step
    env = {**os.environ, "REQUIRE_JEMALLOC": "1"}
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32], help="queries per step")
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=8, help="texts per chunk for the chunked step (0: plain)")
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--length", type=int, default=64, help="tokens per passage (queries a quarter)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--latents", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: stable figures on a shared machine; OpenMP spinning threads "
                             "slow small matmuls badly when cores are oversubscribed)")
    parser.add_argument("--allocators", nargs="+", choices=("glibc", "jemalloc"),
                        help="compare allocators on the plain step instead of plain vs chunked")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    print(f"model: random Llama, hidden {args.hidden}, {args.layers} layers, LoRA r16 + latent layer "
          f"({args.latents} latents); passages {args.length} tokens, 1 + {args.negatives} per query; float32 CPU",
          flush=True)
    rows = []
    for batch_size in args.batch_sizes:
        if args.allocators:
            results = {name: run_child(args, batch_size, None, name) for name in args.allocators}
            baseline = results[args.allocators[0]]
            rows += [(batch_size, f"plain, {name}" + (" (baseline)" if i == 0 else ""), result, baseline)
                     for i, (name, result) in enumerate(results.items())]
            continue
        plain = run_child(args, batch_size, None)
        chunked = run_child(args, batch_size, args.chunk_size)
        rows.append((batch_size, "plain (baseline)", plain, plain))
        rows.append((batch_size, f"chunked ({args.chunk_size} texts)", chunked, plain))
    print("\n| queries/step (texts) | step | examples/s | tokens/s | ratio | peak RSS MB | step memory MB | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for batch_size, name, result, baseline in rows:
        print(f"| {batch_size} ({result['texts']}) | {name} | {result['examples_per_s']:.2f} | "
              f"{result['tokens_per_s']:.0f} | {result['examples_per_s'] / baseline['examples_per_s']:.2f}x | "
              f"{result['peak_rss_mb']:.0f} | {result['step_mb']:.0f} | {result['step_mb'] / baseline['step_mb']:.2f}x |")
    print(f"\n(torch threads: {rows[0][2]['threads']}; step memory = peak RSS minus the RSS before the first step: "
          "activations, gradients and optimizer state)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
