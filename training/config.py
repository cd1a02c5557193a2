"""The run configuration: dataclasses with the paper's defaults, read from YAML/JSON, overridden from the CLI.

One `RunConfig` describes a whole two-stage run. Stage 1 and stage 2 are two `StageConfig` sections of
the same type (same code path, different values): the paper's recipe is that stage 1 keeps in-batch
negatives for retrieval examples and stage 2 drops them, with a restarted optimizer and its own warm-up.

Precedence: dataclass defaults < `--config FILE` (YAML or JSON) < shorthand flags (`--base`,
`--stage1-steps`, ...) < `--set section.key=value` (any field; the value is parsed as YAML, so
`--set stage2.in_batch_tasks=[retrieval]` and `--set model.num_layers=null` work). An unknown key is an
error that names it, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

TASKS = ("retrieval", "classification", "clustering", "sts")
FINETUNE_MODES = ("lora", "full")
LATENT_INITS = ("random", "mean")
DISTILL_TARGETS = ("candidates", "all_texts")
PRE_STAGES = ("mntp", "simcse")  # LLM2Vec stages (training/llm2vec.py), run in this order before stage 1
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ConfigError(ValueError):
    """A configuration value that cannot be used; raised before any model is loaded."""


@dataclass
class ModelConfig:
    base: str = "default"  # NV-Embed checkpoint dir, plain HF decoder dir (llama/mistral/qwen2), or "default"
    num_layers: int | None = None  # keep only the first N decoder layers (small CPU runs); None = all
    dtype: str = "auto"  # auto: bf16 weights + autocast on CUDA, float32 on CPU; or float32 / bfloat16
    attn_implementation: str = "auto"  # auto: flash_attention_2 when installed on CUDA, else sdpa
    gradient_checkpointing: bool | None = None  # None = on for CUDA, off for CPU
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # backbone linear layers
    merge_lora: bool = True  # merge LoRA into the backbone at each stage end (False: keep the adapter apart)
    latent: dict[str, Any] | None = None  # latent-layer size overrides for a plain-decoder base
    latent_seed: int = 0  # seed of a fresh latent layer
    finetune: str = "lora"  # lora: LoRA adapters on lora_targets; full: every decoder-layer linear weight
    latent_init: str = "random"  # fresh latent layer: random, or "mean" (residual outputs zeroed: starts as mean pooling)
    train_latent: bool = True  # False keeps the latent layer as loaded (with latent_init=mean: a mean-pooling control)


@dataclass
class StageConfig:
    data: list[str] = field(default_factory=list)  # JSONL files (training/data.py format); one data set each
    steps: int = 1000
    batch_size: int = 128  # queries per optimizer step (all ranks together)
    num_negatives: int = 7  # hard negatives per query, sampled from each example's list
    learning_rate: float = 2e-5
    warmup_steps: int = 50  # linear warm-up, then linear decay to zero
    decay_steps: int | None = None  # set: the peak holds, and only the last decay_steps decay (warm-up-stable-decay)
    weight_decay: float = 0.0  # 0 = Adam, as in the paper
    max_grad_norm: float | None = 1.0
    temperature: float = 0.02  # InfoNCE temperature (E5-Mistral's; the paper does not state NV-Embed's)
    in_batch_tasks: list[str] = field(default_factory=lambda: ["retrieval"])  # tasks that use in-batch negatives
    chunk_size: int | None = None  # texts per forward pass; smaller than the batch = GradCache accumulation
    max_length: int = 512
    distill_weight: float = 0.0  # weight of the teacher term (losses.distillation_kl); 0 = InfoNCE only
    teacher_temperature: float = 0.05  # softmax temperature of the teacher's cosine scores
    distill_target: str = "candidates"  # candidates: each query's InfoNCE candidates; all_texts: every text of the batch
    teacher_cache: str | None = None  # .npz of teacher embeddings by text (training.teacher_cache); misses computed
    max_minutes: float | None = None  # wall-time budget: the stage ends when it is spent (the schedule follows it)


@dataclass
class MNTPConfig:
    """LLM2Vec's masked next-token prediction on the bidirectional backbone (training/llm2vec.py)."""

    data: list[str] = field(default_factory=list)  # plain texts: .txt (one per line) or .jsonl ("text", or examples)
    steps: int = 1000  # LLM2Vec: about 1,000 steps
    batch_size: int = 32  # texts per optimizer step (all ranks together)
    learning_rate: float = 5e-5  # LLM2Vec's MNTP learning rate
    warmup_steps: int = 50
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    max_length: int = 512
    mask_probability: float = 0.2  # fraction of text tokens chosen (LLM2Vec: 0.2 for small models); 80/10/10
    mask_token: str = "auto"  # auto: the tokenizer's mask token, else its unk token, else "_"; or a token string
    max_minutes: float | None = None  # wall-time budget, as for the contrastive stages


