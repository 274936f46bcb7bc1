"""cuBLAS GEMMs that work inside a CUDA-graph capture as well as outside one.

CuPy's cuBLAS bindings point the handle at CuPy's current stream before every call, and refuse to do
that while the stream is being captured, so no CuPy cuBLAS call can be part of a CUDA graph. cuBLAS
itself can be captured. So pyconvnet calls the cuBLAS library (the one CuPy loaded) directly through
ctypes, with handles of its own, one per (device, stream), each bound to its stream once, when it is
made (never during a capture), with a workspace of its own set explicitly (so no call inside a capture
has to allocate one). `prepare(stream)` makes the handle of a stream ahead of a capture; `release(stream)`
frees it when the stream goes away.

The GEMMs are column-major cuBLAS calls on C-contiguous CuPy arrays, with the handle's default math
mode: full float32, no TF32. `capi()` has the strided-batched GEMMs with CuPy's argument order
(handle, transa, transb, m, n, k, alpha pointer, A, lda, stride A, B, ldb, stride B, beta pointer, C, ldc,
stride C, batch count).
"""
from __future__ import annotations

import ctypes
import re
from types import SimpleNamespace

import numpy as np

from .._libs import mapped_libraries

WORKSPACE_BYTES = 32 << 20  # cuBLAS's recommendation for Hopper
OP_N, OP_T = 0, 1           # cublasOperation_t

_handles = {}  # (device id, stream ptr) -> (handle, workspace array)
_api: list = []  # [SimpleNamespace of ctypes functions], loaded on first use

_P, _I, _L, _Z = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong, ctypes.c_size_t
_SIGNATURES = {
    "cublasCreate_v2": (ctypes.POINTER(_P),),
    "cublasDestroy_v2": (_P,),
    "cublasSetStream_v2": (_P, _P),
    "cublasSetWorkspace_v2": (_P, _P, _Z),
    "cublasSgemm_v2": (_P, _I, _I, _I, _I, _I, _P, _P, _I, _P, _I, _P, _P, _I),
    "cublasDgemm_v2": (_P, _I, _I, _I, _I, _I, _P, _P, _I, _P, _I, _P, _P, _I),
    "cublasSgemmStridedBatched": (_P, _I, _I, _I, _I, _I, _P, _P, _I, _L, _P, _I, _L, _P, _P, _I, _L, _I),
    "cublasDgemmStridedBatched": (_P, _I, _I, _I, _I, _I, _P, _P, _I, _L, _P, _I, _L, _P, _P, _I, _L, _I),
}


def _library():
    """The cuBLAS shared library CuPy uses (loaded by importing CuPy's cuBLAS bindings)."""
    import importlib
    try:
        importlib.import_module("cupy_backends.cuda.libs.cublas")  # loads libcublas
    except ImportError:  # CuPy releases before cupy_backends
        importlib.import_module("cupy.cuda.cublas")
    paths = mapped_libraries(lambda p: re.search(r"/libcublas\.so[.\d]*$", p) is not None)
    if not paths:
        raise RuntimeError("pyconvnet.cuda.blas: CuPy's cuBLAS library is not loaded in this process")
    return ctypes.CDLL(paths[0])


def _check(name, status):
    if status != 0:
        raise RuntimeError(f"pyconvnet.cuda.blas: {name} failed (cublasStatus_t {status})")
    return status


def api():
    """The cuBLAS functions pyconvnet calls, as ctypes functions that raise on a failed status."""
    if not _api:
        lib = _library()
        ns = {}
        for name, argtypes in _SIGNATURES.items():
            alt = name[:-3] if name.endswith("_v2") else name + "_v2"
            fn = getattr(lib, name, None) or getattr(lib, alt)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int

            def call(*args, _fn=fn, _name=name):
                return _check(_name, _fn(*args))
            ns[name] = call
        _api.append(SimpleNamespace(**ns))
    return _api[0]


def available() -> bool:
    """Whether this process can call cuBLAS directly (Linux: the library CuPy loaded is found through
    /proc/self/maps). Where it cannot, the ops fall back to CuPy's cuBLAS calls, which work everywhere
    but not inside a CUDA-graph capture (training steps then run eagerly)."""
    if not _api:
        try:
            api()
        except (ImportError, OSError, AttributeError, RuntimeError):
            return False
    return True


def capi():
    """CuPy-style names for the strided-batched GEMMs (see the module docstring) plus the op codes."""
    a = api()
    return SimpleNamespace(CUBLAS_OP_N=OP_N, CUBLAS_OP_T=OP_T,
                           sgemmStridedBatched=a.cublasSgemmStridedBatched,
                           dgemmStridedBatched=a.cublasDgemmStridedBatched)


def _key(stream):
    import cupy
    return cupy.cuda.runtime.getDevice(), int(stream.ptr)


def prepare(stream=None) -> int:
    """The cuBLAS handle bound to ``stream`` (default: the current one), made now if needed. Must be
    called before a capture on ``stream`` begins when the capture calls `gemm`."""
    import cupy

    stream = stream if stream is not None else cupy.cuda.get_current_stream()
    key = _key(stream)
    entry = _handles.get(key)
    if entry is None:
        if cupy.cuda.runtime.streamIsCapturing(stream.ptr):
            raise RuntimeError("pyconvnet.cuda.blas: no cuBLAS handle for this stream, and none can be "
                               "made while it captures a CUDA graph; call blas.prepare(stream) first")
        a = api()
        h = _P()
        a.cublasCreate_v2(ctypes.byref(h))
        a.cublasSetStream_v2(h, stream.ptr)
        with stream:
            work = cupy.empty(WORKSPACE_BYTES, np.uint8)
        a.cublasSetWorkspace_v2(h, work.data.ptr, WORKSPACE_BYTES)  # after SetStream, which resets it
        entry = _handles[key] = (h.value, work)
    return entry[0]


def release(stream) -> None:
    """Destroy the handle of ``stream`` (if one was made); call when the stream is no longer used."""
    entry = _handles.pop(_key(stream), None)
    if entry is not None:
        api().cublasDestroy_v2(entry[0])


def gemm(transa: bool, transb: bool, m: int, n: int, k: int, a, lda: int, b, ldb: int, c, ldc: int) -> None:
    """C = op(A) @ op(B) in cuBLAS's column-major terms (C is m x n), on the current stream.
    ``a``, ``b``, ``c``: CuPy arrays of one float dtype (float32: SGEMM, float64: DGEMM)."""
    handle = prepare()
    dt = np.dtype(c.dtype)
    f = api().cublasSgemm_v2 if dt == np.float32 else api().cublasDgemm_v2
    one, zero = np.ones((), dt), np.zeros((), dt)
    f(handle, OP_T if transa else OP_N, OP_T if transb else OP_N, m, n, k, one.ctypes.data,
      a.data.ptr, lda, b.data.ptr, ldb, zero.ctypes.data, c.data.ptr, ldc)
