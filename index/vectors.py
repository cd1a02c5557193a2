"""The FAISS side of an index: exact inner-product search keyed by chunk id, IVF on request, GPU copies.

- `flat` (default): `IndexIDMap2(IndexFlatIP(d))`. Exact; ids are the database's chunk ids; an update is
  remove + add (FAISS accepts a duplicate id silently, so uniqueness comes from the database).
- `ivf`: `IndexIVFFlat` over an inner-product quantizer (spherical k-means), ids stored natively, with a
  hashtable direct map so `reconstruct` and `remove_ids` work by chunk id. While the corpus is smaller than
  `ivf_min_vectors` (k-means needs >= 39 vectors per list) the index stays exact; `maybe_train` converts it
  once enough vectors exist, and retrains after the corpus has grown `retrain_growth` times.
- Filters: the allowed chunk ids go into the search as a FAISS `IDSelectorBatch`, so a filtered search
  ranks only matching vectors and returns k of them whenever k exist (an IVF search that finds fewer than
  that in its `nprobe` lists is repeated over all lists).
- GPU: the canonical index stays on the CPU (GPU indexes cannot remove ids). With a GPU build of faiss and
  a GPU, unfiltered searches run on a `index_cpu_to_gpu` copy; without one, but with CUDA torch, on
  `gpu.TorchSearcher` (a matrix product + top-k). Either copy is rebuilt lazily after a change.
- Persistence: `save` writes to a temporary file, fsyncs it and renames it into place.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .config import VectorConfig
from .errors import InvalidInputError

log = logging.getLogger(__name__)


def faiss_gpu_available() -> bool:
    """True with a GPU build of faiss and at least one visible GPU."""
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


def default_nlist(n: int) -> int:
    """4 * sqrt(N) lists, at least 1, and no more than N / 39 (enough training points per centroid)."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))


def _as_matrix(vectors: np.ndarray, dimension: int) -> np.ndarray:
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dimension:
        raise InvalidInputError(f"expected vectors of shape (n, {dimension}), got {tuple(np.shape(vectors))}")
    return arr


