"""Fully connected layers on the GPU: cuBLAS SGEMM/DGEMM through CuPy (no TF32: CuPy uses full fp32
unless CUPY_TF32=1 is set, which pyconvnet never does). Inside `pyconvnet.cuda.graph.without_cublas`
(CUDA-graph capture: CuPy refuses cuBLAS calls while a stream captures) they run as 1x1 convolutions
through kernels/conv.cu instead: x (F_in, N) is the image (F_in, 1, 1, N), w the filters
(F_in, 1, 1, F_out).

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

    _out_check(op, out, shape, like)
    return cupy.matmul(a, b, out=out)


def _kernels_only() -> bool:
    from ..graph import cublas_allowed
    return not cublas_allowed()


def _img(a):  # (F, N) -> (F, 1, 1, N)
    return a.reshape(a.shape[0], 1, 1, a.shape[1])


def _out_check(op, out, shape, like):
    if out is not None:
        check_device_array(op, "out", out)
        check_array(op, "out", out, shape=shape)
        check_same_dtype(op, out=out, **{"input": like})


def fc_fwd(x, w, b=None, *, out=None):
    """y (F_out, N) = w.T @ x + b for x (F_in, N), w (F_in, F_out), b None or (F_out, 1)."""
    _devices("fc_fwd", x=x, w=w, b=b)
    check_fc_fwd(x, w, b)
    if _kernels_only():
        from . import conv
        shape = (w.shape[1], x.shape[1])
        _out_check("fc_fwd", out, shape, x)
        y = conv.conv_fwd(_img(x), _img(w), b, out=None if out is None else _img(out))
        return y.reshape(shape) if out is None else out
    y = _matmul("fc_fwd", w.T, x, out, (w.shape[1], x.shape[1]), x)
    if b is not None:
        y += b
    return y


def fc_bwd_data(dy, w, *, out=None):
    """dx (F_in, N) = w @ dy for dy (F_out, N), w (F_in, F_out)."""
    _devices("fc_bwd_data", dy=dy, w=w)
    check_fc_bwd_data(dy, w)
    if _kernels_only():
        from . import conv
        shape = (w.shape[0], dy.shape[1])
        _out_check("fc_bwd_data", out, shape, dy)
        dx = conv.conv_bwd_data(_img(dy), _img(w), (1, 1), out=None if out is None else _img(out))
        return dx.reshape(shape) if out is None else out
    return _matmul("fc_bwd_data", w, dy, out, (w.shape[0], dy.shape[1]), dy)


def fc_bwd_filter(dy, x, *, out=None):
    """dw (F_in, F_out) = x @ dy.T for dy (F_out, N), x (F_in, N)."""
    _devices("fc_bwd_filter", dy=dy, x=x)
    check_fc_bwd_filter(dy, x)
    if _kernels_only():
        from . import conv
        shape = (x.shape[0], dy.shape[0])
        _out_check("fc_bwd_filter", out, shape, dy)
        dw = conv.conv_bwd_filter(_img(dy), _img(x), 1, out=None if out is None else _img(out))
        return dw.reshape(shape) if out is None else out
    return _matmul("fc_bwd_filter", x, dy.T, out, (x.shape[0], dy.shape[0]), dy)
