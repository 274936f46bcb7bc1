"""cuBLAS GEMMs that work inside a CUDA-graph capture as well as outside one.

CuPy's own cuBLAS path (``cupy.matmul`` and ``cupy.cuda.device.get_cublas_handle``) points its handle at
the current stream before every call, and refuses to do that while the stream is being captured. cuBLAS
itself can be captured. So pyconvnet keeps its own handles, one per (device, stream), each bound to its
stream once, when it is made (never during a capture), with a workspace of its own set explicitly (so
no call inside a capture has to allocate one). `prepare(stream)` makes the handle of a stream ahead of a
capture; `release(stream)` frees it when the stream goes away.

The GEMMs are column-major cuBLAS calls on C-contiguous CuPy arrays, with the handle's default math
mode: full float32, no TF32.
"""
from __future__ import annotations

import numpy as np

WORKSPACE_BYTES = 32 << 20  # cuBLAS's recommendation for Hopper

_handles = {}  # (device id, stream ptr) -> (handle, workspace array or None)


def _lib():
    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:  # CuPy releases before cupy_backends
        from cupy.cuda import cublas
    return cublas


def _key(stream):
    import cupy
    return cupy.cuda.runtime.getDevice(), int(stream.ptr)


def prepare(stream=None):
    """The (cuBLAS module, handle) bound to ``stream`` (default: the current one), made now if needed.
    Must be called before a capture on ``stream`` begins when the capture calls `gemm`."""
    import cupy

    stream = stream if stream is not None else cupy.cuda.get_current_stream()
    cublas = _lib()
    key = _key(stream)
    entry = _handles.get(key)
    if entry is None:
        if cupy.cuda.runtime.streamIsCapturing(stream.ptr):
            raise RuntimeError("pyconvnet.cuda.blas: no cuBLAS handle for this stream, and none can be "
                               "made while it captures a CUDA graph; call blas.prepare(stream) first")
        handle = cublas.create()
        cublas.setStream(handle, stream.ptr)
        work = None
        set_ws = getattr(cublas, "setWorkspace", None)
        if set_ws is not None:
            with stream:
                work = cupy.empty(WORKSPACE_BYTES, np.uint8)
            set_ws(handle, work.data.ptr, WORKSPACE_BYTES)
        entry = _handles[key] = (handle, work)
    return cublas, entry[0]


def release(stream) -> None:
    """Destroy the handle of ``stream`` (if one was made); call when the stream is no longer used."""
    entry = _handles.pop(_key(stream), None)
    if entry is not None:
        _lib().destroy(entry[0])


def gemm(transa: bool, transb: bool, m: int, n: int, k: int, a, lda: int, b, ldb: int, c, ldc: int,
         beta: float = 0.0) -> None:
    """C = op(A) @ op(B) + beta * C in cuBLAS's column-major terms (C is m x n), on the current stream.
    ``a``, ``b``, ``c``: CuPy arrays of one float dtype (float32: SGEMM, float64: DGEMM)."""
    cublas, handle = prepare()
    dt = np.dtype(c.dtype)
    f = cublas.sgemm if dt == np.float32 else cublas.dgemm
    one, bt = np.ones((), dt), np.array(beta, dt)
    op_t, op_n = cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N
    f(handle, op_t if transa else op_n, op_t if transb else op_n, m, n, k, one.ctypes.data,
      a.data.ptr, lda, b.data.ptr, ldb, bt.ctypes.data, c.data.ptr, ldc)

