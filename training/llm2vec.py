"""LLM2Vec's unsupervised stages, run before NV-Embed's stage 1: MNTP, then SimCSE (BehnamGhader et al., 2024).

A decoder made bidirectional has never seen text without a causal mask; LLM2Vec first teaches it to use
the context on both sides, then to produce sentence embeddings, from plain text only:

- **MNTP** (masked next-token prediction): choose `mask_probability` of the text tokens (never BOS, EOS,
  padding or another special token); as in BERT (and LLM2Vec's collator), 80 % of them become the mask
  token, 10 % a random token, 10 % stay as they are. The token at a chosen position i is predicted from
  the backbone's output at position i - 1 (the decoder's own next-token alignment) through the model's LM
  head, cross-entropy over the chosen positions only. The LM head is the input embedding matrix when the
  base ties them (SmolLM2, the tiny test models built with `tie_word_embeddings`); otherwise
  `lm_head.weight` is read from the base's own weight files (a plain Hugging Face decoder directory), kept
  frozen. The latent-attention layer takes no part and is not trained in this stage.
  Mask token (`mntp.mask_token: auto`): the tokenizer's mask token when it has one; else its unk token
  when that is a distinct special token (SmolLM2: `<|endoftext|>`, its document separator, which never
  occurs inside our inputs; Llama-2: `<unk>`); else `_`, LLM2Vec's "blank" choice for Llama and Mistral.
  A token string from the vocabulary can be named instead.
- **SimCSE** (unsupervised): each text of the batch is embedded twice by the full encoder (backbone +
  latent layer, the model stage 1 trains) in training mode; the two passes differ only by their dropout
  masks, and each text's second view is its positive, the other texts' second views its negatives
  (InfoNCE, temperature 0.05; a copy of the same text elsewhere in the batch is never a negative).
  Dropout for this stage: `simcse.attention_dropout` is set on every attention module (SmolLM2 ships
  0.0, LLM2Vec uses 0.3) and `simcse.lora_dropout` on the LoRA adapters, both restored at the stage end.

Both stages are `StageTrainer`s (training/trainer.py): the same optimizer, schedule, gradient averaging,
checkpoints, exact resume and metrics; only the sampler (plain texts, training/text_data.py) and the
forward/backward of a step differ. LoRA or full fine-tuning follow the `model` section as for stages 1
and 2; the stage's result (saved under `output_dir/mntp/`, `output_dir/simcse/`) is what the next
stage starts from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig

from encoder import NVEmbedModel
from encoder.checkpoint import is_nvembed_dir, read_config, weight_files

from . import distributed
from .batching import text_key
from .config import PRE_STAGES, ConfigError, MNTPConfig, RunConfig, SimCSEConfig, StageConfig
from .losses import StepOutput, grad_cache_step, plain_step
from .modeling import Precision
from .text_data import TextSampler
from .trainer import MetricsLog, StageTrainer, StepHook

IGNORE = -100  # label of a position that is not predicted
MASK_FRACTION = 0.8  # of the chosen tokens: replaced by the mask token
RANDOM_FRACTION = 0.1  # replaced by a random (non-special) token; the remaining 10 % are left unchanged
BLANK = "_"  # LLM2Vec's "blank" mask token for tokenizers without one


def stage_seed(name: str) -> int:
    """Seed offset of a pre-stage (stages 1 and 2 use their number)."""
    return 100 + PRE_STAGES.index(name)


# --------------------------------------------------------------------------------------------- MNTP


def special_token_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name, None) is not None:
            ids.add(int(getattr(tokenizer, name)))
    return ids


def resolve_mask_token(tokenizer, spec: str = "auto") -> int:
    """The id that replaces a chosen token (see the module docstring for `auto`); ConfigError when unusable."""
    if spec != "auto":
        ids = tokenizer.convert_tokens_to_ids([spec])
        unk = tokenizer.unk_token_id
        if not ids or ids[0] is None or (ids[0] == unk and spec != tokenizer.unk_token):
            raise ConfigError(f"mntp.mask_token {spec!r} is not a token of the tokenizer's vocabulary "
                              "(use auto, or one token string such as its unk token)")
        return int(ids[0])
    if tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    frame = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id not in frame:
        return int(tokenizer.unk_token_id)
    ids = tokenizer.convert_tokens_to_ids([BLANK])
    if ids and ids[0] is not None and ids[0] != tokenizer.unk_token_id:
        return int(ids[0])
    raise ConfigError("mntp.mask_token: the tokenizer has no mask token, no distinct unk token and no '_' token; "
                      "name one of its tokens with --set mntp.mask_token=TOKEN")


def random_pool(vocab_size: int, special_ids: set[int]) -> torch.Tensor:
    """The ids a chosen token may be replaced with at random: the vocabulary without its special tokens."""
    keep = torch.ones(vocab_size, dtype=torch.bool)
    keep[[i for i in special_ids if i < vocab_size]] = False
    return keep.nonzero().squeeze(1)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    probability: float,
    mask_id: int,
    special_ids: set[int],
    random_ids: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels): labels hold the original id at chosen positions and IGNORE elsewhere.

    Candidates are real (attention-mask 1), non-special tokens at position >= 1 (position 0 has no
    predecessor). Each is chosen with `probability`; at least one per batch (else the loss is undefined).
    Of the chosen, 80 % become `mask_id`, 10 % a draw from `random_ids` (`random_pool`), 10 % stay.
    """
    special = torch.tensor(sorted(special_ids), dtype=input_ids.dtype)
    candidate = attention_mask.bool() & ~torch.isin(input_ids, special)
    candidate[:, 0] = False
    chosen = candidate & (torch.rand(input_ids.shape, generator=generator) < probability)
    if not chosen.any():
        if not candidate.any():
            raise ValueError("MNTP: a batch without any maskable token (texts of special tokens only?)")
        rows, cols = candidate.nonzero(as_tuple=True)
        pick = int(torch.randint(len(rows), (1,), generator=generator))
        chosen[rows[pick], cols[pick]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    draw = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (draw < MASK_FRACTION)] = mask_id
    to_random = chosen & (draw >= MASK_FRACTION) & (draw < MASK_FRACTION + RANDOM_FRACTION)
    picks = torch.randint(len(random_ids), (int(to_random.sum()),), generator=generator)
    masked[to_random] = random_ids[picks].to(masked.dtype)
    return masked, labels


