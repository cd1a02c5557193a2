"""`python -m training.snapshot RUN_DIR --out DIR`: a mid-stage checkpoint as a model directory.

A run (`training.two_stage`) writes a model directory only when a stage finishes; in between it keeps
resumable checkpoints (`RUN_DIR/checkpoints/stage{S}-step{N}/state.pt`, training/state.py) that hold the
trainable weights only. A long run's progress is worth measuring (and shipping) before its stage ends, so
this rebuilds the model exactly as the run builds it for that stage, from the run's own saved config
(`RUN_DIR/run.json`): the same base, layer cut, latent size and initialisation, full fine-tuning or LoRA,
and for stage 2 the stage-1 result it started from (`two_stage.stage_start_model`, the run's own code).
It checks that this model has the fingerprint the checkpoint was trained from, loads the checkpoint's
`trainable` weights, and writes the directory a finished stage writes (`modeling.save_stage`: LoRA
merged), so `training.evaluate --model DIR`, the index and `training.export_default` take it as it is.

    python -m training.snapshot runs/long --out /tmp/long-step120            # the newest checkpoint
    python -m training.snapshot runs/long --checkpoint runs/long/checkpoints/stage1-step000120 --out DIR

Nothing under RUN_DIR is written. A checkpoint that the run deletes while it is being read (it keeps only
the newest `keep_checkpoints`) is reported; pass another or run it again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from encoder import NVEmbedModel

from . import state
from .config import ConfigError, RunConfig, from_dict
from .modeling import resolve_device, resolve_precision, save_stage, trainable_parameters
from .state import stage_label
from .two_stage import RUN_FILE, stage_start_model


class SnapshotError(ValueError):
    """A run directory or checkpoint that cannot be turned into a model."""


def read_run(run_dir: str | Path) -> tuple[RunConfig, dict[str, Any]]:
    """The run's config (as it was started) and the rest of `run.json` (completed stages, evaluations)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise SnapshotError(f"{run_dir}: no {RUN_FILE} (not the output directory of training.two_stage)")
    data = json.loads(path.read_text())
    if "config" not in data:
        raise SnapshotError(f"{path}: no 'config' entry")
    return from_dict(data["config"]), data


def checkpoint_stage(path: Path) -> tuple[int | str, int]:
    """(stage, step) from a checkpoint directory's name (`stage1-step000120`)."""
    parsed = state.parse_name(path.name)
    if parsed is None:
        raise SnapshotError(f"{path}: not a checkpoint directory (expected a name like stage1-step000120)")
    return parsed


def latest_checkpoint(run_dir: str | Path) -> Path:
    found = state.list_checkpoints(run_dir)
    if not found:
        raise SnapshotError(f"{run_dir}: no checkpoint under {state.CHECKPOINTS}/ (a finished stage is "
                            "already a model directory: RUN_DIR/stage1, RUN_DIR/stage2)")
    return found[-1][2]


def load_trainable(model: NVEmbedModel, saved: dict[str, torch.Tensor], where: str) -> int:
    """Copy a checkpoint's `trainable` tensors into `model`; return how many values were loaded.

    Every saved name must be one of the model's trainable parameters with the same shape (the MNTP
    pre-stage saves the backbone only, so a subset is allowed, but not an empty one)."""
    params = dict(trainable_parameters(model))
    unknown = sorted(set(saved) - set(params))
    if unknown or not saved:
        raise SnapshotError(f"{where}: its trainable weights do not match the model built from the run's config "
                            f"({len(unknown)} unknown, e.g. {unknown[:1]}; model has {len(params)} trainable)")
    loaded = 0
    with torch.no_grad():
        for name, tensor in saved.items():
            param = params[name]
            if tuple(param.shape) != tuple(tensor.shape):
                raise SnapshotError(f"{where}: {name} has shape {tuple(tensor.shape)}, the model's is "
                                    f"{tuple(param.shape)}")
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))
            loaded += tensor.numel()
    model._fingerprint = None
    return loaded


def build_snapshot(run_dir: str | Path, checkpoint: str | Path | None = None,
                   device: str = "cpu") -> tuple[NVEmbedModel, dict[str, Any], RunConfig]:
    """The model of `checkpoint` (default: the run's newest) in memory, in eval mode, its metadata (what
    `snapshot` writes into the directory's config) and the run's config."""
    run_dir = Path(run_dir)
    config, run_data = read_run(run_dir)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    stage, step = checkpoint_stage(path)
    if stage not in config.stages:
        raise SnapshotError(f"{path}: stage {stage!r} is not one of the run's stages {config.stages}")
    try:
        saved = state.load(path)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no state.pt (deleted by the running job? it keeps only the newest "
                            f"{config.keep_checkpoints}; pass another --checkpoint)") from None
    precision = resolve_precision(config.model, resolve_device(device))
    model, start = stage_start_model(config, precision, run_dir, run_data.get("completed", []), stage)
    state.check_identity(saved["fingerprint"], start,
                         f"the model built from {run_dir / RUN_FILE} for {stage_label(stage)}")
    loaded = load_trainable(model, saved["trainable"], str(path))
    model.eval()
    section = config.stage(stage)
    elapsed = float(saved.get("elapsed_s", 0.0))
    metadata = {"name": f"{Path(config.model.base).name}-{stage_label(stage)}-step{step}", "stage": stage,
                "base": config.model.base, "steps": step, "train_seconds": round(elapsed, 1),
                "snapshot": {"run": str(run_dir.resolve()), "checkpoint": path.name, "step": step,
                             "stage_steps": section.steps, "elapsed_s": elapsed,
                             "pairs_seen": step * section.batch_size, "trainable_values": loaded}}
    return model, metadata, config


def snapshot(run_dir: str | Path, out: str | Path, checkpoint: str | Path | None = None,
             device: str = "cpu") -> dict[str, Any]:
    """Write the model of `checkpoint` (default: the run's newest) to `out`; return its metadata."""
    model, metadata, config = build_snapshot(run_dir, checkpoint, device)
    save_stage(model, out, metadata, keep_adapter=not config.model.merge_lora)
    return {**metadata, "out": str(out)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.snapshot", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a training.two_stage output directory (holds run.json)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the run's newest)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
            raise SnapshotError(f"--out {args.out} is not empty (pass --overwrite to replace a model there)")
        if args.out.resolve().is_relative_to(args.run_dir.resolve()):
            raise SnapshotError(f"--out {args.out} is inside the run directory; write the snapshot elsewhere")
        meta = snapshot(args.run_dir, args.out, args.checkpoint, args.device)
    except (SnapshotError, ConfigError, state.ResumeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = meta["snapshot"]
    print(f"wrote {meta['out']}: {stage_label(meta['stage'])} step {info['step']}/{info['stage_steps']}, "
          f"{info['pairs_seen']} pairs, {info['elapsed_s'] / 3600:.2f} training hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
