"""Fully connected layers on the GPU: cuBLAS SGEMM/DGEMM through `pyconvnet.cuda.blas` (full fp32, no
TF32; its handles also work inside a CUDA-graph capture). Inside `pyconvnet.cuda.graph.without_cublas`
they run as 1x1 convolutions through kernels/conv.cu instead: x (F_in, N) is the image (F_in, 1, 1, N),
w the filters (F_in, 1, 1, F_out).

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


def _gemm(op, transa, transb, m, n, k, a, lda, b, ldb, out, shape, like, rowmajor):
    """``out`` (new when None) of row-major ``shape`` = the column-major cuBLAS product (see blas.gemm);
    where pyconvnet cannot call cuBLAS itself, ``cupy.matmul(*rowmajor)`` (the same product)."""
    import cupy

    from .. import blas

    _out_check(op, out, shape, like)
    if not blas.available():
        return cupy.matmul(*rowmajor, out=out)
    if out is None:
        out = cupy.empty(shape, like.dtype)
    if out.size:
        if k:
            blas.gemm(transa, transb, m, n, k, a, lda, b, ldb, out, ldc=m)
        else:
            out.fill(0)
    return out


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
    F_in, F_out = w.shape
    N = x.shape[1]
    # column-major: Y (N x F_out) = X (N x F_in) @ W^T, W = w seen as F_out x F_in
    y = _gemm("fc_fwd", False, True, N, F_out, F_in, x, N, w, F_out, out, (F_out, N), x, (w.T, x))
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
    F_in, F_out = w.shape
    N = dy.shape[1]
    # column-major: DX (N x F_in) = DY (N x F_out) @ W (F_out x F_in)
    return _gemm("fc_bwd_data", False, False, N, F_in, F_out, dy, N, w, F_out, out, (F_in, N), dy, (w, dy))


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
    F_in, F_out, N = x.shape[0], dy.shape[0], x.shape[1]
    # column-major: DW (F_out x F_in) = DY^T (F_out x N) @ X (N x F_in)
    return _gemm("fc_bwd_filter", True, False, F_out, F_in, N, dy, N, x, N, out, (F_in, F_out), dy,
                 (x, dy.T))
