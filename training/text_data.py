"""Plain texts for the LLM2Vec pre-stages (MNTP, SimCSE): reading them, and the sampler that draws batches.

The contrastive stages read (query, positive, negatives) examples; MNTP and unsupervised SimCSE need
only texts. Accepted files:

- `.txt`: one text per non-empty line;
- `.jsonl`: per line either `{"text": "..."}` (the `--pool` format of `training.mine`; other keys such
  as `title` or `id` are ignored) or a training example (`training/data.py` format), whose `positive`
  and `negatives` are taken: the passages of the existing training files, not their short queries.

Texts are stripped and deduplicated across all files (first occurrence kept). Every malformed line is
reported as `file:line: problem`, all at once, before any model is loaded.

`TextSampler` shuffles the pooled texts once per epoch (seeded) and hands out `batch_size` of them per
step, wrapping into the next epoch; its state (epoch, position) goes into checkpoints, so a resumed run
draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import MAX_REPORTED, DataError, json_lines


def _texts_of_line(data: Any) -> tuple[list[str], str | None]:
    if not isinstance(data, dict):
        return [], f"expected a JSON object, got {type(data).__name__}"
    if "text" in data:
        texts = [data["text"]]
    elif "positive" in data:
        negatives = data.get("negatives", [])
        texts = [data["positive"], *(negatives if isinstance(negatives, list) else [negatives])]
    else:
        return [], "expected a \"text\" field or a training example (\"positive\", \"negatives\")"
    if not all(isinstance(t, str) for t in texts):
        return [], "texts must be strings"
    return [t for t in texts if t.strip()], None


def load_texts(paths: Sequence[str | Path]) -> list[str]:
    """Every distinct text of the files, in file order; raise DataError listing every problem."""
    seen: dict[str, None] = {}
    problems: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            problems.append(f"{path}: file not found")
            continue
        found = 0
        if path.suffix == ".txt":
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        seen.setdefault(line.strip(), None)
                        found += 1
        else:
            for number, data, problem in json_lines(path):
                texts, problem = ([], problem) if problem else _texts_of_line(data)
                if problem:
                    problems.append(f"{path}:{number}: {problem}")
                for text in texts:
                    seen.setdefault(text.strip(), None)
                found += len(texts)
        if not found and not any(p.startswith(f"{path}:") for p in problems):
            problems.append(f"{path}: no texts")
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DataError(f"{len(problems)} problem(s) in text data:\n" + "\n".join(shown) + more)
    return list(seen)


class TextSampler:
    """Batches of texts without replacement within an epoch, reshuffled per epoch, deterministic by seed."""

    def __init__(self, texts: Sequence[str], batch_size: int, seed: int):
        if not texts:
            raise ValueError("TextSampler needs at least one text")
        self.texts = list(texts)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order: tuple[int, list[int]] | None = None

    def _current_order(self) -> list[int]:
        if self._order is None or self._order[0] != self.epoch:
            order = list(range(len(self.texts)))
            random.Random(f"texts-{self.seed}-{self.epoch}").shuffle(order)
            self._order = (self.epoch, order)
        return self._order[1]

    def next_batch(self) -> list[str]:
        batch = []
        for _ in range(self.batch_size):
            if self.position >= len(self.texts):
                self.epoch += 1
                self.position = 0
            batch.append(self.texts[self._current_order()[self.position]])
            self.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "size": len(self.texts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["size"] != len(self.texts):
            raise ValueError(f"the checkpoint's text pool has {state['size']} texts, the configured one {len(self.texts)}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
