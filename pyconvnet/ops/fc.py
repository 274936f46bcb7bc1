"""Fully connected layers: the NumPy reference.

Layouts (C-contiguous, batch innermost): activations x (F_in, N), y (F_out, N); weights
w (F_in, F_out); bias b (F_out, 1). y = w.T @ x + b. The bias gradient is
``pyconvnet.ops.conv.bias_bwd(dy, True)``. float32 and float64; outputs have the input dtype.

Each op is one matmul on one BLAS thread (see ``pyconvnet.ops._parallel``); a large one is cut into
blocks of ``ROW_BLOCK`` rows of its result, run on our threads (the blocks never depend on the
thread count, so neither do the results).
"""
from __future__ import annotations

import numpy as np

from pyconvnet.ops._check import check_array, check_same_dtype, fail
from pyconvnet.ops._parallel import blocks, run_blocks, single_threaded_blas

# Rows of the result per task of a large matmul, and the multiply-adds from which one is split.
ROW_BLOCK = 256
SPLIT_MIN_MACS = 1 << 24


def _check_pair(op, x, w, xname="x"):
    check_array(op, xname, x, 2)
    check_array(op, "w", w, 2)
    check_same_dtype(op, **{xname: x, "w": w})


def check_fc_fwd(x, w, b):
    """The argument checks of fc_fwd (shared with the CUDA backend)."""
    op = "fc_fwd"
    _check_pair(op, x, w)
    if x.shape[0] != w.shape[0]:
        fail(op, f"x {x.shape} has {x.shape[0]} features but w {w.shape} expects {w.shape[0]}")
    if b is not None:
        check_array(op, "b", b, 2, shape=(w.shape[1], 1))
        check_same_dtype(op, x=x, w=w, b=b)


def check_fc_bwd_data(dy, w):
    """The argument checks of fc_bwd_data (shared with the CUDA backend)."""
    op = "fc_bwd_data"
    _check_pair(op, dy, w, "dy")
    if dy.shape[0] != w.shape[1]:
        fail(op, f"dy {dy.shape} has {dy.shape[0]} features but w {w.shape} has {w.shape[1]} "
                 f"outputs")


def check_fc_bwd_filter(dy, x):
    """The argument checks of fc_bwd_filter (shared with the CUDA backend)."""
    op = "fc_bwd_filter"
    check_array(op, "dy", dy, 2)
    check_array(op, "x", x, 2)
    check_same_dtype(op, dy=dy, x=x)
    if dy.shape[1] != x.shape[1]:
        fail(op, f"dy {dy.shape} and x {x.shape} must have the same batch size")


def _matmul(a, b):
    """a @ b (a may be a transposed view), by blocks of rows of the result on our threads."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    out = np.empty((m, n), dtype=np.result_type(a, b))
    rows = blocks(m, ROW_BLOCK) if m * k * n >= SPLIT_MIN_MACS else [(0, m)]
    with single_threaded_blas():
        run_blocks(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), rows)
    return out


def fc_fwd(x, w, b=None):
    """y (F_out, N) = w.T @ x + b for x (F_in, N), w (F_in, F_out), b None or (F_out, 1)."""
    check_fc_fwd(x, w, b)
    y = _matmul(w.T, x)
    if b is not None:
        y += b
    return y


def fc_bwd_data(dy, w):
    """dx (F_in, N) = w @ dy for dy (F_out, N), w (F_in, F_out)."""
    check_fc_bwd_data(dy, w)
    return _matmul(w, dy)


def fc_bwd_filter(dy, x):
    """dw (F_in, F_out) = x @ dy.T for dy (F_out, N), x (F_in, N)."""
    check_fc_bwd_filter(dy, x)
    return _matmul(x, dy.T)
