"""Split an op's independent work over a few threads.

NumPy releases the GIL inside its ufunc and copy loops, so the memory-bound parts of the reference
ops (pooling, spatial normalisation, im2col copies) run about twice as fast on two cores when they
are cut into blocks that write disjoint parts of the output. Results do not depend on the number of
threads: each block computes exactly what the whole-array code would for its part.

``PYCONVNET_CPU_THREADS`` sets the thread count (default: the CPUs this process may use; 1 turns
the threads off).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

_executor: list = []  # [ThreadPoolExecutor], created on first use


def num_threads() -> int:
    env = os.environ.get("PYCONVNET_CPU_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"PYCONVNET_CPU_THREADS must be a whole number, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def blocks(n: int, per: int):
    """[lo, hi) ranges of at most ``per`` items covering range(n)."""
    per = max(1, per)
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


def run_blocks(fn, ranges) -> None:
    """Call ``fn(lo, hi)`` for every range, on up to ``num_threads()`` threads; re-raises the
    first exception. The calls must write disjoint data."""
    ranges = list(ranges)
    nt = num_threads()
    if nt == 1 or len(ranges) == 1:
        for lo, hi in ranges:
            fn(lo, hi)
        return
    if not _executor:
        _executor.append(ThreadPoolExecutor(max_workers=nt, thread_name_prefix="pyconvnet-cpu"))
    futures = [_executor[0].submit(fn, lo, hi) for lo, hi in ranges]
    for f in futures:
        f.result()
