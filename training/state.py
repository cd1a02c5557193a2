"""Resumable training state: what a checkpoint every N steps holds, and how a run picks it up again.

A checkpoint (`output_dir/checkpoints/stage{S}-step{N:06d}/state.pt`, or `{name}-step{N:06d}` for the
LLM2Vec pre-stages `mntp` and `simcse`) holds the trainable weights (LoRA
and latent layer), the optimizer and scheduler states, the sampler state (data order), every RNG state
(Python, NumPy, torch CPU and CUDA) and the identity of the model the stage started from. Restoring all of
it makes a resumed run compute exactly the losses an uninterrupted run computes (tested).

The identity is the encoder's weight fingerprint. Resuming against another model (another base, another
layer count, another stage-1 result) is refused before any step, naming both.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import PRE_STAGES

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^(?:stage(\d)|(" + "|".join(PRE_STAGES) + r"))-step(\d{6})$")


class ResumeError(ValueError):
    """A checkpoint that cannot continue this run."""


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def stage_label(stage: int | str) -> str:
    """`stage1`, `stage2` for the contrastive stages; the name itself (`mntp`, `simcse`) for a pre-stage."""
    return stage if isinstance(stage, str) else f"stage{stage}"


def stage_order(stage: int | str) -> int:
    """Run order of a stage: the pre-stages (in PRE_STAGES order) come before stage 1."""
    return PRE_STAGES.index(stage) - len(PRE_STAGES) if isinstance(stage, str) else int(stage)


def checkpoint_dir(output_dir: str | Path, stage: int | str, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"{stage_label(stage)}-step{step:06d}"


def parse_name(name: str) -> tuple[int | str, int] | None:
    """(stage, step) of a checkpoint directory's name (`stage1-step000120`, `mntp-step000040`), else None."""
    match = _NAME.match(name)
    if not match:
        return None
    return (int(match.group(1)) if match.group(1) else match.group(2)), int(match.group(3))


def list_checkpoints(output_dir: str | Path) -> list[tuple[int | str, int, Path]]:
    """(stage, step, path) of complete checkpoints, oldest first (stage: 1, 2, or a pre-stage's name)."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for path in root.iterdir():
            parsed = parse_name(path.name)
            if parsed and (path / "state.pt").is_file():
                found.append((*parsed, path))
    return sorted(found, key=lambda item: (stage_order(item[0]), item[1]))


def save(output_dir: str | Path, stage: int | str, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write atomically (temp file, then rename) and keep only the newest `keep` checkpoints."""
    path = checkpoint_dir(output_dir, stage, step)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "state.pt.tmp"
    torch.save({**state, "stage": stage, "step": step}, tmp)
    os.replace(tmp, path / "state.pt")
    for _, _, old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)


def check_identity(saved: str, current: str, what: str) -> None:
    if saved != current:
        raise ResumeError(
            f"cannot resume: the checkpoint was trained from a model with fingerprint {saved}, but {what} has "
            f"fingerprint {current}. Resume with the same base (and num_layers), or start a new output dir."
        )
