"""One launch wrapper for both launch paths, launch-path selection, and launch configuration helpers.

Two paths run the same kernels/*.cu code on CuPy arrays:

- ``"extension"``: ``pyconvnet._cuda``, the kernels built by nvcc (SASS sm_80/sm_90 + PTX), launched
  by its one generic launcher with raw device pointers (ints), typed scalars, grid, block, dynamic
  shared memory and the current stream;
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
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_forced: contextvars.ContextVar = contextvars.ContextVar("pyconvnet_launch_path", default=None)
_extension: list = []       # [module or None, reason], filled on first use
_functions: dict = {}       # (kernel, dtype, path) -> callable
_limits: dict = {}          # device id -> DeviceLimits
_shared_allowed: dict = {}  # (function, handle) -> dynamic shared memory bytes allowed so far


@dataclass(frozen=True)
class Kernel:
    """A templated kernel of ``kernels/<source>.cu``, e.g. ``Kernel("pool", "pool_fwd", "ppiiif")``.

    ``args`` has one letter per kernel argument: ``p`` a device array (a CuPy array), ``i`` int32,
    ``l`` int64, ``f`` a scalar of the kernel's float type T (float or double), ``F`` always float32.
    ``template`` spells the template arguments, ``{T}`` standing for the float type and other
    ``{names}`` for the keyword values given to ``launch`` (e.g. ``"{T}, {size}"``). The instance
    ``name<...>`` must be explicitly instantiated in the .cu file; it is the NVRTC name expression and
    the extension's kernel name alike.
    """
    source: str
    name: str
    args: str
    template: str = "{T}"

    def instance(self, dtype, **tvals) -> str:
        """The name expression for ``dtype`` and the template values, e.g. ``pool_fwd<float>``."""
        return f"{self.name}<{self.template.format(T=_CTYPES[np.dtype(dtype)], **tvals)}>".replace(" ", "")


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


def _function(kernel: Kernel, dtype: np.dtype, path: str, tvals: tuple):
    """(callable, signature) for one kernel instance on one path; cached."""
    key = (kernel, dtype, path, tvals)
    hit = _functions.get(key)
    if hit is None:
        name = kernel.instance(dtype, **dict(tvals))
        if path == "extension":
            ext = extension_status()[0]
            handle = ext.kernel(name)
            sig = kernel.args.replace("f", "f" if dtype == np.float32 else "d").replace("F", "f")
            hit = (ext, handle, sig)
        else:
            from .loader import rawmodule
            hit = (rawmodule(kernel.source).get_function(name), None, None)
        _functions[key] = hit
    return hit


def _dims(v) -> tuple:
    t = (v,) if isinstance(v, (int, np.integer)) else tuple(v)
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


def launch(kernel: Kernel, dtype, grid, block, *args, shmem: int = 0, **tvals) -> None:
    """Launch ``kernel`` for float type ``dtype`` on CuPy's current stream through the selected path.

    ``grid`` and ``block`` are ints or tuples of up to 3 ints; ``shmem`` bytes of dynamic shared memory
    (above 48 KiB the kernel is first allowed that much); ``tvals`` fill the kernel's template. ``args``
    follow ``kernel.args``: CuPy arrays (or None: a null pointer) for ``p``, Python numbers for the
    scalars, which are cast to their exact C type on both paths. Raises RuntimeError (extension) or
    CuPy's error (RawModule) when the launch fails.
    """
    import cupy

    dtype = np.dtype(dtype)
    path = launch_path()
    fn, handle, sig = _function(kernel, dtype, path, tuple(sorted(tvals.items())))
    grid, block = _dims(grid), _dims(block)
    if shmem > 48 * 1024:
        _allow_shared(fn, handle, shmem)
    if path == "extension":
        vals = tuple((0 if a is None else a.data.ptr) if c == "p" else a
                     for c, a in zip(kernel.args, args))
        fn.launch(handle, grid, block, shmem, cupy.cuda.get_current_stream().ptr, sig, vals)
    else:
        cast = {"p": lambda a: np.uintp(0) if a is None else a, "i": np.int32, "l": np.int64,
                "f": dtype.type, "F": np.float32}
        fn(grid, block, tuple(cast[c](a) for c, a in zip(kernel.args, args)), shared_mem=shmem)


def _allow_shared(fn, handle, shmem: int) -> None:
    key = (id(fn), handle)
    if _shared_allowed.get(key, 0) >= shmem:
        return
    if handle is not None:
        fn.set_max_dynamic_shared(handle, shmem)
    else:
        fn.max_dynamic_shared_size_bytes = shmem
    _shared_allowed[key] = shmem
