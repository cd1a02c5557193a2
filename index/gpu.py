"""Exact search on a GPU without a GPU build of faiss: a matrix product and top-k in torch.

PyPI's faiss GPU wheels need CUDA 12 runtimes that cannot always be installed next to the project's torch,
so this path gives GPU search with only torch: the vectors live on the device as one (N, d) matrix, a batch
of queries is scored with one matmul (in slices of rows to bound memory) and `torch.topk` keeps the best k.
An optional id mask restricts the search (a filter), so filtered searches are exact here too.
This module deliberately does not import faiss, so it can be benchmarked on a machine without it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

# Device files of a GPU driver torch can use (NVIDIA, NVIDIA under WSL, AMD ROCm).
GPU_DEVICE_FILES = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device.

    Without any GPU driver on the machine the answer is False without importing torch: that import takes
    seconds, and the app's first page asks where searches run before anything else needs torch.
    """
    if "torch" not in sys.modules and not any(Path(f).exists() for f in GPU_DEVICE_FILES):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class TorchSearcher:
    """Exact inner-product top-k over a fixed set of vectors on a torch device."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, device: str = "cuda", dtype: Any = None,
                 rows_per_step: int = 1 << 20):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.device_name = f"torch-{self.device.type}"
        self.dtype = dtype or torch.float32
        self.vectors = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device, self.dtype)
        self.ids = torch.as_tensor(np.asarray(ids, dtype=np.int64)).to(self.device)
        self.rows_per_step = int(rows_per_step)

    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), best first; missing slots are -inf / -1 like faiss."""
        torch = self.torch
        q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, self.dtype)
        n = q.shape[0]
        mask = None
        if allowed is not None:
            mask = torch.isin(self.ids, torch.as_tensor(np.asarray(allowed, dtype=np.int64), device=self.device))
        best_s = torch.full((n, 0), float("-inf"), device=self.device)
        best_i = torch.full((n, 0), -1, dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            for start in range(0, self.ntotal, self.rows_per_step):
                block = self.vectors[start : start + self.rows_per_step]
                scores = (q @ block.T).float()
                if mask is not None:
                    scores = scores.masked_fill(~mask[start : start + self.rows_per_step], float("-inf"))
                kk = min(k, scores.shape[1])
                s, i = torch.topk(scores, kk, dim=1)
                best_s = torch.cat([best_s, s], dim=1)
                best_i = torch.cat([best_i, self.ids[start : start + self.rows_per_step][i]], dim=1)
                if best_s.shape[1] > k:
                    best_s, order = torch.topk(best_s, k, dim=1)
                    best_i = torch.gather(best_i, 1, order)
        best_i = best_i.masked_fill(torch.isinf(best_s), -1)
        out_s = np.full((n, k), -np.inf, dtype=np.float32)
        out_i = np.full((n, k), -1, dtype=np.int64)
        width = best_s.shape[1]
        out_s[:, :width] = best_s.cpu().numpy()
        out_i[:, :width] = best_i.cpu().numpy()
        return out_s, out_i
