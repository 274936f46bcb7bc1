"""One launch wrapper for both launch paths, launch-path selection, and launch configuration helpers.

Two paths run the same kernels/*.cu code on CuPy arrays:

- ``"extension"``: ``pyconvnet._cuda``, host launchers built by nvcc (SASS sm_80/sm_90 + PTX), called
  with raw device pointers (ints), sizes, scalars, grid, block and the current stream;
- ``"rawmodule"``: ``cupy.RawModule`` compiled at run time by NVRTC (pyconvnet.cuda.loader).

The path of a launch is, in order: the innermost ``use_launch_path(...)`` block (tests use it to force
each path), else ``$PYCONVNET_LAUNCHER`` (``extension``, ``rawmodule`` or ``auto``), else ``auto``:
the extension when it imports, else RawModule. Forcing ``extension`` when it does not import raises
RuntimeError with the import error. Nothing here imports CuPy until a kernel is launched.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from dataclasses import dataclass

import numpy as np

from ..ops._check import fail

PATHS = ("extension", "rawmodule")
ENV = "PYCONVNET_LAUNCHER"
_CTYPES = {np.dtype(np.float32): ("float", "f32"), np.dtype(np.float64): ("double", "f64")}
_forced: contextvars.ContextVar = contextvars.ContextVar("pyconvnet_launch_path", default=None)
_extension: list = []       # [module or None, reason], filled on first use
_functions: dict = {}       # (kernel, dtype, path) -> callable
_limits: dict = {}          # device id -> DeviceLimits


@dataclass(frozen=True)
class Kernel:
    """A templated kernel ``name<T>`` of ``kernels/<source>.cu``, T = float or double.

    ``args`` has one letter per kernel argument: ``p`` a device array (a CuPy array), ``i`` int32,
    ``l`` int64, ``f`` a scalar of the kernel's float type T. The extension's launcher for it is
    ``_cuda.<name>_f32`` / ``_f64`` with the same arguments followed by grid, block and stream.
    """
    source: str
    name: str
    args: str


@dataclass(frozen=True)
class DeviceLimits:
    """The device facts launch configurations are clamped to."""
    sm_count: int
    max_block: int
    max_grid_x: int


def extension_status():
    """``(module, "")`` when ``pyconvnet._cuda`` imports, else ``(None, why not)``; cached."""
    if not _extension:
        try:
            _extension[:] = [importlib.import_module("pyconvnet._cuda"), ""]
        except ImportError as e:
            _extension[:] = [None, f"{type(e).__name__}: {e}"]
    return _extension[0], _extension[1]


def launch_path() -> str:
    """The path the next launch takes: ``"extension"`` or ``"rawmodule"`` (see the module docstring)."""
    path = _forced.get() or os.environ.get(ENV, "auto") or "auto"
    if path == "auto":
        return "extension" if extension_status()[0] is not None else "rawmodule"
    if path not in PATHS:
        raise ValueError(f"{ENV} must be one of auto, {', '.join(PATHS)}; got {path!r}")
    if path == "extension" and extension_status()[0] is None:
        raise RuntimeError(f"launch path 'extension' asked for, but pyconvnet._cuda does not import "
                           f"({extension_status()[1]})")
    return path


@contextlib.contextmanager
def use_launch_path(path: str):
    """Within the block, launch through ``path`` (``"extension"``, ``"rawmodule"`` or ``"auto"``)."""
    if path not in PATHS + ("auto",):
        raise ValueError(f"launch path must be one of auto, {', '.join(PATHS)}; got {path!r}")
    token = _forced.set(path)
    try:
        yield
    finally:
        _forced.reset(token)


def device_limits() -> DeviceLimits:
    """Limits of CuPy's current device (cached per device)."""
    import cupy

    rt = cupy.cuda.runtime
    dev = rt.getDevice()
    lim = _limits.get(dev)
    if lim is None:
        lim = DeviceLimits(*(rt.deviceGetAttribute(a, dev) for a in (
            rt.cudaDevAttrMultiProcessorCount, rt.cudaDevAttrMaxThreadsPerBlock, rt.cudaDevAttrMaxGridDimX)))
        _limits[dev] = lim
    return lim


def grid_stride_config(items: int, block: int = 256, blocks_per_sm: int = 32,
                       limits: DeviceLimits | None = None) -> tuple[int, int]:
    """``(grid, block)`` for a 1-D grid-stride loop over ``items`` work items.

    One item per thread while that takes at most ``blocks_per_sm`` blocks per multiprocessor, then
    each thread loops; block and grid are clamped to the device (``limits``, default: the current one).
    """
    lim = limits if limits is not None else device_limits()
    block = max(1, min(block, lim.max_block))
    grid = max(1, min(-(-items // block), lim.sm_count * blocks_per_sm, lim.max_grid_x))
    return grid, block


def check_device_array(op: str, name: str, a) -> None:
    """``a`` must be a CuPy array (device memory), not a NumPy array or anything else."""
    if not type(a).__module__.startswith("cupy"):
        fail(op, f"{name} must be a CuPy array (device memory) on the CUDA backend, "
                 f"got {type(a).__module__}.{type(a).__name__}")


def _function(kernel: Kernel, dtype: np.dtype, path: str):
    key = (kernel, dtype, path)
    fn = _functions.get(key)
    if fn is None:
        ctype, suffix = _CTYPES[dtype]
        if path == "extension":
            fn = getattr(extension_status()[0], f"{kernel.name}_{suffix}")
        else:
            from .loader import rawmodule
            fn = rawmodule(kernel.source).get_function(f"{kernel.name}<{ctype}>")
        _functions[key] = fn
    return fn


def launch(kernel: Kernel, dtype, grid: int, block: int, *args) -> None:
    """Launch ``kernel<dtype>`` on CuPy's current stream through the selected path.

    ``args`` follow ``kernel.args``: CuPy arrays for ``p``, Python numbers for the scalars, which are
    cast here to int32 / int64 / the kernel's float type (RawModule passes them as typed values).
    Raises RuntimeError when the launch fails (the extension) or CuPy's error (RawModule).
    """
    import cupy

    dtype = np.dtype(dtype)
    path = launch_path()
    fn = _function(kernel, dtype, path)
    if path == "extension":
        vals = [a.data.ptr if c == "p" else a for c, a in zip(kernel.args, args)]
        fn(*vals, grid, block, cupy.cuda.get_current_stream().ptr)
    else:
        cast = {"p": lambda a: a, "i": np.int32, "l": np.int64, "f": dtype.type}
        fn((grid,), (block,), tuple(cast[c](a) for c, a in zip(kernel.args, args)))
