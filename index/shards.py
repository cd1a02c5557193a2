"""Sharded embedding under `torchrun`: every process embeds part of the new passages, one process commits.

`torchrun --nproc_per_node N -m index.ingest DOCS ...` starts N copies of the CLI. Rank 0 runs the ordinary
ingest (walk, skip unchanged, parse, chunk, commit under the writer lock); only its `IngestTarget.embed` is
replaced by `ShardedEmbedder`, which splits each group of passages into N contiguous parts. Every rank
(rank 0 included) embeds its part with its own copy of the model on its own device (`cuda:LOCAL_RANK` with
CUDA, else the CPU) and writes it as a shard file; rank 0 reads the shards back and commits. The other ranks
run `serve`: wait for a part, embed it, write the shard, report, until rank 0 says stop.

A shard (`<index>/shards/<sha>.npz`, written atomically) holds, for each passage: its position in the
group (the chunk id within the group; database ids are only assigned at commit), the SHA-256 of its text
(the content hash: what a shard is looked up by) and its vector, plus the model fingerprint. Before
embedding, rank 0 loads every shard of the same fingerprint, so a re-run after a kill (or after a run with
`--keep-shards`) embeds only the passages no shard holds. Shards are deleted after a run that finished.

The ranks talk through `torch.distributed` (gloo on CPUs, nccl on GPUs; initialised from the torchrun
environment by `training.distributed.init_from_env`); the shard files need a folder all ranks see (one
machine, or a shared file system). Errors on any rank are gathered and raised on rank 0, which then tells
every rank to stop, so no rank is left waiting.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IndexStoreError

log = logging.getLogger(__name__)

SHARD_DIR = "shards"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shard_dir(index_directory: str | os.PathLike[str]) -> Path:
    return Path(index_directory) / SHARD_DIR


def write_shard(directory: Path, fingerprint: str, hashes: list[str], vectors: np.ndarray) -> Path:
    """Write one shard atomically; its name is derived from its fingerprint and content hashes."""
    directory.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256((fingerprint + "\n" + "\n".join(hashes)).encode()).hexdigest()[:32]
    path = directory / f"{name}.npz"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, chunk_ids=np.arange(len(hashes), dtype=np.int64), hashes=np.asarray(hashes, dtype="U64"),
                     fingerprint=np.asarray(fingerprint), vectors=np.asarray(vectors, dtype=np.float32))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_shard(path: Path) -> tuple[str, list[str], np.ndarray]:
    """(fingerprint, content hashes, vectors) of a shard file."""
    with np.load(path, allow_pickle=False) as z:
        return str(z["fingerprint"]), [str(h) for h in z["hashes"]], np.asarray(z["vectors"], dtype=np.float32)


def load_shards(directory: Path, fingerprint: str, dimension: int) -> dict[str, np.ndarray]:
    """Content hash -> vector from every readable shard of `fingerprint` (others are ignored, with a warning)."""
    found: dict[str, np.ndarray] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.npz")):
        try:
            fp, hashes, vectors = read_shard(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable shard %s: %s", path, exc)
            continue
        if fp != fingerprint or vectors.shape != (len(hashes), dimension):
            continue
        found.update(zip(hashes, vectors, strict=True))
    return found


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous (lo, hi) ranges covering range(n), sizes differing by at most one."""
    base, extra = divmod(n, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def _embed_part(embed: Callable[[list[str]], np.ndarray], texts: list[str], directory: Path,
                fingerprint: str) -> tuple[str | None, str | None]:
    """Embed `texts` and write them as a shard: (shard path, None) or (None, error message)."""
    if not texts:
        return None, None
    try:
        vectors = embed(texts)
        return str(write_shard(directory, fingerprint, [text_hash(t) for t in texts], vectors)), None
    except Exception as exc:  # reported to rank 0, which raises it
        return None, f"{type(exc).__name__}: {exc}"


def gather_object(value: Any) -> list[Any]:
    """`value` from every rank, in rank order."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


@dataclass
class ShardStats:
    embedded: int = 0  # passages embedded by all ranks together
    reused: int = 0  # passages found in shards written before
    shards: int = 0  # shard files written


class ShardedEmbedder:
    """Rank 0's `IngestTarget.embed`: shares each group of passages out over the ranks (see module doc)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], directory: Path, fingerprint: str, dimension: int):
        from training.distributed import current

        self.info = current()
        self.local_embed = embed
        self.directory = directory
        self.fingerprint = fingerprint
        self.dimension = int(dimension)
        self.stats = ShardStats()
        self._known: dict[str, np.ndarray] | None = None
        self.stopped = False

    def __call__(self, texts: list[str]) -> np.ndarray:
        from training.distributed import broadcast_object

        if self._known is None:
            self._known = load_shards(self.directory, self.fingerprint, self.dimension)
        hashes = [text_hash(t) for t in texts]
        missing = sorted({h: i for i, h in enumerate(hashes) if h not in self._known}.values())
        self.stats.reused += len(texts) - len(missing)
        if missing:
            todo = [texts[i] for i in missing]
            broadcast_object(("embed", todo))
            results = gather_object(self._own_part(todo))
            errors = [f"rank {r}: {err}" for r, (_, err) in enumerate(results) if err]
            if errors:
                raise RuntimeError("sharded embedding failed: " + "; ".join(errors))
            for path, _ in results:
                if path is None:
                    continue
                fp, part_hashes, vectors = read_shard(Path(path))
                if fp != self.fingerprint or vectors.shape != (len(part_hashes), self.dimension):
                    raise RuntimeError(f"shard {path} does not match model {self.fingerprint} / dimension "
                                       f"{self.dimension}: the ranks loaded different models")
                self._known.update(zip(part_hashes, vectors, strict=True))
                self.stats.shards += 1
            self.stats.embedded += len(todo)
        return np.ascontiguousarray(np.stack([self._known[h] for h in hashes])) if texts \
            else np.zeros((0, self.dimension), np.float32)

    def _own_part(self, todo: list[str]) -> tuple[str | None, str | None]:
        lo, hi = split(len(todo), self.info.world_size)[self.info.rank]
        return _embed_part(self.local_embed, todo[lo:hi], self.directory, self.fingerprint)

    def stop(self) -> None:
        """Tell the other ranks to leave `serve` (call once, whatever happened)."""
        from training.distributed import broadcast_object

        if not self.stopped:
            self.stopped = True
            broadcast_object(("stop", None))

    def clean(self) -> None:
        """Delete the shard files (after everything they hold was committed)."""
        if self.directory.is_dir():
            for path in self.directory.glob("*.npz"):
                path.unlink(missing_ok=True)
            try:
                self.directory.rmdir()
            except OSError:
                pass


def serve(embed: Callable[[list[str]], np.ndarray], directory: Path, fingerprint: str) -> int:
    """A rank other than 0: embed the parts rank 0 sends until it says stop; returns passages embedded."""
    from training.distributed import broadcast_object, current

    info = current()
    done = 0
    while True:
        command, todo = broadcast_object(None)
        if command == "stop":
            return done
        lo, hi = split(len(todo), info.world_size)[info.rank]
        result = _embed_part(embed, todo[lo:hi], directory, fingerprint)
        done += (hi - lo) if result[1] is None else 0
        gather_object(result)


def rank_device(requested: str | None, local_rank: int) -> str:
    """The device this rank embeds on: cuda:LOCAL_RANK with CUDA (or `--device cuda`), else cpu, or `requested`."""
    import torch

    if requested and requested != "cuda":
        return requested
    if requested == "cuda" or (requested is None and torch.cuda.is_available()):
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise IndexStoreError(f"process {local_rank} of this node has no GPU ({visible} visible): start at most "
                             f"{visible} processes per node (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"


def world_size_from_env() -> int:
    """How many processes torchrun started (1 for a plain `python -m index.ingest`)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1
