"""A stand-in encoder for tests and benchmarks: no model, no tokenizer, deterministic vectors.

`HashEncoder` embeds a text as the normalised sum of hash-seeded random vectors of its lower-cased words
(a random-projection bag of words). Identical texts get identical vectors and texts sharing rare words are
close, so dense search behaves sensibly in tests while costing microseconds. With `random=True` it instead
returns one random unit vector per text, which is what the ingest benchmark uses to time everything but
the model. Tokens are words and punctuation marks, plus `specials` for BOS/EOS.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class HashEncoder:
    """Implements `index.encoders.Encoder` without a neural network."""

    tokenizer = None

    def __init__(self, dimension: int = 64, max_length: int = 512, seed: int = 0, random: bool = False,
                 specials: int = 2, name: str | None = None):
        self.dimension = int(dimension)
        self.max_length = int(max_length)
        self.seed = int(seed)
        self.random = bool(random)
        self.specials = int(specials)
        self.name = name or f"hash:{dimension}"
        self.fingerprint = f"hash-{dimension}-{seed}-{'random' if random else 'bow'}"
        self._cache: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(seed)
        self.calls = 0  # passages encoded so far, for tests that check nothing is re-embedded

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD_RE.findall(t)) + self.specials for t in texts]

    def _word(self, word: str) -> np.ndarray:
        vec = self._cache.get(word)
        if vec is None:
            h = hashlib.blake2b(f"{self.seed}:{word}".encode(), digest_size=8).digest()
            vec = np.random.default_rng(int.from_bytes(h, "little")).standard_normal(self.dimension)
            vec = vec.astype(np.float32)
            if len(self._cache) < 200_000:
                self._cache[word] = vec
        return vec

    def _embed(self, texts: Sequence[str], max_length: int | None) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if self.random:
            out[:] = self._rng.standard_normal(out.shape)
        else:
            limit = (max_length or self.max_length) - self.specials
            for lo in range(0, len(texts), 1024):  # slices bound the (words, d) intermediate
                vocab: dict[str, int] = {}
                rows: list[int] = []
                cols: list[int] = []
                for i, text in enumerate(texts[lo : lo + 1024]):
                    words = _WORD_RE.findall(text.lower())[:limit] or [""]
                    rows.extend([i] * len(words))
                    cols.extend(vocab.setdefault(w, len(vocab)) for w in words)
                table = np.stack([self._word(w) for w in vocab])
                starts = np.flatnonzero(np.diff(np.asarray(rows, dtype=np.int64), prepend=-1))  # rows are in order
                out[lo : lo + 1024] = np.add.reduceat(table[np.asarray(cols, dtype=np.int64)], starts, axis=0)
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
        return out

    def encode_queries(self, texts: Sequence[str], instruction: str | None = None, batch_size: int = 32,
                       max_length: int | None = None, show_progress: bool | None = None) -> np.ndarray:
        return self._embed(list(texts), max_length)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, max_length: int | None = None,
                        show_progress: bool | None = None) -> np.ndarray:
        self.calls += len(texts)
        return self._embed(list(texts), max_length)


def parse_stand_in(spec: str) -> HashEncoder | None:
    """`hash:DIM` or `random:DIM` (CLI `--model`) to a stand-in encoder; None for any other model name."""
    m = re.fullmatch(r"(hash|random):(\d+)", spec.strip())
    if not m:
        return None
    return HashEncoder(int(m.group(2)), random=m.group(1) == "random")