def mntp_loss(backbone: nn.Module, head_weight: torch.Tensor, input_ids: torch.Tensor,
              attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the labelled tokens, token i predicted from the output at i - 1.

    backbone: the bidirectional decoder (its `last_hidden_state` (B, T, d) is after the final norm);
    head_weight (V, d): the LM head; labels (B, T): IGNORE except at the chosen positions. Logits are
    computed only at the positions that predict something.
    """
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
    targets = labels[:, 1:]  # (B, T-1): the token each position predicts
    predicting = targets != IGNORE
    logits = hidden[:, :-1][predicting] @ head_weight.T  # (N, V)
    return F.cross_entropy(logits.float(), targets[predicting])


def _head_file(base: str | Path | None) -> Path | None:
    """The weight file of `base` that holds `lm_head.weight`, if any."""
    path = Path(str(base)) if base is not None else None
    if path is None or not path.is_dir():
        return None
    try:
        files = weight_files(path)
    except FileNotFoundError:
        return None
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            if "lm_head.weight" in handle.keys():
                return file
    return None


def _no_head(base: str | Path | None) -> ConfigError:
    return ConfigError(f"mntp needs the base's LM head: {base} does not tie its input embeddings and has no "
                       "lm_head.weight (NV-Embed checkpoints drop it); start MNTP from the plain decoder directory")


def check_lm_head(base: str | Path) -> None:
    """Before any model is loaded: raise ConfigError when MNTP would find no LM head for `base`."""
    path = Path(str(base))
    if not path.is_dir():
        return  # a hub id: checked once loaded
    text_config = read_config(path).text_config if is_nvembed_dir(path) else AutoConfig.from_pretrained(str(path))
    if not getattr(text_config, "tie_word_embeddings", False) and _head_file(path) is None:
        raise _no_head(base)


def lm_head_weight(model: NVEmbedModel, base: str | Path | None) -> torch.Tensor:
    """The LM head (V, d): the input embeddings when tied, else `lm_head.weight` from the base's files."""
    embeddings = model.embedding_model.get_input_embeddings().weight
    if getattr(model.config.text_config, "tie_word_embeddings", False):
        return embeddings
    file = _head_file(base)
    if file is None:
        raise _no_head(base)
    with safe_open(str(file), framework="pt") as handle:
        weight = handle.get_tensor("lm_head.weight")
    if weight.shape != embeddings.shape:
        raise ConfigError(f"mntp: {file}: lm_head.weight has shape {tuple(weight.shape)}, "
                          f"the embeddings {tuple(embeddings.shape)}")
    return weight.to(embeddings.device, embeddings.dtype)


# --------------------------------------------------------------------------------------------- SimCSE


def simcse_loss(first: torch.Tensor, second: torch.Tensor, temperature: float,
                keys: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """InfoNCE of each text's first view (B, d) against every second view (M, d); its own is the positive.

    Views are L2-normalised; logits `first @ second.T / temperature`. Row i's positive is column
    `offset + i` (under data parallelism `second` is gathered from all ranks). keys (M,): text hashes; a
    column holding the same text as the row's own (a duplicate in the batch) is not a negative.
    """
    logits = first.float() @ second.float().T / temperature  # (B, M)
    positive = torch.arange(first.shape[0], device=first.device) + offset
    if keys is not None:
        duplicate = keys.unsqueeze(0) == keys[positive].unsqueeze(1)
        duplicate[torch.arange(first.shape[0]), positive] = False
        logits = logits.masked_fill(duplicate, float("-inf"))
    return F.cross_entropy(logits, positive)


def dropout_modules(model: NVEmbedModel) -> tuple[list[nn.Module], list[tuple[nn.ModuleDict, str]]]:
    """The attention modules (with an `attention_dropout` attribute) and the LoRA dropout slots."""
    attention = [m for m in model.embedding_model.modules() if hasattr(m, "attention_dropout")]
    lora = [(m.lora_dropout, key) for m in model.embedding_model.modules()
            if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict) for key in m.lora_dropout]
    return attention, lora


@contextlib.contextmanager
def dropout(model: NVEmbedModel, attention: float, lora: float | None) -> Iterator[None]:
    """Attention dropout (and LoRA dropout unless None) set for the block, the previous values restored after."""
    attention_modules, lora_slots = dropout_modules(model)
    if not attention_modules:
        raise ConfigError("simcse.attention_dropout: the backbone has no attention module with a dropout setting")
    if lora is not None and lora > 0 and not lora_slots:
        raise ConfigError(f"simcse.lora_dropout is {lora} but the model has no LoRA adapters (model.finetune?)")
    saved_attention = [m.attention_dropout for m in attention_modules]
    saved_lora = [slots[key] for slots, key in lora_slots]
    try:
        for m in attention_modules:
            m.attention_dropout = attention
        if lora is not None:
            for slots, key in lora_slots:
                slots[key] = nn.Dropout(lora) if lora > 0 else nn.Identity()
        yield
    finally:
        for m, value in zip(attention_modules, saved_attention, strict=True):
            m.attention_dropout = value
        for (slots, key), module in zip(lora_slots, saved_lora, strict=True):
            slots[key] = module


# --------------------------------------------------------------------------------------------- trainers


def _as_stage_config(section: MNTPConfig | SimCSEConfig) -> StageConfig:
    """The StageConfig the shared machinery reads (steps, batch, optimizer, schedule): the section's shared fields."""
    names = {f.name for f in dataclasses.fields(StageConfig)}
    return StageConfig(**{f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name in names})


class _TextStageTrainer(StageTrainer):
    """A StageTrainer whose steps draw plain texts (the pre-stages); `texts` replaces the data sets."""

    def __init__(self, model: NVEmbedModel, name: str, section: MNTPConfig | SimCSEConfig, run: RunConfig,
                 texts: Sequence[str], precision: Precision, metrics: MetricsLog, start_fingerprint: str,
                 hook: StepHook | None = None):
        self.section = section
        super().__init__(model, name, _as_stage_config(section), run, list(texts), precision, metrics,
                         start_fingerprint, hook)

    def make_sampler(self, datasets: list) -> TextSampler:  # here: the texts
        return TextSampler(datasets, self.stage.batch_size, seed=self.run.seed + stage_seed(self.number))

    def _local_texts(self) -> list[str]:
        texts = self.sampler.next_batch()
        local = self.stage.batch_size // self.info.world_size
        return texts[self.info.rank * local : (self.info.rank + 1) * local]


class MNTPTrainer(_TextStageTrainer):
    """Masked next-token prediction on the backbone (LoRA or full, per `model`); the latent layer is frozen."""

    def __init__(self, model: NVEmbedModel, section: MNTPConfig, run: RunConfig, texts: Sequence[str],
                 precision: Precision, metrics: MetricsLog, start_fingerprint: str, hook: StepHook | None = None):
        for param in model.latent_attention_model.parameters():
            param.requires_grad_(False)  # unused by MNTP: not optimised, not checkpointed
        self.head = lm_head_weight(model, base_path(run))
        tokenizer = model.tokenizer
        self.mask_id = resolve_mask_token(tokenizer, section.mask_token)
        self.special_ids = special_token_ids(tokenizer)
        self.random_ids = random_pool(min(len(tokenizer), self.head.shape[0]), self.special_ids)
        super().__init__(model, "mntp", section, run, texts, precision, metrics, start_fingerprint, hook)

    def train_step(self) -> dict[str, Any]:
        started = time.perf_counter()
        batch = self.model.tokenize(self._local_texts(), max_length=self.section.max_length)
        ids, labels = mask_tokens(batch.input_ids, batch.attention_mask, self.section.mask_probability,
                                  self.mask_id, self.special_ids, self.random_ids)
        device = self.precision.device
        with self.precision.context():
            loss = mntp_loss(self.model.embedding_model, self.head, ids.to(device), batch.attention_mask.to(device),
                             labels.to(device))
        loss.backward()
        out = StepOutput(loss.detach(), ids.shape[0], int(batch.attention_mask.sum()))
        return self.finish_step(out, started)


class SimCSETrainer(_TextStageTrainer):
    """Unsupervised SimCSE on the whole encoder: two dropout views of each text are the positive pair."""

    def __init__(self, model: NVEmbedModel, section: SimCSEConfig, run: RunConfig, texts: Sequence[str],
                 precision: Precision, metrics: MetricsLog, start_fingerprint: str, hook: StepHook | None = None):
        super().__init__(model, "simcse", section, run, texts, precision, metrics, start_fingerprint, hook)
        with dropout(model, section.attention_dropout, section.lora_dropout):
            pass  # fail now, before any step, when the dropout cannot be set

    def train_step(self) -> dict[str, Any]:
        started = time.perf_counter()
        texts = self._local_texts()
        batch = self.model.tokenize(texts, max_length=self.section.max_length).to(self.precision.device)
        local_keys = torch.tensor([text_key(t) for t in texts], dtype=torch.long, device=self.precision.device)
        keys = distributed.gather(local_keys)
        temperature = self.section.temperature

        def loss_fn(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            views, offset = distributed.gather_with_grad(second)
            return simcse_loss(first, views, temperature, keys, offset)

        chunk = self.section.chunk_size
        if chunk is not None and chunk < len(texts):
            out = grad_cache_step(self.encode, batch, batch, loss_fn, chunk)
        else:
            out = plain_step(self.encode, batch, batch, loss_fn)  # two passes: two dropout draws
        return self.finish_step(out, started)

    def train(self, resume_from: Path | None = None) -> list[dict[str, Any]]:
        with dropout(self.model, self.section.attention_dropout, self.section.lora_dropout):
            return super().train(resume_from)


def base_path(run: RunConfig) -> Path | None:
    base = run.model.base
    if base in ("default", "default-untrained"):
        from encoder.default import default_model_path

        return default_model_path(trained=base == "default")
    return Path(base)


def make_trainer(name: str, model: NVEmbedModel, run: RunConfig, texts: Sequence[str], precision: Precision,
                 metrics: MetricsLog, start_fingerprint: str, hook: StepHook | None = None) -> StageTrainer:
    """The trainer of pre-stage `name` ("mntp" or "simcse")."""
    if name == "mntp":
        return MNTPTrainer(model, run.mntp, run, texts, precision, metrics, start_fingerprint, hook)
    if name == "simcse":
        return SimCSETrainer(model, run.simcse, run, texts, precision, metrics, start_fingerprint, hook)
    raise ValueError(f"unknown pre-stage {name!r}; pre-stages: {', '.join(PRE_STAGES)}")
