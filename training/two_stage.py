"""`python -m training.two_stage`: NV-Embed's two-stage contrastive instruction tuning, end to end.

    stage 1: retrieval data, in-batch + hard negatives   -> output_dir/stage1/  (encoder checkpoint)
    stage 2: retrieval + classification/clustering/STS, hard negatives only, fresh optimizer
                                                         -> output_dir/stage2/
    evaluation after each stage (and optionally of the base) -> metrics.jsonl, results.json, results.md

Optionally LLM2Vec's unsupervised stages run first, on plain texts (`stages: [mntp, simcse, 1, 2]`,
training/llm2vec.py): MNTP -> output_dir/mntp/, SimCSE -> output_dir/simcse/; stage 1 starts from the last.

Everything that can be checked without training is checked first, in this order: the config, every data
file (all malformed lines reported with file:line), the stage-2 blend, the base architecture, the output
directory, and on `--resume` the identity of the model against the checkpoint. Only then does a step run.
Under `torchrun` every rank runs this same function; rank 0 writes files and evaluates.
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel

from encoder import NVEmbedModel
from encoder.checkpoint import iter_tensors

from . import distributed, state
from .config import ConfigError, RunConfig, parse
from .data import DataError, load_stage_data
from .evaluate import evaluate_model, format_table
from .llm2vec import base_path, check_lm_head, make_trainer, stage_seed
from .modeling import (
    Precision,
    check_base,
    enable_checkpointing,
    has_lora,
    load_base,
    prepare_trainable,
    resolve_device,
    resolve_precision,
    save_stage,
)
from .state import stage_label
from .text_data import load_texts
from .trainer import MetricsLog, StageTrainer, StepHook

RUN_FILE = "run.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunState:
    """`run.json`: the config, the base's fingerprint, finished stages and evaluations (rank 0 writes)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def save(self) -> None:
        if self.enabled:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2))
            tmp.replace(self.path)

    @property
    def completed(self) -> list[int]:
        return self.data.setdefault("completed", [])


def _prepare_output(config: RunConfig, main: bool) -> Path:
    out = Path(config.output_dir)
    existing = distributed.broadcast_object(bool((out / RUN_FILE).is_file() or state.list_checkpoints(out)))
    if existing and not config.resume:
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --output-dir")
    if main:
        out.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    return out


def _load_all_data(config: RunConfig) -> dict[int | str, Any]:
    """Each stage's data: data sets for stages 1 and 2, the pooled plain texts for a pre-stage."""
    return {number: load_texts(config.stage(number).data) if isinstance(number, str)
            else load_stage_data(config.stage(number).data, number) for number in config.stages}


def _evaluate(label: str, model, config: RunConfig, precision: Precision, run: RunState, metrics: MetricsLog,
              stage: int | str) -> None:
    info = distributed.current()
    if info.is_main and config.eval.at_stage_end and (config.eval.beir or config.eval.sts or config.eval.banking77):
        print(f"[eval] {label} ...", flush=True)
        results = evaluate_model(model, config.eval, precision.context())
        run.data.setdefault("evaluations", {})[label] = results
        run.save()
        metrics.write({"stage": stage, "step": config.stage(stage).steps if stage else 0, "eval": label,
                       "results": results})
        print(format_table({label: results}), flush=True)
    distributed.barrier()


