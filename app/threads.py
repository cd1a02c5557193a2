"""Query embedding on a dedicated thread with few CPU threads.

A single short query gains little from intra-op parallelism, and on a busy machine OpenMP threads that
wait for each other at every operator make it much slower: on the shared 2-core test machine (load average
about 9) one query with the default model took 8.7 s with torch's default 2 threads and 0.5 s with 1.
So searches (whose only heavy step is embedding the query) run on one worker thread whose torch thread
count is `$NVEMBED_QUERY_THREADS` (default 1; 0 runs them inline with torch's defaults). Torch's thread
count is per thread, so ingests in other threads keep the default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

QUERY_THREADS_ENV = "NVEMBED_QUERY_THREADS"
T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_threads: int | None = None


def query_threads() -> int:
    try:
        return max(0, int(os.environ.get(QUERY_THREADS_ENV, "1") or 1))
    except ValueError:
        return 1


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # torch sets each thread's count lazily, from the process-wide value, on the thread's first query of
    # it: do that now, while the process-wide value is ours, so restoring it below leaves this thread alone
    torch.get_num_threads()


def _query_pool() -> ThreadPoolExecutor | None:
    global _pool, _threads
    wanted = query_threads()
    if wanted == 0:
        return None
    with _lock:
        if _pool is None or _threads != wanted:
            import torch

            previous = torch.get_num_threads()
            pool = ThreadPoolExecutor(1, thread_name_prefix="nvembed-query", initializer=_init_worker,
                                      initargs=(wanted,))
            pool.submit(int).result()  # start the worker now, then give new threads the default back
            torch.set_num_threads(previous)
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _threads = pool, wanted
        return _pool


def run_query(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the query thread (exceptions propagate to the caller)."""
    pool = _query_pool()
    if pool is None:
        return fn(*args, **kwargs)
    return pool.submit(fn, *args, **kwargs).result()
