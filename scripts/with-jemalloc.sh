#!/usr/bin/env bash
# Run a command with jemalloc as the memory allocator when libjemalloc2 is installed
# (apt-get install libjemalloc2), otherwise unchanged. Why: CPU training under glibc malloc spends about a
# third of its CPU time in the kernel, unmapping and re-faulting the large activation buffers every step;
# jemalloc keeps them (measured in docs/benchmarks.md, Training: benchmarks/train.py --allocators).
# Usage: scripts/with-jemalloc.sh COMMAND [ARGS...]
LIB=$(ldconfig -p 2>/dev/null | awk '/libjemalloc\.so\.2 /{print $NF; exit}')
if [ -n "$LIB" ]; then
    export LD_PRELOAD="$LIB${LD_PRELOAD:+:$LD_PRELOAD}"
    # Intel's PyTorch CPU settings: never return freed pages to the OS, big allocations from arenas.
    export MALLOC_CONF="${MALLOC_CONF:-oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1}"
elif [ -n "${REQUIRE_JEMALLOC:-}" ]; then
    echo "with-jemalloc: libjemalloc.so.2 not found (apt-get install libjemalloc2)" >&2
    exit 3
fi
exec "$@"
