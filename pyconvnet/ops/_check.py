"""Argument checks shared by every op, on both backends.

Every public op validates its arguments here before touching them, so a caller gets one
``ValueError`` that names the op, the argument and the shapes, instead of a traceback from deep
inside NumPy or a silently wrong result. The helpers only read ``.dtype``, ``.shape``, ``.ndim``
and ``.flags``, so they work for NumPy and CuPy arrays alike.
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def fail(op: str, msg: str) -> None:
    """Raise the single error type of the op interface."""
    raise ValueError(f"{op}: {msg}")


def check_array(op: str, name: str, a, ndim: int | None = None, dtype=None, shape=None):
    """Check that ``a`` is a C-contiguous float32/float64 array (or of ``dtype``) of ``ndim`` dims.

    ``shape`` may hold ``None`` for dimensions that are free. Returns ``a`` unchanged.
    """
    if not hasattr(a, "dtype") or not hasattr(a, "shape") or not hasattr(a, "flags"):
        fail(op, f"{name} must be an array, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            fail(op, f"{name} must be float32 or float64, got {a.dtype} with shape {tuple(a.shape)}")
    elif a.dtype != np.dtype(dtype):
        fail(op, f"{name} must be {np.dtype(dtype)}, got {a.dtype} with shape {tuple(a.shape)}")
    if ndim is not None and a.ndim != ndim:
        fail(op, f"{name} must have {ndim} dimensions, got shape {tuple(a.shape)}")
    if shape is not None:
        if len(shape) != a.ndim or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            fail(op, f"{name} must have shape {want}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        fail(op, f"{name} must be C-contiguous (shape {tuple(a.shape)}, strides {a.strides})")
    return a


def check_same_dtype(op: str, **arrays) -> None:
    """All the named float arrays must share one dtype (no silent up- or down-casting)."""
    dts = {n: a.dtype for n, a in arrays.items() if a is not None}
    if len(set(dts.values())) > 1:
        fail(op, "inputs must share one dtype, got " + ", ".join(f"{n}={d}" for n, d in dts.items()))


def check_int(op: str, name: str, v, lo: int | None = None) -> int:
    """``v`` must be an integer (not bool) no smaller than ``lo``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        fail(op, f"{name} must be an integer, got {v!r}")
    if lo is not None and v < lo:
        fail(op, f"{name} must be >= {lo}, got {v}")
    return int(v)


def check_float(op: str, name: str, v, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> float:
    """``v`` must be a finite real number within [lo, hi] (or (lo, hi] with ``lo_open``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        fail(op, f"{name} must be a number, got {v!r}")
    v = float(v)
    if not np.isfinite(v):
        fail(op, f"{name} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        fail(op, f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        fail(op, f"{name} must be <= {hi}, got {v}")
    return v


def array_module(a):
    """NumPy for NumPy arrays, CuPy for CuPy arrays (without importing CuPy otherwise)."""
    mod = type(a).__module__
    if mod.startswith("cupy"):
        import cupy
        return cupy
    return np