@dataclass
class SimCSEConfig:
    """LLM2Vec's unsupervised SimCSE: two dropout views of a text are the positive pair (training/llm2vec.py)."""

    data: list[str] = field(default_factory=list)  # plain texts, as for mntp
    steps: int = 1000
    batch_size: int = 64  # texts per step; the other texts of the batch are the negatives
    learning_rate: float = 3e-5  # LLM2Vec's SimCSE learning rate
    warmup_steps: int = 50
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    max_length: int = 128
    temperature: float = 0.05  # LLM2Vec / SimCSE (scale 20)
    attention_dropout: float = 0.3  # set on every attention module for this stage (SmolLM2 ships 0.0)
    lora_dropout: float | None = None  # LoRA dropout during this stage; None keeps model.lora_dropout
    chunk_size: int | None = None  # texts per forward pass (GradCache), as in the contrastive stages
    max_minutes: float | None = None  # wall-time budget, as for the contrastive stages


@dataclass
class EvalConfig:
    beir: list[str] = field(default_factory=list)  # BEIR-layout directories (corpus, queries, qrels/test.tsv)
    instruction: str | None = None  # query instruction for BEIR sets (None: the generic retrieval one)
    max_queries: int | None = None  # subset for CPU runs (every judged document of those queries is kept)
    max_docs: int | None = None
    sts: str | None = None  # STS-B file (tab-separated, score in column 5)
    banking77: str | None = None  # directory with train.csv / test.csv
    max_train: int | None = None  # classification training examples (subset)
    max_test: int | None = None
    classifier: str = "logreg"  # logreg or knn
    batch_size: int = 32
    max_length: int = 512
    at_stage_end: bool = True
    base: bool = False  # also evaluate the untrained base before stage 1


