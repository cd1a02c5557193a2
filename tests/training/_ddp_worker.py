"""Worker for test_distributed: one rank of a gloo process group (importable, so `spawn` can start it)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.distributed as dist


def capture_step(model, config, datasets, steps: int) -> dict:
    """Run `steps` stage-1 steps; record the synced gradients each step, losses, and the final weights."""
    from training.modeling import Precision
    from training.trainer import MetricsLog, StageTrainer

    trainer = StageTrainer(model, 1, config.stage1, config, datasets, Precision(torch.device("cpu"), torch.float32, None),
                           MetricsLog("unused", enabled=False), "x")
    grads = []
    trainer.optimizer.register_step_pre_hook(
        lambda *_: grads.append({n: p.grad.detach().clone() for n, p in trainer.named_params}))
    model.train()
    losses = [trainer.train_step()["loss"] for _ in range(steps)]
    return {"grads": grads, "losses": losses,
            "weights": {n: p.detach().clone() for n, p in trainer.named_params}}


def build(base: str, data: dict, out: str, chunk_size: int | None):
    from encoder.testing import tiny_model
    from training.data import load_stage_data
    from training.modeling import add_lora

    from .conftest import make_config

    config = make_config(Path(base), {k: Path(v) for k, v in data.items()}, Path(out), steps=(2, 2))
    config.model.lora_dropout = 0.0  # ranks draw dropout from their own streams; the comparison needs none
    config.stage1.chunk_size = chunk_size
    config.stage1.max_grad_norm = None
    model = tiny_model("llama", seed=0)
    torch.manual_seed(0)
    add_lora(model, config.model)
    with torch.no_grad():  # non-zero B so that every LoRA matrix gets a gradient
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return copy.deepcopy(model), config, load_stage_data(config.stage1.data, 1)


def worker(rank: int, world: int, init_file: str, base: str, data: dict, tmp: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for chunk in (None, 3):
            model, config, datasets = build(base, data, f"{tmp}/unused", chunk)
            results[chunk] = capture_step(model, config, datasets, steps=2)
        torch.save(results, f"{tmp}/rank{rank}.pt")
        from training.two_stage import run

        config = build(base, data, f"{tmp}/run", None)[1]
        config.model.lora_dropout = 0.0
        run(config)
    finally:
        dist.destroy_process_group()


def _rank(rank: int, init_file: str, base: str, data: dict, tmp: str) -> None:
    worker(rank, 2, init_file, base, data, tmp)


def main(argv: list[str]) -> None:
    """Two ranks from a fresh interpreter, as torchrun starts them. Spawned from the suite's own process
    after the in-process app tests, a rank failed to import transformers (cause not pinned down)."""
    import json

    import torch.multiprocessing as mp

    init_file, base, data, tmp = argv
    mp.spawn(_rank, args=(init_file, base, json.loads(data), tmp), nprocs=2, join=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
