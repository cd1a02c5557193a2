"""Weight interpolation of two checkpoints of one model: (1 - w) * A + w * B, tensor by tensor.

Why it exists: each leg of the long run adds text from one domain, and a leg can lift the dev set that
resembles its new text while the other slips (the sixth leg: Cranfield +0.011, CISI -0.004 nDCG@10). Two
fine-tunings of one starting point usually sit in one basin, where the average of their weights keeps
most of what each learned (WiSE-FT, Wortsman et al., arXiv 2109.01903; model soups, arXiv 2203.05482). So
the shipped default and a leg's candidate can be averaged into a third candidate without training, and
measured like any other (`scripts/finish-leg.sh` steps 2-3 on the written directory).

    python -m training.interpolate A_DIR B_DIR --weight 0.5 --out DIR

A and B are model directories with one `model.safetensors` each (a trained stage, a converted default in
the cache directory); they must have the same tensors with the same shapes and dtypes. DIR gets the
interpolated weights and B's other files (config, tokenizer), with the interpolation recorded in
`config.json` under `nvembed_search.interpolation`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """(1 - weight) * a + weight * b for every floating tensor; other tensors must be equal and are kept."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(f"the checkpoints differ in tensors: only in A {only_a[:5]}, only in B {only_b[:5]}")
    out = {}
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            raise ValueError(f"{name}: A is {tuple(ta.shape)} {ta.dtype}, B is {tuple(tb.shape)} {tb.dtype}")
        if ta.is_floating_point():
            out[name] = torch.lerp(ta.float(), tb.float(), weight).to(ta.dtype)
        elif torch.equal(ta, tb):
            out[name] = ta
        else:
            raise ValueError(f"{name}: a non-floating tensor that differs between A and B cannot be interpolated")
    return out


def interpolate_dirs(a_dir: str | Path, b_dir: str | Path, weight: float, out_dir: str | Path) -> Path:
    """Write the interpolated model of two model directories to `out_dir` (B's config and tokenizer)."""
    a_dir, b_dir, out_dir = Path(a_dir), Path(b_dir), Path(out_dir)
    for d in (a_dir, b_dir):
        if not (d / WEIGHTS).is_file():
            raise FileNotFoundError(f"{d}: no {WEIGHTS}")
    if out_dir.resolve() in (a_dir.resolve(), b_dir.resolve()):
        raise ValueError(f"--out {out_dir} would overwrite one of the inputs")
    state = interpolate_state(load_file(a_dir / WEIGHTS), load_file(b_dir / WEIGHTS), weight)
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in b_dir.iterdir():
        if item.is_file() and item.name not in (WEIGHTS, "config.json"):
            shutil.copy2(item, out_dir / item.name)
    config_path = b_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    record = config.setdefault("nvembed_search", {})
    record["name"] = f"{record.get('name', b_dir.name)}-interp{weight:g}"
    record["interpolation"] = {"a": str(a_dir), "b": str(b_dir), "weight_of_b": weight}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, out_dir / WEIGHTS)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="model directory A (weight 1 - w)")
    parser.add_argument("b", help="model directory B (weight w); its config and tokenizer are copied")
    parser.add_argument("--weight", type=float, default=0.5, help="w, the weight of B (default 0.5)")
    parser.add_argument("--out", required=True, help="directory to write")
    args = parser.parse_args(argv)
    out = interpolate_dirs(args.a, args.b, args.weight, args.out)
    print(f"[interpolate] {args.a} x {1 - args.weight:g} + {args.b} x {args.weight:g} -> {out}")


if __name__ == "__main__":
    main()
