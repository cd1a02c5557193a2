"""One training stage: optimizer, schedule, the step loop, logging and resumable checkpoints.

Both stages run this same code with their own `StageConfig`; what differs between them is data only
(which tasks keep in-batch negatives, learning rate, steps). Each stage builds a fresh AdamW (weight decay
0 by default, i.e. Adam) with its own linear warm-up and linear decay: the paper restarts the optimizer
for stage 2.

A step: draw the global batch, keep this rank's slice, tokenize, compute InfoNCE either in one pass or
GradCache-style in chunks (`chunk_size`), average gradients across ranks, clip, step. With
`distill_weight` > 0 the loss adds the teacher term (`losses.distillation_kl`); the teacher embeds the
step's texts first. Every `log_every` steps a progress line is printed; every step appends a row to
`metrics.jsonl` (stage, step, loss, lr, tokens/s, examples/s, elapsed seconds, peak GPU memory).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from encoder import NVEmbedModel

from . import distributed, state
from .batching import BlendedSampler, batch_texts, make_batch, text_key
from .config import RunConfig, StageConfig
from .data import Dataset
from .losses import StepOutput, candidate_mask, distillation_kl, grad_cache_step, masked_info_nce, plain_step
from .modeling import Precision, encoder_fn, trainable_parameters


class Teacher(Protocol):
    """What distillation needs of a teacher: L2-normalised embeddings of plain texts."""

    def embed(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor: ...


StepHook = Callable[[int, int, float], None]  # (stage, step, loss), called after each step (and its checkpoint)


class MetricsLog:
    """Append-only JSON Lines log, written by rank 0 only."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, stage: int | str, step: int) -> None:
        """Drop rows logged after a checkpoint (stage, step): a resumed run rewrites them."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [r for r in self.read() if (state.stage_order(r.get("stage", 0)), r.get("step", 0))
                <= (state.stage_order(stage), step)]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def linear_schedule(warmup: int, total: int, decay: int | None = None) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then linear decay to zero at `total`.

    With `decay`, warm-up-stable-decay instead: the peak holds until the last `decay` steps, which decay
    linearly to zero. A run can then go on at its peak across sessions and branch a short cool-down from
    any checkpoint (the same config with `steps` = that step + `decay`) to get a finished model.
    """
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if decay is not None:
            return min(1.0, max(0.0, (total - step) / decay))
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _format_seconds(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def check_room_for_text(model: NVEmbedModel, datasets: list[Dataset], max_length: int, where: str) -> None:
    """Refuse a max_length that an instruction prefix fills: every text would embed as the same vector."""
    instructions = {e.instruction for d in datasets for e in d.examples}
    for instruction in sorted(instructions):
        used = int(model.tokenize(["x"], instruction=instruction, max_length=10**6).input_ids.shape[1]) - 2
        if used + 8 > max_length:
            raise ValueError(f"{where}.max_length {max_length} leaves fewer than 8 tokens of text after the "
                             f"instruction {instruction!r} ({used} tokens with BOS and its prefix)")


class StageTrainer:
    """Trains `model` (LoRA already added) for one stage."""

    def __init__(self, model: NVEmbedModel, number: int, stage: StageConfig, run: RunConfig,
                 datasets: list[Dataset], precision: Precision, metrics: MetricsLog,
                 start_fingerprint: str, hook: StepHook | None = None, teacher: Teacher | None = None):
        self.model, self.number, self.stage, self.run = model, number, stage, run
        self.precision, self.metrics, self.hook = precision, metrics, hook
        self.start_fingerprint = start_fingerprint
        if stage.distill_weight > 0 and teacher is None:
            raise ValueError(f"stage{number}.distill_weight is {stage.distill_weight} but no teacher was given")
        self.teacher = teacher if stage.distill_weight > 0 else None
        self.info = distributed.current()
        if stage.batch_size % self.info.world_size:
            raise ValueError(f"stage{number}.batch_size {stage.batch_size} is not divisible by the "
                             f"{self.info.world_size} processes")
        self.named_params = trainable_parameters(model)
        self.params = [p for _, p in self.named_params]
        distributed.broadcast_parameters(self.params)
        self.optimizer = torch.optim.AdamW(self.params, lr=stage.learning_rate, weight_decay=stage.weight_decay)
        self.budget_s = stage.max_minutes * 60 if stage.max_minutes else None
        self.elapsed_s = 0.0  # training time spent in this stage, across resumes (the budget counts it)
        by_steps = linear_schedule(stage.warmup_steps, stage.steps, stage.decay_steps)

        def factor(step: int) -> float:  # with a time budget the decay reaches zero when the budget is spent
            if self.budget_s is None or step < stage.warmup_steps:
                return by_steps(step)
            return min(by_steps(step), max(0.0, 1.0 - self.elapsed_s / self.budget_s))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.sampler = self.make_sampler(datasets)
        self.encode = encoder_fn(model, precision)
        self.step = 0

    def make_sampler(self, datasets: list[Dataset]) -> BlendedSampler:
        """The step's data source (its `state_dict` goes into checkpoints); pre-stages override it."""
        check_room_for_text(self.model, datasets, self.stage.max_length, f"stage{self.number}")
        return BlendedSampler(datasets, self.stage.batch_size, self.stage.num_negatives,
                              seed=self.run.seed + 1000 * self.number)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "trainable": {n: p.detach().cpu().clone() for n, p in self.named_params},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "fingerprint": self.start_fingerprint,
            "world_size": self.info.world_size,
            "elapsed_s": self.elapsed_s,
        }

    def save_checkpoint(self) -> None:
        path = state.checkpoint_dir(self.run.output_dir, self.number, self.step)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(state.rng_state(), path / f"rng-rank{self.info.rank}.pt")  # each rank its own dropout stream
        distributed.barrier()
        if self.info.is_main:
            state.save(self.run.output_dir, self.number, self.step, self.state_dict(), self.run.keep_checkpoints)
        distributed.barrier()

    def load_checkpoint(self, path: Path) -> None:
        saved = state.load(path)
        state.check_identity(saved["fingerprint"], self.start_fingerprint, f"stage {self.number}'s starting model")
        if saved["world_size"] != self.info.world_size:
            raise state.ResumeError(f"{path} was written by {saved['world_size']} processes; this run has "
                                    f"{self.info.world_size} (the data order per rank would differ)")
        names = {n for n, _ in self.named_params}
        if set(saved["trainable"]) != names:
            raise state.ResumeError(f"{path}: trainable parameters differ from this run's (other LoRA settings?)")
        with torch.no_grad():
            for name, param in self.named_params:
                param.copy_(saved["trainable"][name].to(param.device))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.sampler.load_state_dict(saved["sampler"])
        self.step = int(saved["step"])
        self.elapsed_s = float(saved.get("elapsed_s", 0.0))
        state.set_rng_state(torch.load(path / f"rng-rank{self.info.rank}.pt", weights_only=False))

    # ------------------------------------------------------------------ steps

    def _loss_fn(self, batch, items) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        owner = distributed.gather(batch.owner)
        keys = distributed.gather(batch.passage_keys)
        stage = self.stage
        teacher_q = teacher_p_local = teacher_p = None
        if self.teacher is not None:
            query_texts, passage_texts = batch_texts(items)
            teacher_q = self.teacher.embed(query_texts, stage.max_length).to(self.precision.device)
            teacher_p_local = self.teacher.embed(passage_texts, stage.max_length).to(self.precision.device)
            teacher_p = distributed.gather(teacher_p_local)
            query_keys = torch.tensor([text_key(t) for t in query_texts], dtype=torch.long, device=keys.device)

        def loss_fn(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            passages, offset = distributed.gather_with_grad(p)
            positive = batch.positive + offset
            allowed = candidate_mask(passages.shape[0], positive, owner, batch.query_ids, batch.in_batch, keys)
            loss = masked_info_nce(q, passages, positive, allowed, stage.temperature)
            if teacher_q is None:
                return loss
            if stage.distill_target == "candidates":
                term = distillation_kl(q, passages, teacher_q, teacher_p, allowed, stage.temperature,
                                       stage.teacher_temperature)
            else:  # every text of the batch (this rank's queries and passages) against every other text
                rows_keys = torch.cat([query_keys, batch.passage_keys])
                cols_keys = torch.cat([query_keys, keys])
                others = rows_keys.unsqueeze(1) != cols_keys.unsqueeze(0)  # not itself, nor a copy of itself
                others &= torch.cat([torch.ones_like(query_keys, dtype=torch.bool), owner >= 0]).unsqueeze(0)
                term = distillation_kl(torch.cat([q, p]), torch.cat([q, passages]),
                                       torch.cat([teacher_q, teacher_p_local]), torch.cat([teacher_q, teacher_p]),
                                       others, stage.temperature, stage.teacher_temperature)
            return loss + stage.distill_weight * term
        return loss_fn

    def train_step(self) -> dict[str, Any]:
        started = time.perf_counter()
        items = self.sampler.next_batch()
        local = self.stage.batch_size // self.info.world_size
        first = self.info.rank * local
        mine = items[first : first + local]
        batch = make_batch(self.model, mine, first, self.stage.in_batch_tasks,
                           self.stage.max_length).to(self.precision.device)
        loss_fn = self._loss_fn(batch, mine)
        chunk = self.stage.chunk_size
        rows = max(batch.queries.input_ids.shape[0], batch.passages.input_ids.shape[0])
        if chunk is not None and chunk < rows:
            out = grad_cache_step(self.encode, batch.queries, batch.passages, loss_fn, chunk)
        else:
            out = plain_step(self.encode, batch.queries, batch.passages, loss_fn)
        return self.finish_step(out, started)

    def finish_step(self, out: StepOutput, started: float) -> dict[str, Any]:
        """After the backward pass: average gradients across ranks, clip, step, and the step's metrics record."""
        distributed.all_reduce_gradients(self.params)
        grad_norm = None
        if self.stage.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.stage.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        totals = torch.tensor([out.loss.item(), out.num_tokens], dtype=torch.float64, device=self.precision.device)
        if self.info.enabled:
            torch.distributed.all_reduce(totals)
            totals[0] /= self.info.world_size
        seconds = time.perf_counter() - started
        record = {"stage": self.number, "step": self.step, "loss": float(totals[0]), "lr": lr,
                  "tokens_per_s": float(totals[1]) / seconds, "examples_per_s": self.stage.batch_size / seconds,
                  "step_seconds": seconds, "grad_norm": grad_norm}
        if self.precision.device.type == "cuda":
            record["peak_memory_gb"] = torch.cuda.max_memory_allocated(self.precision.device) / 1e9
        return record

    def out_of_time(self) -> bool:
        """The stage's `max_minutes` budget is spent (ranks agree: rank 0's clock decides)."""
        if self.budget_s is None:
            return False
        spent = torch.tensor([float(self.elapsed_s >= self.budget_s)], device=self.precision.device)
        if self.info.enabled:
            torch.distributed.broadcast(spent, src=0)
        return bool(spent.item())

    def train(self, resume_from: Path | None = None) -> list[dict[str, Any]]:
        """Run the remaining steps of the stage; return their metric records."""
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            self.metrics.truncate_after(self.number, self.step)
            if self.info.is_main:
                print(f"[stage {self.number}] resumed from {resume_from} at step {self.step}", flush=True)
        self.model.train()
        records = []
        started = time.perf_counter()
        done_here = 0
        while self.step < self.stage.steps and not self.out_of_time():
            before = time.perf_counter()
            record = self.train_step()
            self.elapsed_s += time.perf_counter() - before
            done_here += 1
            elapsed = time.perf_counter() - started
            record["elapsed_s"] = elapsed
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"stage {self.number} step {self.step}: loss is {record['loss']}")
            self.metrics.write(record)
            records.append(record)
            last = self.step == self.stage.steps or self.out_of_time()
            if self.info.is_main and (self.step % self.run.log_every == 0 or last):
                eta = elapsed / done_here * (self.stage.steps - self.step)
                if self.budget_s is not None:
                    eta = min(eta, max(0.0, self.budget_s - self.elapsed_s))
                print(f"[stage {self.number}] step {self.step}/{self.stage.steps} | loss {record['loss']:.4f} | "
                      f"lr {record['lr']:.2e} | {record['tokens_per_s']:.0f} tok/s | "
                      f"{record['examples_per_s']:.2f} ex/s | {_format_seconds(elapsed)} elapsed, "
                      f"eta {_format_seconds(eta)}", flush=True)
            if self.run.save_every and self.step % self.run.save_every == 0 and not last:
                self.save_checkpoint()
            if self.hook is not None:
                self.hook(self.number, self.step, record["loss"])
        self.model.eval()
        return records
