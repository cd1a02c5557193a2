"""Teacher embeddings computed once for a whole text pool, so distillation steps cost only the student.

Distilling from all-MiniLM-L6-v2 on the fly embeds every text of every step again with the teacher. On a
CPU that is a real share of a step, and it is repeated on every epoch and every resumed run. This module
embeds the pool once (`build`) into one `.npz` file (text keys, float16 vectors, the token limit used) and
serves it through the same `embed(texts, max_length)` the trainer asks of a teacher (`CachedTeacher`). A
text that is not in the file is embedded by the live teacher (loaded only then) and counted as a miss.

    python -m training.teacher_cache --data runs/data/weak/debian.jsonl ... --out teacher-64.npz --max-length 64 \
        [--extend]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batching import text_key
from .data import read_jsonl


def pool_texts(files: Sequence[str | Path]) -> list[str]:
    """Every distinct query, positive and negative text of the given training files, in first-seen order."""
    seen: dict[int, str] = {}
    for path in files:
        for example in read_jsonl(Path(path)):
            for text in [example.query, example.positive, *example.negatives]:
                seen.setdefault(text_key(text), text)
    return list(seen.values())


def build(teacher: Any, texts: Sequence[str], out: Path, max_length: int, batch_size: int = 64) -> dict[str, Any]:
    """Embed `texts` with `teacher` (an `encode_passages` embedder) and write the cache file."""
    started = time.perf_counter()
    vectors = teacher.encode_passages(list(texts), batch_size=batch_size, max_length=max_length)
    keys = np.array([text_key(t) for t in texts], dtype=np.int64)
    _write(out, keys, vectors.astype(np.float16), max_length, getattr(teacher, "name", "teacher"))
    return {"texts": len(texts), "seconds": round(time.perf_counter() - started, 1), "path": str(out)}


def extend(teacher: Any, texts: Sequence[str], out: Path, max_length: int, batch_size: int = 64) -> dict[str, Any]:
    """Add to the cache file `out` the texts it lacks, keeping its rows (building it when there is none).

    One cache then serves every run whose pool grew (the long run's, then the recipe arms'); a cache of
    another token limit or another teacher is an error rather than a mixture."""
    if not out.is_file():
        return build(teacher, texts, out, max_length, batch_size)
    started = time.perf_counter()
    data = np.load(out)
    name = getattr(teacher, "name", "teacher")
    if int(data["max_length"]) != max_length or str(data["teacher"]) != name:
        raise ValueError(f"teacher cache {out} holds {data['teacher']} at max_length {int(data['max_length'])}, "
                         f"not {name} at {max_length}: write another file")
    have = {int(k) for k in data["keys"]}
    missing = [t for t in texts if text_key(t) not in have]
    if missing:
        vectors = teacher.encode_passages(missing, batch_size=batch_size, max_length=max_length)
        keys = np.concatenate([data["keys"], np.array([text_key(t) for t in missing], dtype=np.int64)])
        _write(out, keys, np.concatenate([data["vectors"], vectors.astype(np.float16)]), max_length, name)
    return {"texts": len(have) + len(missing), "added": len(missing),
            "seconds": round(time.perf_counter() - started, 1), "path": str(out)}


def _write(out: Path, keys: np.ndarray, vectors: np.ndarray, max_length: int, teacher: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, keys=keys, vectors=vectors, max_length=np.array(max_length), teacher=np.array(teacher))
    tmp.replace(out)  # a run reading the old file keeps it; the next one opens the new


class CachedTeacher:
    """A teacher whose embeddings come from a `build` file; misses go to the live `fallback` teacher."""

    def __init__(self, path: str | Path, fallback: Any | None, max_length: int):
        data = np.load(Path(path))
        stored = int(data["max_length"])
        if stored != max_length:
            raise ValueError(f"teacher cache {path} was built with max_length {stored}, the stage uses {max_length}")
        self.rows = {int(k): i for i, k in enumerate(data["keys"])}
        self.vectors = torch.from_numpy(data["vectors"].astype(np.float32))
        self.fallback = fallback
        self.hits = self.misses = 0

    def embed(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        rows = [self.rows.get(text_key(t)) for t in texts]
        out = torch.empty(len(texts), self.vectors.shape[1])
        found = [i for i, r in enumerate(rows) if r is not None]
        if found:
            out[found] = self.vectors[[rows[i] for i in found]]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            if self.fallback is None:
                raise KeyError(f"{len(missing)} texts are not in the teacher cache and no live teacher was given")
            out[missing] = self.fallback.embed([texts[i] for i in missing], max_length).float().cpu()
        self.hits += len(found)
        self.misses += len(missing)
        return out


class FirstUseMiniLM:
    """all-MiniLM-L6-v2, loaded only when a text must be embedded: extending an up-to-date cache loads nothing."""

    def __init__(self) -> None:
        from .teacher import MiniLMTeacher

        self.name, self._make, self._model = MiniLMTeacher.name, MiniLMTeacher, None

    def encode_passages(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        if self._model is None:
            self._model = self._make()
        return self._model.encode_passages(texts, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="training JSONL files whose texts to embed")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-length", type=int, required=True, help="the stage's max_length (teacher tokens)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--extend", action="store_true",
                        help="keep an existing --out and embed only the texts it lacks")
    args = parser.parse_args(argv)
    texts = pool_texts(args.data)
    print(f"[teacher cache] {len(texts)} distinct texts from {len(args.data)} files", file=sys.stderr, flush=True)
    write = extend if args.extend else build
    try:
        report = write(FirstUseMiniLM(), texts, args.out, args.max_length, args.batch_size)
    except ValueError as exc:
        print(f"[teacher cache] {exc}", file=sys.stderr)
        return 2
    print(f"[teacher cache] {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
