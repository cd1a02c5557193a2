"""The trainer: the loss goes down in both stages; data parallelism matches one process (see test_distributed)."""

from __future__ import annotations

import copy

import torch

from training.batching import BlendedSampler, make_batch
from training.config import RunConfig
from training.data import Dataset, load_stage_data
from training.losses import info_nce
from training.modeling import Precision, add_lora, encoder_fn
from training.trainer import MetricsLog, StageTrainer, linear_schedule

from .conftest import make_config

CPU = Precision(torch.device("cpu"), torch.float32, None)


def held_out_loss(model, datasets: list[Dataset], in_batch_tasks: list[str], temperature: float) -> float:
    """Loss on fixed batches (sampler seed 999, never used for training), without dropout."""
    sampler = BlendedSampler(datasets, batch_size=16, num_negatives=2, seed=999)
    encode = encoder_fn(model, CPU)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for _ in range(3):
            b = make_batch(model, sampler.next_batch(), 0, in_batch_tasks, max_length=64)
            q, p = encode(b.queries), encode(b.passages)
            total += info_nce(q, p, b.positive, b.owner, b.query_ids, b.in_batch, temperature, b.passage_keys).item()
    return total / 3


def train_stage(model, config: RunConfig, number: int, tmp_path) -> tuple[float, float]:
    stage = config.stage(number)
    datasets = load_stage_data(stage.data, number)
    before = held_out_loss(model, datasets, stage.in_batch_tasks, stage.temperature)
    trainer = StageTrainer(model, number, stage, config, datasets, CPU, MetricsLog(tmp_path / "m.jsonl"), "x")
    records = trainer.train()
    assert [r["step"] for r in records] == list(range(1, stage.steps + 1))
    assert all(r["tokens_per_s"] > 0 and r["examples_per_s"] > 0 for r in records)
    return before, held_out_loss(model, datasets, stage.in_batch_tasks, stage.temperature)


def test_loss_decreases_in_both_stages(_tiny, tiny_base, data_files, tmp_path):
    """Each stage's configuration (stage 1: in-batch + hard negatives; stage 2: blend, hard negatives only)
    learns the synthetic task from a fresh model: held-out loss at least 20% lower after 20 steps."""
    config = make_config(tiny_base, data_files, tmp_path / "run", steps=(20, 20))
    for number in (1, 2):
        model = copy.deepcopy(_tiny)
        stage = config.stage(number)
        stage.temperature, stage.learning_rate = 0.05, 1e-3
        add_lora(model, config.model)
        before, after = train_stage(model, config, number, tmp_path)
        assert after < 0.8 * before, (number, before, after)


def test_schedule_warms_up_then_decays_to_zero():
    factor = linear_schedule(warmup=2, total=6)
    assert [round(factor(s), 3) for s in range(6)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    assert factor(6) == 0.0


def test_stage2_gets_a_fresh_optimizer(tiny, tiny_base, data_files, tmp_path):
    config = make_config(tiny_base, data_files, tmp_path / "run", steps=(2, 2))
    add_lora(tiny, config.model)
    first = StageTrainer(tiny, 1, config.stage1, config, load_stage_data(config.stage1.data, 1), CPU,
                         MetricsLog(tmp_path / "m.jsonl"), "x")
    first.train()
    second = StageTrainer(tiny, 2, config.stage2, config, load_stage_data(config.stage2.data, 2), CPU,
                          MetricsLog(tmp_path / "m.jsonl"), "x")
    assert second.optimizer is not first.optimizer and not second.optimizer.state
    assert second.scheduler.get_last_lr()[0] == config.stage2.learning_rate / config.stage2.warmup_steps
