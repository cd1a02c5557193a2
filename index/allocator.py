"""jemalloc for an ingest on a CPU: `python -m index.ingest` re-executes itself once with jemalloc preloaded.

Why this file exists: glibc's allocator hands the large activation buffers of every encoder batch back to the
kernel and faults them in again on the next one; jemalloc keeps them. Measured on the default model in
int8 (docs/benchmarks.md, "Encoder on a CPU"): 10-20% less CPU time per passage; training gained
1.4-1.6x (scripts/with-jemalloc.sh). The allocator must be in place before the process starts, hence the
re-execution, done at the start of the command before anything heavy is imported.

Nothing happens without libjemalloc2 (`apt-get install libjemalloc2`), when jemalloc is already preloaded,
after one attempt (a marker variable stops a loop if the preload fails), or with NVEMBED_JEMALLOC=0.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

JEMALLOC_ENV = "NVEMBED_JEMALLOC"  # "0": keep the C library's allocator
_MARKER = "NVEMBED_JEMALLOC_TRIED"  # set in the re-executed process: never try twice
# The settings scripts/with-jemalloc.sh uses (Intel's PyTorch CPU guidance): keep freed pages, arenas for all.
MALLOC_CONF = ("oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,"
               "muzzy_decay_ms:-1")
_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
               "/usr/lib64/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")


def jemalloc_library() -> str | None:
    """The path (or soname) of libjemalloc on this machine, or None."""
    for path in _CANDIDATES:
        if Path(path).is_file():
            return path
    return ctypes.util.find_library("jemalloc")


def jemalloc_env(environ: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute with, or None when this process should run as it is."""
    if environ.get(JEMALLOC_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    preload = environ.get("LD_PRELOAD", "")
    if library is None or environ.get(_MARKER) or "jemalloc" in preload:
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = f"{library}:{preload}" if preload else library
    env.setdefault("MALLOC_CONF", MALLOC_CONF)
    env[_MARKER] = "1"
    return env


def reexec_with_jemalloc() -> None:
    """Replace this process by the same command under jemalloc, when that applies (see the module docstring)."""
    env = jemalloc_env(os.environ, jemalloc_library())
    if env is None or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def allocator() -> str:
    """"jemalloc" when this process runs with it preloaded, else "libc"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "libc"
    return "jemalloc" if "libjemalloc" in maps else "libc"
