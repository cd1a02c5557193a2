"""One NV-Embed stage-1 training step at the paper's shapes on a GPU: tokens/s, MFU and peak memory.

The model is Mistral-7B-shaped (32 layers, hidden 4096, 32 heads / 8 KV heads, FFN 14336, vocab 32000)
with random weights (nothing can be downloaded), made bidirectional, with NV-Embed's latent-attention layer
(512 latents, 8 heads of width 4096), LoRA r16 on every projection, bf16 weights with float32 trainable
weights under bf16 autocast, activation checkpointing, SDPA (flash-attn 2 when installed). The batch is
the paper's: 128 queries x (1 positive + 7 hard negatives), max length 512, in-batch negatives on.

Measured, in this order, each step timed after a small warm-up step:
1. `chunked`: the full batch with the GradCache chunked loss (`--chunk-size` texts per forward);
2. `plain`: the full batch in one pass (expected to run out of memory on one 80 GB GPU: that is why the
   chunked loss exists; the OOM is reported, not raised);
3. `plain-small` / `chunked-small`: `--small-batch` queries both ways, for a throughput comparison.

MFU = model FLOPs / (step time x peak bf16 FLOP/s). Model FLOPs count what the step needs, not what it
recomputes: forward + backward through the activations for the frozen backbone (2 x its forward FLOPs,
with attention), 3 x forward for the trainable latent layer; the GradCache first pass and the activation
checkpointing recomputation are excluded, so they show up as lower MFU. Peak: 989 TFLOP/s (H100/H200
SXM dense bf16) unless `--peak-tflops` says otherwise.

    python benchmarks/train_gpu.py                      # the paper's shapes (about 5 minutes on an H100)
    python benchmarks/train_gpu.py --layers 4 --batch-size 16 --small-batch 4    # quick check
    python benchmarks/train_gpu.py --device cpu --dtype float32 --layers 2 --hidden 64 --heads 4 --kv-heads 2 \\
        --ffn 128 --latents 16 --batch-size 4 --small-batch 2 --query-length 32 --passage-length 64  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from encoder import NVEmbedModel  # noqa: E402
from encoder.testing import tiny_tokenizer  # noqa: E402
from encoder.tokenization import EncodedBatch  # noqa: E402
from training.batching import TrainBatch  # noqa: E402
from training.config import ModelConfig  # noqa: E402
from training.losses import grad_cache_step, info_nce, plain_step  # noqa: E402
from training.modeling import Precision, add_lora, enable_checkpointing, encoder_fn, trainable_parameters  # noqa: E402


def build_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> NVEmbedModel:
    from transformers import AutoModel, MistralConfig

    config = MistralConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
                           num_hidden_layers=args.layers, num_attention_heads=args.heads,
                           num_key_value_heads=args.kv_heads, max_position_embeddings=4096, sliding_window=None,
                           bos_token_id=1, eos_token_id=2, pad_token_id=2)
    attn = "sdpa"
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            attn = "flash_attention_2"
        except ImportError:
            pass
    torch.manual_seed(0)
    with torch.device(device):  # built directly on the GPU in bf16: no 28 GB float32 detour
        backbone = AutoModel.from_config(config, dtype=dtype, attn_implementation=attn)
    latent = {"num_latents_value": args.latents}
    model = NVEmbedModel.from_backbone(backbone, tiny_tokenizer(), latent, seed=0)  # ids are synthetic below
    model.latent_attention_model.to(device=device, dtype=torch.float32)
    add_lora(model, ModelConfig())
    if args.checkpointing and device.type == "cuda":
        enable_checkpointing(model)
    return model.train()


def synthetic_batch(args: argparse.Namespace, queries: int, device: torch.device) -> TrainBatch:
    """Random token ids at exactly the given lengths; queries carry a 20-token instruction prefix (not pooled)."""
    g = torch.Generator().manual_seed(queries)
    per = 1 + args.negatives

    def encoded(rows: int, length: int, prefix: int) -> EncodedBatch:
        ids = torch.randint(3, args.vocab, (rows, length), generator=g)
        ids[:, 0], ids[:, -1] = 1, 2  # BOS ... EOS
        mask = torch.ones_like(ids)
        pool = mask.clone()
        pool[:, :prefix] = 0
        return EncodedBatch(ids, mask, pool)

    passages = queries * per
    return TrainBatch(
        queries=encoded(queries, args.query_length, min(20, args.query_length - 2)),
        passages=encoded(passages, args.passage_length, 0),
        positive=torch.arange(queries) * per,
        owner=torch.arange(queries).repeat_interleave(per),
        query_ids=torch.arange(queries),
        in_batch=torch.ones(queries, dtype=torch.bool),
        passage_keys=torch.arange(passages),
    ).to(device)


def forward_flops(args: argparse.Namespace, texts: int, length: int) -> tuple[float, float]:
    """(backbone, latent layer) forward FLOPs for `texts` sequences of `length` tokens (matmuls only)."""
    d, L, f = args.hidden, args.layers, args.ffn
    kv = d * args.kv_heads // args.heads
    per_token = L * (2 * d * (2 * d + 2 * kv) + 2 * 3 * d * f + 4 * length * d)  # projections, MLP, attention
    inner = 8 * d  # 8 heads of width d
    latent_token = 2 * d * inner * 2 + 4 * args.latents * inner + 2 * d * 8 * d + 2 * 4 * d * d
    latent_text = 2 * args.latents * d * 2 * inner  # to_kv on the latents, once per sequence
    tokens = texts * length
    return float(per_token * tokens), float(latent_token * tokens + latent_text * texts)


def measure(model: NVEmbedModel, args: argparse.Namespace, queries: int, chunk: int | None,
            precision: Precision, peak_tflops: float) -> dict:
    device = precision.device
    params = [p for _, p in trainable_parameters(model)]
    optimizer = torch.optim.AdamW(params, lr=2e-5)
    encode = encoder_fn(model, precision)

    def step(batch: TrainBatch) -> None:
        def loss_fn(q, p):
            return info_nce(q, p, batch.positive, batch.owner, batch.query_ids, batch.in_batch, 0.02,
                            batch.passage_keys)
        if chunk:
            grad_cache_step(encode, batch.queries, batch.passages, loss_fn, chunk)
        else:
            plain_step(encode, batch.queries, batch.passages, loss_fn)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    name = ("chunked" if chunk else "plain") + ("" if queries == args.batch_size else "-small")
    result = {"mode": name, "queries": queries, "texts": queries * (2 + args.negatives), "chunk_size": chunk}
    try:
        step(synthetic_batch(args, min(2, queries), device))  # warm-up: kernels, allocator, optimizer state
        batch = synthetic_batch(args, queries, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    except torch.OutOfMemoryError as exc:
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result.update({"oom": True, "error": str(exc).splitlines()[0][:200]})
        return result
    tokens = queries * args.query_length + queries * (1 + args.negatives) * args.passage_length
    q_back, q_lat = forward_flops(args, queries, args.query_length)
    p_back, p_lat = forward_flops(args, queries * (1 + args.negatives), args.passage_length)
    model_flops = 2 * (q_back + p_back) + 3 * (q_lat + p_lat)
    result.update({
        "oom": False, "step_s": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
        "examples_per_s": queries / seconds, "model_tflop": model_flops / 1e12,
        "mfu": model_flops / seconds / (peak_tflops * 1e12) if peak_tflops else None,
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
    })
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=14336)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--latents", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128, help="queries per step")
    parser.add_argument("--negatives", type=int, default=7)
    parser.add_argument("--query-length", type=int, default=512)
    parser.add_argument("--passage-length", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=32, help="texts per forward in the chunked step")
    parser.add_argument("--small-batch", type=int, default=8, help="queries for the plain-vs-chunked comparison")
    parser.add_argument("--modes", default="chunked,plain,plain-small,chunked-small")
    parser.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, help="peak dense FLOP/s of the device in TFLOP/s (default 989)")
    parser.add_argument("--json-out", help="also write the results here (default: $OUT/train_gpu.json when set)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (use --device cpu --dtype float32 for a smoke test)")
        return 2
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    precision = Precision(device, dtype, dtype if dtype == torch.bfloat16 else None)
    peak = args.peak_tflops if args.peak_tflops is not None else (989.0 if device.type == "cuda" else None)
    started = time.perf_counter()
    model = build_model(args, device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for _, p in trainable_parameters(model))
    print(f"{name}: model {n_params / 1e9:.2f} B parameters ({n_train / 1e6:.0f} M trainable), built in "
          f"{time.perf_counter() - started:.0f} s; torch {torch.__version__}", flush=True)
    results = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        queries = args.small_batch if mode.endswith("-small") else args.batch_size
        chunk = args.chunk_size if mode.startswith("chunked") else None
        result = measure(model, args, queries, chunk, precision, peak)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(f"\n{name}, {args.layers} layers x hidden {args.hidden}, query/passage length {args.query_length}/"
          f"{args.passage_length}, 1 + {args.negatives} passages per query, {args.dtype}, activation checkpointing "
          f"{'on' if args.checkpointing and device.type == 'cuda' else 'off'}\n")
    print("| mode | queries (texts) | step s | tokens/s | examples/s | MFU | peak memory GB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r["oom"]:
            print(f"| {r['mode']} | {r['queries']} ({r['texts']}) | out of memory | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "–"
        memory = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "–"
        print(f"| {r['mode']} | {r['queries']} ({r['texts']}) | {r['step_s']:.1f} | {r['tokens_per_s']:.0f} | "
              f"{r['examples_per_s']:.2f} | {mfu} | {memory} |")
    out = args.json_out or (os.path.join(os.environ["OUT"], "train_gpu.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps({"device": name, "args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
