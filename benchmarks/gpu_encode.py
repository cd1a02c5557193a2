"""GPU path: encode throughput and MFU of a 7B-shaped random NV-Embed model in bfloat16, and exact top-k search.

One prepared script for a lent GPU session (the device tool gives minutes, not hours). What it measures:

1. `forward` at fixed shapes, batch 8..128 x length 128..512 (every token real, SDPA): tokens/s and MFU,
   halving the batch on out-of-memory (the halved size is reported);
2. `encode_passages` on a workload of varied lengths (length-sorted batches, its own OOM halving): passages/s;
3. exact search of 1,000 queries over N x d vectors (default 1M x 4096, bfloat16) as a matrix product +
   `torch.topk`, and FAISS `GpuIndexFlatIP` when a GPU faiss is installed (otherwise reported as absent).

MFU = model FLOPs per second / the GPU's dense bfloat16 peak (`--peak-tflops`, else from the device name:
H100/H200 989). Model FLOPs per token: 2 x the linear layers' weights (decoder + latent layer, the latent
cross-attention folded, as the encoder runs it) + the decoder's attention 4·T·d per layer.
The weights are random (shape is what costs time); nothing is downloaded.

    python benchmarks/gpu_encode.py --out $OUT                 # on the GPU machine, about 5 minutes
    python benchmarks/gpu_encode.py --tiny --device cpu        # smoke run (tests/encoder/test_gpu_benchmark.py)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoder import NVEmbedModel  # noqa: E402
from encoder.testing import tiny_tokenizer  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


@dataclass
class Shape:
    """The backbone and latent-layer sizes (defaults: NV-Embed-v2 = Mistral-7B + 512 latents)."""

    hidden: int = 4096
    layers: int = 32
    heads: int = 32
    kv_heads: int = 8
    intermediate: int = 14336
    latents: int = 512
    cross_heads: int = 8


@dataclass
class Plan:
    shape: Shape = field(default_factory=Shape)
    batches: tuple[int, ...] = (8, 16, 32, 64, 128)
    lengths: tuple[int, ...] = (128, 256, 512)
    workload: int = 1024  # passages of varied length for encode_passages
    search_n: int = 1_000_000
    search_d: int = 4096
    queries: int = 1000
    repeats: int = 3


TINY = Plan(Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, latents=16, cross_heads=2),
            batches=(8, 16), lengths=(16, 32), workload=24, search_n=5000, search_d=64, queries=16, repeats=1)


def build_model(shape: Shape, device: torch.device, dtype: torch.dtype) -> NVEmbedModel:
    from transformers import AutoConfig, AutoModel

    tokenizer = tiny_tokenizer()
    config = AutoConfig.for_model("mistral", vocab_size=len(tokenizer), hidden_size=shape.hidden,
                                  num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                                  num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate,
                                  max_position_embeddings=4096, sliding_window=None, bos_token_id=1,
                                  eos_token_id=2, pad_token_id=2)
    with torch.device(device):
        backbone = AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
        latent = {"num_latents_value": shape.latents, "num_cross_heads": shape.cross_heads}
        model = NVEmbedModel.from_backbone(backbone, tokenizer, latent, name="random-7b-shape")
    return model.to(device=device, dtype=dtype).eval()


def flops_per_token(model: NVEmbedModel, length: int) -> float:
    """Multiply-adds x 2 of one token: linear layers (latent cross-attention folded) + decoder attention."""
    c, s = model.config.latent, model.config.text_config
    linear = sum(p.numel() for n, p in model.embedding_model.named_parameters() if n.endswith("proj.weight"))
    latent_ffn = sum(p.numel() for n, p in model.latent_attention_model.named_parameters() if ".net." in n and
                     n.endswith("weight"))
    folded = 2 * c.latent_dim * c.num_cross_heads * c.num_latents_value
    attention = 2 * s.num_hidden_layers * length * s.hidden_size  # QK^T and PV, multiply-adds
    return 2.0 * (linear + latent_ffn + folded + attention)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def fixed_shapes(model: NVEmbedModel, plan: Plan, device: torch.device, peak: float | None) -> list[dict]:
    rows = []
    vocab = model.embedding_model.config.vocab_size
    for length in plan.lengths:
        for wanted in plan.batches:
            batch = wanted
            while True:
                try:
                    ids = torch.randint(3, vocab, (batch, length), device=device)
                    mask = torch.ones_like(ids)
                    model(ids, mask, mask)  # warm-up at this shape
                    _sync(device)
                    start = time.perf_counter()
                    for _ in range(plan.repeats):
                        model(ids, mask, mask)
                    _sync(device)
                    seconds = (time.perf_counter() - start) / plan.repeats
                    break
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    if batch == 1:
                        raise
                    batch //= 2
            tokens_s = batch * length / seconds
            tflops = tokens_s * flops_per_token(model, length) / 1e12
            rows.append({"batch": wanted, "ran_batch": batch, "length": length, "ms": 1000 * seconds,
                         "tokens_per_s": tokens_s, "tflops": tflops, "mfu": tflops / peak if peak else None})
            print(f"[gpu] batch {wanted} (ran {batch}) x {length}: {tokens_s:,.0f} tokens/s, {tflops:.1f} TFLOP/s",
                  file=sys.stderr, flush=True)
    return rows


def workload(model: NVEmbedModel, plan: Plan, device: torch.device) -> dict:
    """encode_passages on texts of 20..500 words (length-sorted batches, OOM halving inside)."""
    rng = random.Random(0)
    words = "the wing boundary layer heat transfer pressure flow drug disease bank card search index".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 500))) for _ in range(plan.workload)]
    tokens = sum(model.count_tokens(texts))
    model.encode_passages(texts[:8], batch_size=8)
    _sync(device)
    start = time.perf_counter()
    model.encode_passages(texts, batch_size=64, show_progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"passages": len(texts), "tokens": tokens, "seconds": seconds, "passages_per_s": len(texts) / seconds,
            "tokens_per_s": tokens / seconds}


@torch.inference_mode()
def search(plan: Plan, device: torch.device) -> dict:
    """Exact top-10 of `queries` over `search_n` x `search_d` unit vectors: torch, and faiss on GPU if present."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = torch.nn.functional.normalize(torch.randn(plan.search_n, plan.search_d, device=device), dim=1).to(dtype)
    queries = torch.nn.functional.normalize(torch.randn(plan.queries, plan.search_d, device=device), dim=1).to(dtype)
    result: dict = {"n": plan.search_n, "d": plan.search_d, "queries": plan.queries, "dtype": str(dtype)}

    def torch_topk() -> torch.Tensor:
        out = []
        for chunk in queries.split(256):
            out.append(torch.topk(chunk @ base.T, 10, dim=1).indices)
        return torch.cat(out)

    torch_topk()
    _sync(device)
    start = time.perf_counter()
    indices = torch_topk()
    _sync(device)
    result["torch_ms_per_batch"] = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    torch.topk(queries[:1] @ base.T, 10, dim=1)
    _sync(device)
    result["torch_ms_one_query"] = 1000 * (time.perf_counter() - start)
    try:
        import faiss
    except ImportError:
        result["faiss_gpu"] = "faiss not installed"
        return result
    if not (hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and device.type == "cuda"):
        result["faiss_gpu"] = "no GPU faiss"
        return result
    resources = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(resources, plan.search_d)
    index.add(base.float().cpu().numpy())
    q = queries.float().cpu().numpy()
    index.search(q[:8], 10)
    start = time.perf_counter()
    _, found = index.search(q, 10)
    result["faiss_ms_per_batch"] = 1000 * (time.perf_counter() - start)
    result["faiss_torch_top1_agreement"] = float((torch.from_numpy(found[:, 0]) == indices[:, 0].cpu()).float().mean())
    return result