@dataclass
class RunConfig:
    output_dir: str = "runs/two-stage"
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N (under torchrun each rank takes cuda:LOCAL_RANK)
    stages: list[int | str] = field(default_factory=lambda: [1, 2])  # optionally mntp, simcse first
    save_every: int = 0  # steps between resumable checkpoints (0: only at stage ends)
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = False  # continue from the latest checkpoint in output_dir
    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(
        default_factory=lambda: StageConfig(learning_rate=1.5e-5, in_batch_tasks=[])
    )
    mntp: MNTPConfig = field(default_factory=MNTPConfig)
    simcse: SimCSEConfig = field(default_factory=SimCSEConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def stage(self, number: int | str) -> Any:
        """The section of a stage: StageConfig for 1 and 2, MNTPConfig / SimCSEConfig for "mntp" / "simcse"."""
        return {1: self.stage1, 2: self.stage2, "mntp": self.mntp, "simcse": self.simcse}[number]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- reading


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and lightly convert) a value against a field's type hint; raise ConfigError naming the key."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _coerce(value, rest[0], key)
    if origin is list:
        if isinstance(value, str | int | float):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _update(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; known: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a section (mapping), got {value!r}")
            _update(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def read_file(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML or JSON config file as a dict (JSON is valid YAML, but `.json` gets JSON's error messages).

    A top-level `extends: OTHER.yaml` (relative to this file) starts from OTHER's settings: sections merge
    key by key, and any other value, a list included, replaces OTHER's. A leg of the long run is then only
    what changed from the leg before.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    if "extends" not in data:
        return data
    parent = data.pop("extends")
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a file name, got {parent!r}")
    chain = (*_chain, path.resolve())
    parent_path = (path.parent / parent).resolve()
    if parent_path in chain:
        raise ConfigError(f"{path}: extends {parent} makes a cycle ({' -> '.join(p.name for p in chain)})")
    return _merge(read_file(parent_path, chain), data)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def set_dotted(config: RunConfig, assignment: str) -> None:
    """Apply one `section.key=value` override (value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
    dotted, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    node: dict[str, Any] = {}
    cursor = node
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    _update(config, node)


def from_dict(data: dict[str, Any]) -> RunConfig:
    config = RunConfig()
    _update(config, data)
    return config


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The shorthand flags of `python -m training.two_stage` (everything else through --set)."""
    parser.add_argument("--config", help="YAML or JSON file with sections model, stage1, stage2, eval")
    parser.add_argument("--base", help="base model: NV-Embed dir, HF decoder dir (llama/mistral/qwen2) or 'default'")
    parser.add_argument("--num-layers", type=int, help="keep only the first N decoder layers (small CPU runs)")
    parser.add_argument("--stage1-data", nargs="+", metavar="JSONL", help="stage-1 training files (retrieval)")
    parser.add_argument("--stage2-data", nargs="+", metavar="JSONL", help="stage-2 training files (blend)")
    parser.add_argument("--mntp-data", nargs="+", metavar="FILE", help="plain texts for the MNTP stage")
    parser.add_argument("--simcse-data", nargs="+", metavar="FILE", help="plain texts for the SimCSE stage")
    parser.add_argument("--output-dir")
    parser.add_argument("--stage1-steps", type=int)
    parser.add_argument("--stage2-steps", type=int)
    parser.add_argument("--batch-size", type=int, help="queries per step, both stages")
    parser.add_argument("--num-negatives", type=int, help="hard negatives per query, both stages")
    parser.add_argument("--chunk-size", type=int, help="texts per forward chunk (GradCache), both stages")
    parser.add_argument("--max-length", type=int, help="token limit, both stages and evaluation")
    parser.add_argument("--temperature", type=float, help="InfoNCE temperature, both stages")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--stages", help="which stages to run: 1, 2 or 1,2; mntp and simcse may come first")
    parser.add_argument("--save-every", type=int, help="steps between resumable checkpoints")
    parser.add_argument("--log-every", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--eval-beir", nargs="+", metavar="DIR", help="BEIR-layout directories to evaluate")
    parser.add_argument("--eval-max-queries", type=int)
    parser.add_argument("--eval-max-docs", type=int)
    parser.add_argument("--eval-sts", metavar="FILE", help="STS-B test file")
    parser.add_argument("--eval-banking77", metavar="DIR", help="Banking77 directory (train.csv, test.csv)")
    parser.add_argument("--eval-base", action="store_true", help="also evaluate the base before training")
    parser.add_argument("--no-eval", action="store_true", help="no evaluation at stage ends")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any field, e.g. --set stage1.learning_rate=1e-4 (repeatable)")


def from_args(args: argparse.Namespace) -> RunConfig:
    config = from_dict(read_file(args.config)) if args.config else RunConfig()
    both = {"batch_size": args.batch_size, "num_negatives": args.num_negatives, "chunk_size": args.chunk_size,
            "max_length": args.max_length, "temperature": args.temperature}
    flat: dict[str, Any] = {
        "model.base": args.base, "model.num_layers": args.num_layers,
        "stage1.data": args.stage1_data, "stage2.data": args.stage2_data,
        "mntp.data": args.mntp_data, "simcse.data": args.simcse_data,
        "stage1.steps": args.stage1_steps, "stage2.steps": args.stage2_steps,
        "output_dir": args.output_dir, "device": args.device, "seed": args.seed,
        "save_every": args.save_every, "log_every": args.log_every,
        "eval.beir": args.eval_beir, "eval.max_queries": args.eval_max_queries,
        "eval.max_docs": args.eval_max_docs, "eval.sts": args.eval_sts, "eval.banking77": args.eval_banking77,
        "eval.max_length": args.max_length,
    }
    for key, value in both.items():
        flat[f"stage1.{key}"] = value
        flat[f"stage2.{key}"] = value
    if args.stages:
        names = [s.strip() for s in str(args.stages).split(",") if s.strip()]
        flat["stages"] = [int(s) if s.isdigit() else s for s in names]
    if args.resume:
        flat["resume"] = True
    if args.eval_base:
        flat["eval.base"] = True
    if args.no_eval:
        flat["eval.at_stage_end"] = False
    for dotted, value in flat.items():
        if value is not None:
            section, _, key = dotted.rpartition(".")
            _update(config, {section: {key: value}} if section else {key: value})
    for assignment in args.set:
        set_dotted(config, assignment)
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Check values that need no data or model: raise ConfigError naming the field."""
    _validate_stage_list(config.stages)
    _validate_pre_stages(config)
    for number in (s for s in config.stages if isinstance(s, int)):
        stage, name = config.stage(number), f"stage{number}"
        if not stage.data:
            raise ConfigError(f"{name}.data is empty: give --{name}-data FILE.jsonl [...]")
        for path in stage.data:
            if not Path(path).is_file():
                raise ConfigError(f"{name}.data: file not found: {path}")
        positive = {"steps": stage.steps, "batch_size": stage.batch_size, "max_length": stage.max_length}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name}.{key} must be at least 1, got {value}")
        if stage.max_length < 8:
            raise ConfigError(f"{name}.max_length must be at least 8, got {stage.max_length}")
        if stage.num_negatives < 0 or stage.warmup_steps < 0:
            raise ConfigError(f"{name}: num_negatives and warmup_steps must not be negative")
        if stage.decay_steps is not None and not 0 < stage.decay_steps <= stage.steps - stage.warmup_steps:
            raise ConfigError(f"{name}.decay_steps {stage.decay_steps} must be between 1 and steps - warmup_steps "
                              f"({stage.steps - stage.warmup_steps})")
        if stage.chunk_size is not None and stage.chunk_size < 1:
            raise ConfigError(f"{name}.chunk_size must be at least 1 (or null), got {stage.chunk_size}")
        if stage.temperature <= 0 or stage.learning_rate <= 0:
            raise ConfigError(f"{name}: temperature and learning_rate must be positive")
        if stage.distill_weight < 0 or stage.teacher_temperature <= 0:
            raise ConfigError(f"{name}: distill_weight must not be negative and teacher_temperature must be positive")
        if stage.distill_target not in DISTILL_TARGETS:
            raise ConfigError(f"{name}.distill_target must be one of {', '.join(DISTILL_TARGETS)}, "
                              f"got {stage.distill_target!r}")
        if stage.max_minutes is not None and stage.max_minutes <= 0:
            raise ConfigError(f"{name}.max_minutes must be positive (or null), got {stage.max_minutes}")
        if stage.teacher_cache is not None and stage.distill_weight == 0:
            raise ConfigError(f"{name}.teacher_cache is set but distill_weight is 0: the cache would not be used")
        unknown = [t for t in stage.in_batch_tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"{name}.in_batch_tasks: unknown task {unknown[0]!r}; tasks: {', '.join(TASKS)}")
    model = config.model
    if model.num_layers is not None and model.num_layers < 1:
        raise ConfigError(f"model.num_layers must be at least 1, got {model.num_layers}")
    if model.finetune not in FINETUNE_MODES:
        raise ConfigError(f"model.finetune must be one of {', '.join(FINETUNE_MODES)}, got {model.finetune!r}")
    if model.latent_init not in LATENT_INITS:
        raise ConfigError(f"model.latent_init must be one of {', '.join(LATENT_INITS)}, got {model.latent_init!r}")
    if model.lora_r < 1 or not model.lora_targets:
        raise ConfigError("model.lora_r must be at least 1 and model.lora_targets non-empty")
    if not 0 <= model.lora_dropout < 1:
        raise ConfigError(f"model.lora_dropout must be in [0, 1), got {model.lora_dropout}")
    if model.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"model.dtype must be auto, float32 or bfloat16, got {model.dtype!r}")
    if config.eval.classifier not in ("logreg", "knn"):
        raise ConfigError(f"eval.classifier must be logreg or knn, got {config.eval.classifier!r}")
    for path in config.eval.beir:
        if not (Path(path) / "corpus.jsonl").is_file():
            raise ConfigError(f"eval.beir: {path} has no corpus.jsonl (BEIR layout expected)")
    if config.save_every < 0 or config.log_every < 1 or config.keep_checkpoints < 1:
        raise ConfigError("save_every must be >= 0, log_every and keep_checkpoints >= 1")


def _validate_stage_list(stages: list[int | str]) -> None:
    """[mntp?, simcse?, 1?, 2?]: pre-stages in PRE_STAGES order, then 1 and/or 2 ascending, each once."""
    pre = [s for s in stages if isinstance(s, str)]
    numbered = [s for s in stages if isinstance(s, int) and not isinstance(s, bool)]
    valid = (
        stages
        and len(pre) + len(numbered) == len(stages)
        and all(s in PRE_STAGES for s in pre)
        and pre == sorted(set(pre), key=PRE_STAGES.index)
        and all(s in (1, 2) for s in numbered)
        and numbered == sorted(set(numbered))
        and list(stages) == pre + numbered
    )
    if not valid:
        raise ConfigError(f"stages must be [1], [2] or [1, 2], optionally preceded by mntp and/or simcse in that "
                          f"order (e.g. [mntp, simcse, 1, 2]), got {stages}")


def _validate_pre_stages(config: RunConfig) -> None:
    """The mntp and simcse sections of the stages that run (see _validate_stage_list for their order)."""
    for name in (s for s in config.stages if isinstance(s, str)):
        section = config.stage(name)
        if not section.data:
            raise ConfigError(f"{name}.data is empty: give --{name}-data FILE [...] (.txt or .jsonl texts)")
        for path in section.data:
            if not Path(path).is_file():
                raise ConfigError(f"{name}.data: file not found: {path}")
        for key in ("steps", "batch_size"):
            if getattr(section, key) < 1:
                raise ConfigError(f"{name}.{key} must be at least 1, got {getattr(section, key)}")
        if section.max_length < 8:
            raise ConfigError(f"{name}.max_length must be at least 8, got {section.max_length}")
        if section.learning_rate <= 0:
            raise ConfigError(f"{name}.learning_rate must be positive, got {section.learning_rate}")
        if section.warmup_steps < 0 or section.weight_decay < 0:
            raise ConfigError(f"{name}: warmup_steps and weight_decay must not be negative")
        if section.max_grad_norm is not None and section.max_grad_norm <= 0:
            raise ConfigError(f"{name}.max_grad_norm must be positive (or null), got {section.max_grad_norm}")
    mntp, simcse = config.mntp, config.simcse
    if "mntp" in config.stages:
        if not 0 < mntp.mask_probability < 1:
            raise ConfigError(f"mntp.mask_probability must be in (0, 1), got {mntp.mask_probability}")
        if not mntp.mask_token.strip():
            raise ConfigError("mntp.mask_token is empty: use auto or a token of the tokenizer's vocabulary")
    if "simcse" in config.stages:
        if simcse.temperature <= 0:
            raise ConfigError(f"simcse.temperature must be positive, got {simcse.temperature}")
        if not 0 <= simcse.attention_dropout < 1:
            raise ConfigError(f"simcse.attention_dropout must be in [0, 1), got {simcse.attention_dropout}")
        if simcse.lora_dropout is not None and not 0 <= simcse.lora_dropout < 1:
            raise ConfigError(f"simcse.lora_dropout must be in [0, 1) (or null), got {simcse.lora_dropout}")
        if simcse.chunk_size is not None and simcse.chunk_size < 1:
            raise ConfigError(f"simcse.chunk_size must be at least 1 (or null), got {simcse.chunk_size}")
        lora = getattr(config.model, "finetune", "lora") == "lora"
        lora_dropout = (simcse.lora_dropout if simcse.lora_dropout is not None else config.model.lora_dropout) \
            if lora else 0.0
        if simcse.attention_dropout == 0 and lora_dropout == 0:
            raise ConfigError("simcse.attention_dropout is 0 and there is no LoRA dropout: the two views of a text "
                              "would be identical (raise simcse.attention_dropout)")


def parse(argv: Sequence[str] | None = None, description: str = "") -> RunConfig:
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    return from_args(parser.parse_args(argv))
