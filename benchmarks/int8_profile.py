"""Where the int8 encoder's CPU time goes: per module kind, and inside the int8 linear layers.

Why this file exists: issue 13 wants the int8 CPU path faster, and a change is only worth making where the
time is. This script encodes real passages (length-sorted batches, as `encode_passages` forms them) with
the model in a given configuration and reports, in thread CPU seconds:

- per module kind (hooks): decoder attention blocks (projections + rotary + SDPA), their q/k/v/o projections,
  MLPs, norms, the latent layer, and what is left (embedding, masks, Python);
- inside the int8 layers (`encoder.int8.Int8Kernel`, wrapped): the whole kernel call, `rows` (the outlier
  scan and split plus the product) and `matmul` (the onnxruntime session call alone), and the number of
  calls; kernel minus rows is the padding gather and scatter, rows minus matmul the outlier handling.

    python benchmarks/int8_profile.py [--model default] [--n 64] [--batch-size 16] [--no-int8 | --no-fuse]

Run it on a quiet core (`OMP_NUM_THREADS=1 taskset -c 1`); compare configurations within one machine state.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.encode import load_passages  # noqa: E402
from encoder import NVEmbedModel  # noqa: E402
from encoder import int8 as int8_kernels  # noqa: E402

CLOCK = time.thread_time


class Timer:
    """Accumulates thread CPU seconds per label; nested labels are timed on their own (inclusive)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = CLOCK()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += CLOCK() - start
                self.calls[label] += 1
        return timed

    def hook(self, module: nn.Module, label: str) -> None:
        starts: list[float] = []

        def pre(*_: Any) -> None:
            starts.append(CLOCK())

        def post(*_: Any) -> None:
            self.seconds[label] += CLOCK() - starts.pop()
            self.calls[label] += 1
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def module_label(name: str, module: nn.Module) -> str | None:
    kind = type(module).__name__
    if name.startswith("latent_attention_model") and name.count(".") == 0:
        return "latent layer (all)"
    if kind.endswith("Attention") and name.startswith("embedding_model"):
        return "decoder attention block (all)"
    if kind.endswith("MLP"):
        return "decoder MLP (all)"
    if kind.endswith("RMSNorm"):
        return "decoder norms"
    if name.startswith("embedding_model") and name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj"):
        return "  of which q/k/v/o projections"
    return None


def instrument(timer: Timer) -> None:
    """Wrap the int8 kernel's pieces (class attributes, so every layer's kernel is timed)."""
    kernel = int8_kernels.Int8Kernel
    kernel.matmul = timer.wrap("int8: onnxruntime matmul (incl. call)", kernel.matmul)
    kernel.__call__ = timer.wrap("int8: kernel total", kernel.__call__)
    kernel.rows = timer.wrap("int8: rows (outlier scan + matmul)", kernel.rows)


def session_overhead(repeats: int = 2000) -> float:
    """Seconds per onnxruntime call on a 1-row input (the fixed cost of a call)."""
    layer = int8_kernels.Int8Kernel(torch.randn(64, 64), None)
    rows = torch.randn(1, 64)
    for _ in range(50):
        layer.matmul(rows)
    start = CLOCK()
    for _ in range(repeats):
        layer.matmul(rows)
    return (CLOCK() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-fuse", action="store_true", help="int8 without fused q/k/v and gate/up products")
    args = parser.parse_args()
    model = NVEmbedModel.from_pretrained(args.model, device="cpu", int8=not args.no_int8)
    if args.no_fuse:
        int8_kernels.unfuse(model)
    texts = load_passages(args.n, corpus="cranfield")
    model.encode_passages(texts[:4], batch_size=args.batch_size, show_progress=False)  # builds the kernels
    timer = Timer()
    for name, module in model.named_modules():
        label = module_label(name, module)
        if label:
            timer.hook(module, label)
    if not args.no_int8:
        instrument(timer)
    tokens = sum(model.count_tokens(texts))
    start = CLOCK()
    model.encode_passages(texts, batch_size=args.batch_size, show_progress=False)
    total = CLOCK() - start
    print(f"{args.n} Cranfield passages, {tokens} tokens, batch {args.batch_size}, "
          f"{'float32' if args.no_int8 else 'int8'}: {total:.2f} s thread CPU")
    print("| part | CPU s | share | calls |\n|---|---:|---:|---:|")
    for label, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {seconds:.2f} | {seconds / total:.0%} | {timer.calls[label]} |")
    if not args.no_int8:
        print(f"onnxruntime call on 1 row: {session_overhead() * 1e6:.0f} us")


if __name__ == "__main__":
    main()