def _as_ids(ids: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def fsync_replace(tmp: Path, path: Path) -> None:
    """Flush `tmp` to disk, then rename it over `path` (atomic on POSIX): a crash leaves the old or the new file."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class VectorIndex:
    """A FAISS index of unit vectors keyed by int64 chunk ids, with the policies described above."""

    def __init__(self, dimension: int, config: VectorConfig | None = None, index: Any = None):
        self.dimension = int(dimension)
        self.config = config or VectorConfig()
        self.config.validate()
        self.index = index if index is not None else self._new_flat()
        self.trained_size = int(self.index.ntotal) if self.kind == "ivf" else 0
        self._gpu: Any = None  # faiss GPU copy or TorchSearcher, rebuilt lazily
        self._gpu_failed = False

    def _new_flat(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    # ----------------------------------------------------------------------------------- basics ----
    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVF) else "flat"

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """Every id stored (duplicates included, in storage order)."""
        if self.kind == "flat":
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        inv = self.index.invlists
        parts = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
                 for i in range(self.index.nlist) if inv.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def add(self, ids: Any, vectors: np.ndarray) -> None:
        ids = _as_ids(ids)
        vectors = _as_matrix(vectors, self.dimension)
        if len(ids) != len(vectors):
            raise InvalidInputError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids):
            self.index.add_with_ids(vectors, ids)
            self._gpu = None

    def remove(self, ids: Any) -> int:
        ids = _as_ids(ids)
        if not len(ids):
            return 0
        self._gpu = None
        # IVF's hashtable direct map only removes through an IDSelectorArray
        return int(self.index.remove_ids(faiss.IDSelectorArray(ids)))

    def reconstruct(self, ids: Any) -> np.ndarray:
        ids = _as_ids(ids)
        if not len(ids):
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything stored, for retraining and GPU copies."""
        if self.kind == "flat":
            ids = self.ids()
            flat = faiss.downcast_index(self.index.index)
            return ids, flat.reconstruct_n(0, flat.ntotal) if len(ids) else np.zeros((0, self.dimension), np.float32)
        ids = self.ids()
        return ids, self.reconstruct(ids)

    # ----------------------------------------------------------------------------------- search ----
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k); empty slots have id -1. `allowed` restricts the search to those ids."""
        queries = _as_matrix(queries, self.dimension)
        k = int(k)
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        if self.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            return (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
        if allowed is None:
            gpu = self._gpu_copy()
            if gpu is not None:
                try:
                    return gpu.search(queries, k)
                except Exception as exc:  # a GPU failure must not fail the search
                    log.warning("GPU search failed (%s); using the CPU index", exc)
                    self._gpu, self._gpu_failed = None, True
            return self._cpu_search(queries, k, None)
        allowed = _as_ids(allowed)
        scores, ids = self._cpu_search(queries, k, allowed)
        want = min(k, len(allowed))
        if self.kind == "ivf" and (ids >= 0).sum(axis=1).min() < want:
            scores, ids = self._cpu_search(queries, k, allowed, nprobe=self.index.nlist)
        return scores, ids

    def _cpu_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
                    nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        sel = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=int(nprobe or min(self.config.nprobe, self.index.nlist)))
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        if len(queries) == 1 and faiss.omp_get_max_threads() > 1:
            # faiss parallelises a flat or IVF search over queries: with one query the other threads only
            # add start-up and spinning cost (measured 3.7x slower on 2 cores). The setting is per thread.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                scores, ids = self.index.search(queries, k, params=params)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            scores, ids = self.index.search(queries, k, params=params)
        return scores, ids.astype(np.int64)

    # -------------------------------------------------------------------------------------- GPU ----
    def _gpu_copy(self) -> Any:
        mode = self.config.gpu
        if mode == "off" or self._gpu_failed:
            return None
        if self._gpu is not None:
            return self._gpu
        try:
            if mode in ("auto", "faiss") and faiss_gpu_available():
                self._gpu = _FaissGpuCopy(self.index, self.config.nprobe)
            elif mode in ("auto", "torch"):
                from .gpu import TorchSearcher, cuda_available

                if cuda_available():
                    ids, vectors = self.all_vectors()
                    self._gpu = TorchSearcher(vectors, ids, device="cuda")
        except Exception as exc:
            log.warning("could not build a GPU copy of the index (%s); searching on the CPU", exc)
            self._gpu, self._gpu_failed = None, True
        return self._gpu

    @property
    def search_device(self) -> str:
        """Where an unfiltered search runs now: 'faiss-gpu', 'torch-cuda' or 'cpu'."""
        gpu = self._gpu_copy()
        return "cpu" if gpu is None else gpu.device_name

    # ------------------------------------------------------------------------------------- IVF -----
    def maybe_train(self) -> bool:
        """Convert to (or retrain) IVF when configured and the corpus is large enough. True if it did."""
        cfg = self.config
        n = self.ntotal
        if cfg.kind != "ivf":
            if self.kind == "ivf":  # switched back to exact
                ids, vectors = self.all_vectors()
                self.index = self._new_flat()
                self.add(ids, vectors)
                return True
            return False
        if n < cfg.ivf_min_vectors:
            return False
        if self.kind == "ivf" and n < cfg.retrain_growth * max(self.trained_size, 1):
            return False
        nlist = cfg.nlist or default_nlist(n)
        nlist = max(1, min(nlist, n // 39 or 1))
        ids, vectors = self.all_vectors()
        quantizer = faiss.IndexFlatIP(self.dimension)
        ivf = faiss.IndexIVFFlat(quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.spherical = True
        rng = np.random.default_rng(0)
        # 64 training points per list: k-means quality saturates well before faiss's 256, at a quarter of the time
        sample = vectors if n <= 64 * nlist else vectors[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        ivf.train(sample)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.add_with_ids(vectors, ids)
        self.index = ivf
        self.trained_size = n
        self._gpu = None
        return True

    # ------------------------------------------------------------------------------ persistence ----
    def save(self, path: Path) -> None:
        """Write atomically: temporary file, fsync, rename, fsync the directory."""
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        try:
            faiss.write_index(self.index, str(tmp))
            fsync_replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @classmethod
    def load(cls, path: Path, dimension: int, config: VectorConfig | None = None, mmap: bool = False) -> VectorIndex:
        flags = faiss.IO_FLAG_MMAP if mmap else 0
        index = faiss.read_index(str(path), flags)
        if index.d != dimension:
            raise InvalidInputError(f"vector file {path} has dimension {index.d}, the index record says {dimension}")
        obj = cls(dimension, config, index)
        if obj.kind == "ivf":
            obj.trained_size = max(obj.ntotal, 1)
        return obj

    def memory_bytes(self) -> int:
        """Size of the serialised index: about what it occupies in memory."""
        return int(len(faiss.serialize_index(self.index)))


class _FaissGpuCopy:
    """A faiss GPU clone used for unfiltered searches."""

    device_name = "faiss-gpu"

    def __init__(self, index: Any, nprobe: int):
        self.resources = faiss.StandardGpuResources()
        self.index = faiss.index_cpu_to_gpu(self.resources, 0, index)
        if isinstance(index, faiss.IndexIVF):
            faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", min(nprobe, index.nlist))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(queries, k)
        return scores, ids.astype(np.int64)
