"""Fully connected layers on the GPU: cuBLAS SGEMM/DGEMM through CuPy (no TF32: CuPy uses full fp32
unless CUPY_TF32=1 is set, which pyconvnet never does).

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.fc`` (layouts there),
on C-contiguous float32/float64 CuPy arrays, plus an ``out`` keyword: a C-contiguous CuPy array of the
result's shape and dtype to write into (new array by default).
"""
from __future__ import annotations

from ...ops._check import check_array, check_same_dtype
from ...ops.fc import check_fc_bwd_data, check_fc_bwd_filter, check_fc_fwd
from ..launch import check_device_array


def _devices(op, **arrays):
    for name, a in arrays.items():
        if a is not None:
            check_device_array(op, name, a)


def _matmul(op, a, b, out, shape, like):
    import cupy

    if out is not None:
        check_device_array(op, "out", out)
        check_array(op, "out", out, shape=shape)
        check_same_dtype(op, out=out, **{"input": like})
    return cupy.matmul(a, b, out=out)


def fc_fwd(x, w, b=None, *, out=None):
    """y (F_out, N) = w.T @ x + b for x (F_in, N), w (F_in, F_out), b None or (F_out, 1)."""
    _devices("fc_fwd", x=x, w=w, b=b)
    check_fc_fwd(x, w, b)
    y = _matmul("fc_fwd", w.T, x, out, (w.shape[1], x.shape[1]), x)
    if b is not None:
        y += b
    return y


def fc_bwd_data(dy, w, *, out=None):
    """dx (F_in, N) = w @ dy for dy (F_out, N), w (F_in, F_out)."""
    _devices("fc_bwd_data", dy=dy, w=w)
    check_fc_bwd_data(dy, w)
    return _matmul("fc_bwd_data", w, dy, out, (w.shape[0], dy.shape[1]), dy)


def fc_bwd_filter(dy, x, *, out=None):
    """dw (F_in, F_out) = x @ dy.T for dy (F_out, N), x (F_in, N)."""
    _devices("fc_bwd_filter", dy=dy, x=x)
    check_fc_bwd_filter(dy, x)
    return _matmul("fc_bwd_filter", x, dy.T, out, (x.shape[0], dy.shape[0]), dy)