def run(plan: Plan, device: torch.device, peak_given: float | None = None) -> dict:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    started = time.perf_counter()
    model = build_model(plan.shape, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    peak = peak_tflops(device, peak_given)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype), "parameters": params, "shape": asdict(plan.shape), "peak_tflops": peak,
        "build_s": time.perf_counter() - started,
        "fixed": fixed_shapes(model, plan, device, peak),
        "workload": workload(model, plan, device),
    }
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    report["search"] = search(plan, device)
    return report


def print_report(report: dict) -> None:
    print(f"{report['device']}, {report['dtype']}, random NV-Embed of {report['parameters'] / 1e9:.2f}B parameters "
          f"({report['shape']}), SDPA; peak {report['peak_tflops']} TFLOP/s")
    print("| batch | ran | length | ms/batch | tokens/s | TFLOP/s | MFU |\n|---|---|---|---|---|---|---|")
    for r in report["fixed"]:
        mfu = f"{100 * r['mfu']:.0f}%" if r["mfu"] is not None else "n/a"
        print(f"| {r['batch']} | {r['ran_batch']} | {r['length']} | {r['ms']:.1f} | {r['tokens_per_s']:,.0f} | "
              f"{r['tflops']:.1f} | {mfu} |")
    w = report["workload"]
    print(f"encode_passages, {w['passages']} passages of varied length ({w['tokens']} tokens): "
          f"{w['passages_per_s']:.1f} passages/s, {w['tokens_per_s']:,.0f} tokens/s")
    print(f"search: {json.dumps(report['search'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (CPU smoke run)")
    parser.add_argument("--layers", type=int, help="decoder layers (fewer than 32 to fit a time budget)")
    parser.add_argument("--search-n", type=int)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--out", type=Path, help="directory for report.json")
    args = parser.parse_args()
    plan = TINY if args.tiny else Plan()
    if args.layers:
        plan.shape.layers = args.layers
    if args.search_n:
        plan.search_n = args.search_n
    report = run(plan, torch.device(args.device), args.peak_tflops)
    print_report(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