def run(config: RunConfig, hook: StepHook | None = None) -> dict[str, Any]:
    """Run the configured stages; return run.json's content (evaluations included)."""
    device_type = "cuda" if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    info = distributed.init_from_env(device_type)
    device = resolve_device(config.device, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = resolve_precision(config.model, device)
    datasets = _load_all_data(config)  # every data problem before any model is loaded
    check_base(config.model.base)
    if "mntp" in config.stages:
        check_lm_head(base_path(config))
    out = _prepare_output(config, info.is_main)
    run_state = RunState(out / RUN_FILE, info.is_main)
    metrics = MetricsLog(out / "metrics.jsonl", info.is_main)
    checkpoints = state.list_checkpoints(out) if config.resume else []

    seed_everything(config.seed)
    model = load_base(config.model, precision)
    base_fingerprint = model.fingerprint
    if "base_fingerprint" in run_state.data:
        state.check_identity(run_state.data["base_fingerprint"], base_fingerprint, f"base {config.model.base!r}")
    run_state.data.update({"config": config.to_dict(), "base": config.model.base, "base_fingerprint": base_fingerprint})
    run_state.save()
    if info.is_main:
        trainable = sum(p.numel() for p in model.latent_attention_model.parameters())
        print(f"[run] base {config.model.base} ({model.num_layers} layers, d={model.dimension}, "
              f"fingerprint {base_fingerprint}) on {device}, weights {precision.weights}, world size {info.world_size}; "
              f"latent layer {trainable / 1e6:.1f}M parameters", flush=True)
    if config.eval.base and "base" not in run_state.data.get("evaluations", {}):
        _evaluate("base", model, config, precision, run_state, metrics, 0)

    checkpointing = config.model.gradient_checkpointing
    if checkpointing is None:
        checkpointing = device.type == "cuda"
    teacher = None
    for number in config.stages:
        stage_dir = out / stage_label(number)
        if number in run_state.completed:
            if info.is_main:
                print(f"[stage {number}] already complete in {stage_dir}", flush=True)
            del model
            model = reload_stage(config, precision, stage_dir)
            continue
        origin = stage_origin(config, run_state.completed, number)
        if origin is not None and origin not in config.stages:  # stage 1 finished by an earlier config
            del model
            model = reload_stage(config, precision, out / stage_label(origin))
        start_fingerprint = begin_stage(model, config, number)
        pre_stage = isinstance(number, str)
        if checkpointing:
            enable_checkpointing(model)
        if pre_stage:  # LLM2Vec's MNTP / SimCSE on plain texts (training/llm2vec.py)
            trainer = make_trainer(number, model, config, datasets[number], precision, metrics, start_fingerprint,
                                   hook)
        else:
            if config.stage(number).distill_weight > 0 and teacher is None:
                from .teacher import MiniLMTeacher  # loaded only when distilling, once for both stages
                teacher = MiniLMTeacher(device)
            stage_teacher = teacher
            if config.stage(number).teacher_cache:
                from .teacher_cache import CachedTeacher
                stage_teacher = CachedTeacher(config.stage(number).teacher_cache, teacher,
                                              config.stage(number).max_length)
            trainer = StageTrainer(model, number, config.stage(number), config, datasets[number], precision,
                                   metrics, start_fingerprint, hook, stage_teacher)
        resume_from = next((path for s, _, path in reversed(checkpoints) if s == number), None)
        if info.is_main:
            sets = f"{len(datasets[number])} texts" if pre_stage else \
                ", ".join(f"{d.name} ({len(d.examples)})" for d in datasets[number])
            trainable = sum(p.numel() for p in trainer.params)
            budget = config.stage(number).max_minutes
            limit = f" or {budget:g} min" if budget else ""
            print(f"[stage {number}] {config.stage(number).steps} steps{limit}, batch {config.stage(number).batch_size}, "
                  f"{trainable / 1e6:.2f}M trainable parameters; data: {sets}", flush=True)
        trainer.train(resume_from)
        if info.is_main:
            metadata = {"name": f"{Path(config.model.base).name}-{stage_label(number)}", "stage": number,
                        "base": config.model.base, "steps": trainer.step,
                        "train_seconds": round(trainer.elapsed_s, 1)}
            save_stage(model, stage_dir, metadata, keep_adapter=not config.model.merge_lora)
            print(f"[stage {number}] saved {stage_dir}", flush=True)
        distributed.barrier()
        del trainer, model
        # Continue from (and evaluate) exactly what was saved, so a resumed run starts stage 2 from the
        # same weights as an uninterrupted one.
        model = reload_stage(config, precision, stage_dir)
        run_state.completed.append(number)
        run_state.save()
        if info.is_main:
            for s, _, path in state.list_checkpoints(out):
                if s == number:
                    shutil.rmtree(path, ignore_errors=True)
        _evaluate(stage_label(number), model, config, precision, run_state, metrics, number)

    evaluations = run_state.data.get("evaluations", {})
    if info.is_main and evaluations:
        table = format_table(evaluations)
        (out / "results.md").write_text(table + "\n")
        (out / "results.json").write_text(json.dumps(evaluations, indent=2))
        print("\n" + table, flush=True)
    return run_state.data


def stage_origin(config: RunConfig, completed: Sequence[int | str], number: int | str) -> int | str | None:
    """The stage whose saved result stage `number` starts from (None: the base).

    The stage before it in `config.stages`; for a run configured with stage 2 alone, stage 1 when an earlier
    invocation of the same output directory completed it.
    """
    index = config.stages.index(number)
    if index:
        return config.stages[index - 1]
    if number == 2 and 1 in completed:
        return 1
    return None


def begin_stage(model: NVEmbedModel, config: RunConfig, number: int | str) -> str:
    """Mark what stage `number` trains (LoRA added with the stage's seed, or the full linear weights);
    return the fingerprint of the model the stage starts from (its checkpoints' identity)."""
    start_fingerprint = model.fingerprint
    if not has_lora(model):
        seed_everything(config.seed + (stage_seed(number) if isinstance(number, str) else number))
        prepare_trainable(model, config.model)
    return start_fingerprint


def stage_start_model(config: RunConfig, precision: Precision, out: Path, completed: Sequence[int | str],
                      number: int | str) -> tuple[NVEmbedModel, str]:
    """The model stage `number` of the run in `out` starts from, built as `run` builds it (the base,
    truncated and latent-initialised as configured, or the previous stage's saved result), then prepared
    by `begin_stage` (its trainable parameters are exactly those of the stage's checkpoints), and the
    fingerprint the stage's checkpoints name."""
    origin = stage_origin(config, completed, number)
    if origin is None:
        seed_everything(config.seed)
        model = load_base(config.model, precision)
    else:
        model = reload_stage(config, precision, out / stage_label(origin))
    return model, begin_stage(model, config, number)


def reload_stage(config: RunConfig, precision: Precision, stage_dir: Path) -> NVEmbedModel:
    """A finished stage's model: its merged checkpoint, or the base plus its adapter when kept apart."""
    gc.collect()
    if precision.device.type == "cuda":
        torch.cuda.empty_cache()
    if config.model.merge_lora:
        return load_base(config.model, precision, path=str(stage_dir))
    model = load_base(config.model, precision)
    with warnings.catch_warnings():  # peft calls transformers' deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", category=FutureWarning)
        model.embedding_model = PeftModel.from_pretrained(model.embedding_model, str(stage_dir / "adapter"),
                                                          is_trainable=True)
    latent = {k.removeprefix("latent_attention_model."): v for k, v in iter_tensors(stage_dir)
              if k.startswith("latent_attention_model.")}
    model.latent_attention_model.load_state_dict(latent)
    model.eval()
    model._fingerprint = None
    return model


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse(argv, description=__doc__.split("\n")[0])
        run(config)
    except (ConfigError, DataError, state.ResumeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
