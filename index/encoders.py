"""What the index needs from an encoder, and how it finds the encoder's tokens inside a text.

`Encoder` is the slice of `encoder.NVEmbedModel` the index uses, as a Protocol, so tests and benchmarks can
pass a stand-in (see `index.testing.HashEncoder`). `TokenCounter` locates tokens for chunking: with a fast
Hugging Face tokenizer it uses offset mappings; without one it falls back to a word/punctuation regex. The
encoder's own `count_tokens` stays the final judge of a passage's length.

`load_encoder` turns a `--model` value into an encoder for the CLI, the app and the API alike: the index's
own stand-ins (`hash:DIM`, `random:DIM`) or any name `encoder.registry` resolves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import IndexStoreError, InvalidInputError

_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@runtime_checkable
class Encoder(Protocol):
    """The encoder contract (a subset of `encoder.NVEmbedModel`)."""

    dimension: int  # embedding width
    max_length: int  # max tokens per input, special tokens included
    name: str  # human-readable
    fingerprint: str  # stable identity of the weights

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def encode_queries(self, texts: list[str], instruction: str = ..., batch_size: int = 32,
                       max_length: int | None = None, show_progress: bool | None = None) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], batch_size: int = 32, max_length: int | None = None,
                        show_progress: bool | None = None) -> np.ndarray: ...


def regex_token_spans(text: str) -> np.ndarray:
    """(n, 2) character spans of words and punctuation marks: the fallback tokenization."""
    spans = [m.span() for m in _WORD_RE.finditer(text)]
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


class TokenCounter:
    """Counts and locates an encoder's tokens; `overhead` is the special tokens every passage carries."""

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self.max_length = int(encoder.max_length)
        tokenizer = getattr(encoder, "tokenizer", None)
        self._tokenizer = tokenizer if tokenizer is not None and getattr(tokenizer, "is_fast", False) else None
        self.overhead = int(encoder.count_tokens([""])[0])

    def spans(self, texts: Sequence[str]) -> list[np.ndarray]:
        """For each text, the (n, 2) character spans of its content tokens (no special tokens)."""
        if not texts:
            return []
        if self._tokenizer is None:
            return [regex_token_spans(t) for t in texts]
        out: list[np.ndarray] = []
        step = 256  # bounded batches keep the Python lists of offsets small
        for i in range(0, len(texts), step):
            enc = self._tokenizer(
                list(texts[i : i + step]), add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            for offsets in enc["offset_mapping"]:
                arr = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
                out.append(arr[arr[:, 1] > arr[:, 0]] if len(arr) else arr)
        return out

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text occupies as a passage, special tokens included (the encoder's own count)."""
        if not texts:
            return []
        return [int(n) for n in self.encoder.count_tokens(list(texts))]


def load_encoder(source: str, device: str | None = None) -> tuple[Any, str]:
    """(encoder, source string to record in the index) for a model name, path or stand-in.

    Raises `IndexStoreError` naming the model when it cannot be resolved or loaded.
    """
    from .testing import parse_stand_in

    stand_in = parse_stand_in(source)
    if stand_in is not None:
        return stand_in, source
    try:
        from encoder.registry import load_model, resolve
    except ImportError as exc:
        raise IndexStoreError(f"cannot import the encoder package to load model {source!r}: {exc}") from None
    try:
        ref = resolve(source)
        return load_model(ref, device=device), ref.source
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"cannot load model {source!r}: {exc}") from None


def embed_passages(encoder: Any, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """(n, d) float32 unit vectors for `texts`; `InvalidInputError` naming the encoder on a bad output."""
    vectors = np.asarray(encoder.encode_passages(texts, batch_size=batch_size, show_progress=False), dtype=np.float32)
    if vectors.shape != (len(texts), int(encoder.dimension)):
        raise InvalidInputError(
            f"encoder {encoder.name!r} returned vectors of shape {vectors.shape} for {len(texts)} passages "
            f"(expected ({len(texts)}, {encoder.dimension}))"
        )
    if not np.isfinite(vectors).all():
        raise InvalidInputError(f"encoder {encoder.name!r} returned NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.allclose(norms, 1.0, atol=1e-3):
        vectors = vectors / np.clip(norms, 1e-12, None)
    return np.ascontiguousarray(vectors)
