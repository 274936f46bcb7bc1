"""The shared libraries mapped into this process, for the few places that call one directly through
ctypes (OpenBLAS's thread count, cuBLAS inside CUDA-graph captures)."""
from __future__ import annotations


def mapped_libraries(match) -> list[str]:
    """Sorted paths of the files mapped into this process for which ``match(path)`` is true (Linux's
    /proc/self/maps; an empty list where that cannot be read)."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    fields = (line.split(None, 5) for line in lines)
    return sorted({f[5] for f in fields if len(f) == 6 and match(f[5])})
