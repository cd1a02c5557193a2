"""NVEmbedModel: a bidirectional decoder plus latent-attention pooling, with loading and encoding.

    texts --tokenize--> [BOS] prefix text EOS [pad...]      (B, T)
          --embedding_model (decoder, no causal mask)--> hidden states (B, T, d)
          --latent_attention_model (cross-attn to latents, GEGLU, masked mean, L2)--> embeddings (B, d)

`from_pretrained` is the one entry point for every source: an NV-Embed checkpoint directory (or hub id
when a hub is reachable), a plain Hugging Face decoder (fresh latent layer), our own `save_pretrained`
output (same layout as NV-Embed), and `"default"` (the embedded SmolLM2 model, see `default.py`).

On a CPU, `encode_*` run the default model's linear layers in int8 (`int8.py`): its nDCG@10 cost on the dev
sets is within the 0.01 the rule allows (docs/benchmarks.md), so `from_pretrained("default")` on a CPU is
int8 unless told otherwise (`int8=False`, or NVEMBED_INT8=0). The rule holds per model: only a model whose
cost was measured (its fingerprint in `INT8_MEASURED`) is int8 by default; any other is float32 unless
asked (`int8=True`, NVEMBED_INT8=1). The float weights stay the model's weights: `forward` (training),
`save_pretrained` and the fingerprint are those of the float model, and int8 is, like the device and dtype, a
way of running it: an index built with one opens with the other (their vectors agree to a cosine of about
0.99, docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers import logging as hf_logging

from . import int8 as int8_kernels
from .bidirectional import check_supported, make_bidirectional, make_bidirectional_config
from .checkpoint import (
    NVEmbedConfig,
    check_keys,
    checkpoint_shapes,
    is_nvembed_dir,
    iter_tensors,
    read_config,
    save_checkpoint,
)
from .instructions import DEFAULT_RETRIEVAL, query_prefix
from .latent_attention import LatentAttentionConfig, LatentAttentionPooling
from .tokenization import EncodedBatch, check_texts, collate, ensure_bos, ensure_pad, prefix_length, token_ids

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512  # NV-Embed's training and MTEB length; the reference encode() default is 4096
PROGRESS_THRESHOLD = 256  # show a progress bar from this many texts on
# Config fields that do not change what the model computes; left out of the fingerprint.
_INCIDENTAL_CONFIG_KEYS = {"transformers_version", "dtype", "torch_dtype", "architectures", "use_cache"}
INT8_ENV = "NVEMBED_INT8"  # "1": int8 encoding on a CPU for any model, "0": float32 for every model


@dataclass(frozen=True)
class Int8Measurement:
    """A model's measured int8 cost: the outlier ratio it was measured at (`int8.OUTLIER_RATIO`'s meaning;
    chosen per model) and where the figures are."""

    outlier_ratio: float
    note: str


# Models (by fingerprint) whose int8 nDCG@10 cost on the dev sets was measured at most 0.01: int8 by default
# on a CPU, at their own outlier ratio. Add a model here only with its figures (python
# benchmarks/int8_quality.py --outlier-ratio R, docs/benchmarks.md).
INT8_MEASURED = {
    "7aa06e97009595b5": Int8Measurement(2.5, "the default shipped 2026-12-04, sixteenth session (seventh leg, step "
                                             "450 + cool-down at 128 tokens): cost 0.0041 Cranfield, 0.0032 CISI"),
    "dfe898aded7a3424": Int8Measurement(2.5, "the default shipped 2026-12-04, sixteenth session (sixth leg, step "
                                             "800 + cool-down at 128 tokens): cost 0.0049 Cranfield, -0.0002 CISI"),
    "d811fd186ae0321e": Int8Measurement(2.5, "the default shipped 2026-12-03, eleventh session (fifth leg, step 300 "
                                             "+ cool-down at 128 tokens): cost -0.0025 Cranfield, -0.0014 CISI"),
    "9487662df77906d0": Int8Measurement(2.5, "the default shipped 2026-12-02, ninth session (third leg, step 440 "
                                             "+ cool-down at 128 tokens): cost 0.0029 Cranfield, 0.0032 CISI"),
    "e44ee908599fe6bb": Int8Measurement(2.5, "the default shipped 2026-12-02, seventh session (second leg, step 890 "
                                             "+ cool-down at 128 tokens): cost 0.0015 Cranfield, 0.0034 CISI"),
    "1653fc4e181b2197": Int8Measurement(2.5, "the default shipped 2026-12-02, sixth session (second leg, step 640 "
                                             "+ cool-down at 128 tokens): cost 0.0015 Cranfield, 0.0044 CISI (at "
                                             "3: Cranfield 0.0066, CISI 0.0144)"),
    "8cc94c0945a4763f": Int8Measurement(2.5, "the default shipped 2026-12-02, fifth session (second leg, step 570 "
                                             "+ cool-down at 128 tokens): cost 0.0027 Cranfield, 0.0044 CISI (at "
                                             "3: CISI 0.0101)"),
    "f30f6b0bbfea8e4e": Int8Measurement(3.0, "the default shipped 2026-12-01, fourth session (second leg, step 250 "
                                             "+ cool-down at 128 tokens): cost 0.0058 Cranfield, 0.0031 CISI"),
    "f33f3322c91b7ba2": Int8Measurement(4.0, "the default shipped 2026-12-01 (step 340 + cool-down): cost 0.0024 "
                                             "Cranfield, -0.0029 CISI"),
    "fddeb9f4b2b73443": Int8Measurement(8.0, "the step-210 snapshot shipped earlier on 2026-12-01: cost 0.0068 "
                                             "Cranfield, 0.0013 CISI"),
    "43aa32f8152aefb3": Int8Measurement(8.0, "the previous 8-layer default: cost 0.0035 Cranfield, 0.0077 CISI "
                                             "(full dev sets)"),
}


def default_int8(device: torch.device, fingerprint: str | None = None) -> bool:
    """Whether to encode in int8 when the caller did not say: NVEMBED_INT8 if set, else on a CPU with onnxruntime
    for a model whose int8 cost was measured within the limit (`fingerprint` in INT8_MEASURED)."""
    value = os.environ.get(INT8_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value not in ("", "1", "true", "yes", "on"):
        raise ValueError(f"{INT8_ENV} must be 0 or 1, got {value!r}")
    if value == "" and fingerprint not in INT8_MEASURED:
        return False
    return device.type == "cpu" and int8_kernels.available()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    # bfloat16 matmuls are ~10x slower than float32 on these CPUs; bf16 is for CUDA only.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def default_attention(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoTokenizer complains about the unknown `nvembed` model type
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    finally:
        hf_logging.set_verbosity(verbosity)
    return ensure_pad(tokenizer)


class NVEmbedModel(nn.Module):
    """NV-Embed: `embedding_model` (bidirectional decoder) + `latent_attention_model` (pooling)."""

    def __init__(self, config: NVEmbedConfig, embedding_model: nn.Module, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        self.config = config
        self.embedding_model = embedding_model
        self.latent_attention_model = LatentAttentionPooling(config.latent)
        self.tokenizer = tokenizer
        self.max_length = int(config.extra.get("max_length", DEFAULT_MAX_LENGTH))
        self.source = str(config.extra.get("name", "nvembed"))
        self._fingerprint: str | None = None
        self._int8 = False
        self._outlier_ratio: float | None = None

    # ----------------------------------------------------------------- int8

    @property
    def int8(self) -> bool:
        """Whether `encode_*` run the linear layers in int8 (CPU only; `forward` always stays float)."""
        return self._int8

    @int8.setter
    def int8(self, enabled: bool) -> None:
        if enabled:
            if not int8_kernels.available():
                raise RuntimeError("int8 encoding needs onnxruntime: pip install onnxruntime")
            int8_kernels.enable_int8(self)
        self._int8 = bool(enabled)

    @property
    def int8_outlier_ratio(self) -> float:
        """int8 rows whose peak is over this many times the median row's compute in float: the ratio this
        model's int8 cost was measured at (INT8_MEASURED), else `int8.OUTLIER_RATIO`; settable (benchmarks)."""
        if self._outlier_ratio is not None:
            return self._outlier_ratio
        measured = INT8_MEASURED.get(self.fingerprint)
        return int8_kernels.OUTLIER_RATIO if measured is None else measured.outlier_ratio

    @int8_outlier_ratio.setter
    def int8_outlier_ratio(self, ratio: float | None) -> None:
        int8_kernels.check_outlier_ratio(ratio, "int8_outlier_ratio")
        self._outlier_ratio = None if ratio is None else float(ratio)

    @property
    def precision(self) -> str:
        """How `encode_*` compute on this device: "int8" or the weights' dtype ("float32", "bfloat16")."""
        if self._int8 and self.device.type == "cpu":
            return "int8"
        return str(self.dtype).removeprefix("torch.")

    # ----------------------------------------------------------------- properties

    @property
    def dimension(self) -> int:
        return self.config.latent.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def name(self) -> str:
        return self.source

    @property
    def trained(self) -> bool:
        return bool(self.config.extra.get("trained", True))

    @property
    def fingerprint(self) -> str:
        """A stable identity of the weights, independent of device and dtype (hashed in bfloat16).

        Covers the config, the whole latent layer and samples of the backbone (embeddings, first and
        last layer, final norm): cheap for a 7B model, and any training run changes it.
        """
        if self._fingerprint is None:
            text = {k: v for k, v in self.config.to_dict()["text_config"].items()
                    if not k.startswith("_") and k not in _INCIDENTAL_CONFIG_KEYS}
            digest = hashlib.sha256(json.dumps(text, sort_keys=True).encode())
            digest.update(json.dumps(self.config.latent.to_dict(), sort_keys=True).encode())
            state = self.state_dict()
            keys = [k for k in state if k.startswith("latent_attention_model.")]
            backbone = [k for k in state if k.startswith("embedding_model.")]
            keys += [k for k in backbone if "embed_tokens" in k or k.endswith("norm.weight")]
            keys += [k for k in backbone if ".layers.0." in k or f".layers.{self.num_layers - 1}." in k]
            for key in sorted(set(keys)):
                tensor = state[key].detach().to("cpu", torch.bfloat16).flatten()[:65536]
                digest.update(key.encode())
                digest.update(tensor.view(torch.int16).numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @property
    def num_layers(self) -> int:
        return int(self.config.text_config.num_hidden_layers)

    def truncate_layers(self, num_layers: int) -> None:
        """Keep only the first `num_layers` decoder layers (a shallower, faster encoder); configs follow,
        so `save_pretrained` output reloads at the new depth."""
        backbone = self.embedding_model
        have = len(backbone.layers)
        if not 1 <= num_layers <= have:
            raise ValueError(f"num_layers must be in 1..{have}, got {num_layers}")
        if num_layers == have:
            return
        backbone.layers = nn.ModuleList(list(backbone.layers)[:num_layers])
        for config in {id(c): c for c in (backbone.config, self.config.text_config)}.values():
            config.num_hidden_layers = num_layers
            if getattr(config, "layer_types", None):
                config.layer_types = list(config.layer_types)[:num_layers]
        self._fingerprint = None

    # ----------------------------------------------------------------- forward

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, attention mask and pool mask -> (B, d) float32 embeddings (L2-normalised)."""
        hidden = self.embedding_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.latent_attention_model(hidden, pool_mask)

    def tokenize(
        self, texts: Sequence[str], instruction: str | None = None, max_length: int | None = None
    ) -> EncodedBatch:
        """Tokenize one batch: `Instruct: {instruction}\\nQuery: ` + text + EOS (no prefix without instruction)."""
        prefix = query_prefix(instruction) if instruction else ""
        rows = token_ids(self.tokenizer, check_texts(texts), prefix, max_length or self.max_length)
        return collate(rows, self.tokenizer.pad_token_id, self._pool_start(prefix))

    def _pool_start(self, prefix: str) -> int:
        if not (self.config.is_mask_instruction and self.config.padding_side == "right"):
            return 0
        return prefix_length(self.tokenizer, prefix)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text occupies as a passage (BOS and EOS included), before truncation."""
        texts = check_texts(texts)
        eos = self.tokenizer.eos_token
        return [len(ids) for ids in self.tokenizer([t + eos for t in texts]).input_ids] if texts else []

    # ----------------------------------------------------------------- encoding

    def encode_queries(
        self,
        texts: Sequence[str],
        instruction: str = DEFAULT_RETRIEVAL,
        batch_size: int = 32,
        max_length: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed queries with an instruction (a registered task name or free text) -> (n, d) float32."""
        return self._encode(texts, query_prefix(instruction), batch_size, max_length, show_progress)

    def encode_passages(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        max_length: int | None = None,
        show_progress: bool | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """Embed passages (no prefix; pass `instruction` for symmetric tasks) -> (n, d) float32."""
        prefix = query_prefix(instruction) if instruction else ""
        return self._encode(texts, prefix, batch_size, max_length, show_progress)

    @torch.inference_mode()
    def _encode(
        self, texts: Sequence[str], prefix: str, batch_size: int, max_length: int | None, show_progress: bool | None
    ) -> np.ndarray:
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        rows = token_ids(self.tokenizer, texts, prefix, max_length or self.max_length)
        pool_start = self._pool_start(prefix)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # longest first: OOM shows early
        if show_progress is None:
            show_progress = len(texts) >= PROGRESS_THRESHOLD
        was_training = self.training
        self.eval()
        device = self.device
        use_int8 = self._int8 and device.type == "cpu"
        int8 = int8_kernels.int8_inference(use_int8, self.int8_outlier_ratio if use_int8 else None)
        with int8, tqdm(total=len(texts), desc="encoding", unit="text", disable=not show_progress) as bar:
            start = 0
            while start < len(order):
                chunk = order[start : start + batch_size]
                batch = collate([rows[i] for i in chunk], self.tokenizer.pad_token_id, pool_start).to(device)
                try:
                    # int8 layers compute the real tokens' rows only (exact: see int8.skip_padding)
                    with int8_kernels.skip_padding(batch.attention_mask if use_int8 else None):
                        emb = self(batch.input_ids, batch.attention_mask, batch.pool_mask)
                except torch.OutOfMemoryError:
                    if batch_size == 1:
                        raise
                    batch_size = max(1, batch_size // 2)
                    torch.cuda.empty_cache()
                    logger.warning("out of memory: retrying with batch size %d", batch_size)
                    continue
                out[chunk] = emb.float().cpu().numpy()
                start += len(chunk)
                bar.update(len(chunk))
        self.train(was_training)
        return out

    # ----------------------------------------------------------------- saving

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write this model in the released NV-Embed layout (loadable by `from_pretrained`)."""
        state = {k: (v.to(dtype) if dtype is not None else v) for k, v in self.state_dict().items()}
        self.config.extra.setdefault("max_length", self.max_length)
        save_checkpoint(state, self.config, path)
        self.tokenizer.save_pretrained(str(path))

    # ----------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        attn_implementation: str | None = None,
        latent_config: dict[str, Any] | None = None,
        seed: int = 0,
        int8: bool | None = None,
    ) -> NVEmbedModel:
        """Load an NV-Embed checkpoint, a plain decoder (fresh latent layer), `"default"` or `"default-untrained"`.

        Names are resolved by `encoder.registry` (`encoder.load_model` also takes `tiny` and `minilm`).

        `latent_config` overrides the latent layer's sizes for a plain decoder; `seed` makes its fresh
        initialisation reproducible. `int8`: int8 linear layers in `encode_*` (None: on a CPU, on for a model
        whose int8 cost was measured, the shipped default: see `default_int8`; True on another device is refused).
        """
        model = cls._load(name_or_path, device, dtype, attn_implementation, latent_config, seed)
        if int8 and model.device.type != "cpu":
            raise ValueError(f"int8 encoding runs on a CPU only; this model is on {model.device}")
        model.int8 = default_int8(model.device, model.fingerprint) if int8 is None else int8
        return model

    @classmethod
    def _load(
        cls,
        name_or_path: str | os.PathLike,
        device: str | torch.device | None,
        dtype: torch.dtype | None,
        attn_implementation: str | None,
        latent_config: dict[str, Any] | None,
        seed: int,
    ) -> NVEmbedModel:
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        attn = attn_implementation or default_attention(device)
        if str(name_or_path) == "default-untrained" and latent_config:
            from .default import converted_base  # another latent layer than the cached one: build it here

            return cls.from_decoder(converted_base(), device, dtype, attn, latent_config, seed)
        from .registry import nvembed_path  # the one place names are resolved

        path = nvembed_path(name_or_path)
        if is_nvembed_dir(path):
            if latent_config:
                raise ValueError(f"{name_or_path}: latent_config {latent_config} cannot apply to an NV-Embed "
                                 "checkpoint (its latent layer is stored); give a plain decoder or 'default-untrained'")
            return cls._from_nvembed_dir(path, device, dtype, attn)
        if (path / "config.json").is_file():
            return cls.from_decoder(path, device, dtype, attn, latent_config, seed)
        raise FileNotFoundError(f"{path}: no config.json; not an NV-Embed checkpoint or a Hugging Face decoder")

    @classmethod
    def _from_nvembed_dir(cls, path: Path, device: torch.device, dtype: torch.dtype, attn: str) -> NVEmbedModel:
        config = read_config(path)
        make_bidirectional_config(config.text_config)
        config.text_config._attn_implementation = attn
        tokenizer = load_tokenizer(path)
        with torch.device("meta"):
            backbone = AutoModel.from_config(config.text_config, attn_implementation=attn)
            model = cls(config, backbone, tokenizer)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_keys(expected, checkpoint_shapes(path), source=str(path))
        state = {k: v.to(dtype) for k, v in iter_tensors(path, device=str(device))}
        model.load_state_dict(state, strict=True, assign=True)
        _rebuild_buffers(model.embedding_model, device)
        model.config.extra.setdefault("name", path.name)
        make_bidirectional(model.embedding_model)
        return model.eval()

    @classmethod
    def from_decoder(
        cls,
        path: str | os.PathLike,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        attn_implementation: str | None = None,
        latent_config: dict[str, Any] | None = None,
        seed: int = 0,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> NVEmbedModel:
        """A plain Hugging Face decoder as the backbone, with a freshly initialised latent layer."""
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        attn = attn_implementation or default_attention(device)
        check_supported(AutoConfig.from_pretrained(str(path)), source=str(path))
        backbone = AutoModel.from_pretrained(str(path), dtype=dtype, attn_implementation=attn)
        tokenizer = ensure_bos(tokenizer or load_tokenizer(path))
        return cls.from_backbone(backbone, tokenizer, latent_config, seed, name=Path(path).name).to(device)

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        latent_config: dict[str, Any] | None = None,
        seed: int = 0,
        name: str = "nvembed",
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> NVEmbedModel:
        """Wrap a built decoder: make it bidirectional and add a latent layer sized by the reference's ratios."""
        make_bidirectional(backbone)
        latent = LatentAttentionConfig.for_hidden_size(backbone.config.hidden_size, **(latent_config or {}))
        config = NVEmbedConfig(
            text_config=backbone.config,
            latent=latent,
            extra={"name": name, "trained": False, "max_length": max_length},
        )
        weight = next(backbone.parameters())
        with torch.random.fork_rng(devices=[]):  # reproducible latent layer, caller's RNG untouched
            torch.manual_seed(seed)
            model = cls(config, backbone, ensure_pad(ensure_bos(tokenizer)))
        model.latent_attention_model.to(dtype=weight.dtype, device=weight.device)
        return model.eval()


def _rebuild_buffers(backbone: nn.Module, device: torch.device) -> None:
    """Recompute non-persistent buffers (rotary frequencies) left on the meta device by the lazy build."""
    for name, module in list(backbone.named_modules()):
        if name.endswith("rotary_emb"):
            with torch.device("cpu"):
                fresh = type(module)(config=backbone.config).to(device)
            parent = backbone.get_submodule(name.rsplit(".", 1)[0]) if "." in name else backbone
            setattr(parent, name.rsplit(".", 1)[-1], fresh)
    leftovers = [n for n, b in backbone.named_buffers() if b.is_meta]
    if leftovers:
        raise RuntimeError(f"buffers not restored after loading: {leftovers[:3]}")
