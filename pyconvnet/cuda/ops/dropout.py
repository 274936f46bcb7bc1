"""Dropout on the GPU: kernels/dropout.cu through either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.dropout``, whose module
docstring defines the mask (Philox4x32-10 keyed by seed, layer and step, ``pyconvnet.ops.philox``) and
the scaling; the masks are bit-identical to the reference's, so both backends drop the same units. Arrays
are C-contiguous float32/float64 CuPy arrays of any shape. Extra keyword ``out``: a C-contiguous CuPy
array of the result's shape and dtype to write into (``x`` itself for in-place use; for ``dropout_mask``
a bool array); by default a new array is returned.

Device step. ``dropout_fwd`` and ``dropout_bwd`` also take ``step`` as a CuPy int64 array of size 1
(shape () or (1,)): the kernel then reads the step from device memory when it runs (kernels
dropout_fwd_ds / dropout_bwd_ds, the same mask bit for bit), so a captured CUDA graph takes a new step
on every replay once the array is updated on the stream. Its dtype, size and contiguity are checked;
its value cannot be, and must be >= 0 (the kernel reads it as the step's 64-bit pattern).
"""
from __future__ import annotations

import functools

import numpy as np

from ...ops._check import check_array, check_int, fail
from ...ops.dropout import _shape, _threshold, layer_id  # noqa: F401  (layer_id: the reference's)
from ..launch import Kernel, check_device_array, grid_stride_config, launch
from .elt import device_arrays_like
from .neuron import _out

FWD = Kernel("dropout", "dropout_fwd", "ppliilif")  # x, y, n, seed, layer, step, thr, s
BWD = Kernel("dropout", "dropout_bwd", "ppliilif")  # dy, dx, n, seed, layer, step, thr, s
MASK = Kernel("dropout", "dropout_mask", "pliili", template="bool")  # mask, n, seed, layer, step, thr
FWD_DS = Kernel("dropout", "dropout_fwd_ds", "ppliipif")  # x, y, n, seed, layer, step (device), thr, s
BWD_DS = Kernel("dropout", "dropout_bwd_ds", "ppliipif")  # dy, dx, n, seed, layer, step (device), thr, s
_DEVICE_STEP = {FWD: FWD_DS, BWD: BWD_DS}


def dropout_launch_config(n: int, limits=None) -> tuple[int, int]:
    """``(grid, block)`` for dropout_fwd/bwd/mask on ``n`` elements: a thread per group of 4 elements
    (one Philox evaluation), grid-stride beyond ``grid_stride_config``'s cap."""
    return grid_stride_config(-(-n // 4), block=256, limits=limits)


def _signed(v: int, bits: int) -> int:
    """The two's-complement signed value of the ``bits``-bit pattern ``v`` (what the kernel reads)."""
    return v - (1 << bits) if v >> (bits - 1) else v


def _key(op: str, n: int, keep, seed, layer, step) -> tuple:
    """Checked (seed, layer, step, thr) as the kernel's int / int / long long / int arguments."""
    if not (type(keep) is float and 2.0**-24 <= keep <= 1.0 and type(seed) is int and type(layer) is int
            and type(step) is int and seed >= 0 and 0 <= layer <= 0xFFFFFFFF and 0 <= step and not step >> 64):
        _threshold(op, keep)  # the reference's checks, in its order, for its messages
        check_int(op, "n", n, lo=0)
        check_int(op, "seed", seed, lo=0)
        check_int(op, "layer", layer, lo=0)
        check_int(op, "step", step, lo=0)
        if layer > 0xFFFFFFFF:
            fail(op, f"layer must be < 2**32, got {layer}")
        if step >> 64:
            fail(op, f"step must be < 2**64, got {step}")
        keep, seed, layer, step = float(keep), int(seed), int(layer), int(step)
    thr = int(keep * 2.0**24)
    return _signed(seed & 0xFFFFFFFF, 32), _signed(layer, 32), _signed(step, 64), thr


def _check_device_step(op: str, step) -> None:
    """A device step must be a C-contiguous int64 array of shape () or (1,)."""
    if step.dtype != np.int64 or tuple(step.shape) not in ((), (1,)) or not step.flags.c_contiguous:
        fail(op, f"step must be an int or a C-contiguous int64 device array of shape () or (1,), "
                 f"got a {step.dtype} array of shape {tuple(step.shape)}")


@functools.lru_cache(maxsize=256)
def _scale(dtype, keep: float) -> float:
    """1/keep computed in float64 and rounded once to ``dtype`` (as the reference), as a Python float."""
    return float(dtype.type(1.0 / keep))


def dropout_mask(shape, *, keep, seed, layer, step, out=None):
    """Boolean keep-mask (CuPy, True = kept) of ``shape``, identical to the reference's."""
    op = "dropout_mask"
    shape = _shape(op, shape)
    n = int(np.prod(shape, dtype=np.int64))
    key = _key(op, n, keep, seed, layer, step)
    if out is None:
        import cupy
        out = cupy.empty(shape, dtype=np.bool_)
    else:
        check_device_array(op, "out", out)
        check_array(op, "out", out, dtype=np.bool_, shape=shape)
    if n:
        launch(MASK, np.float32, *dropout_launch_config(n), out, n, *key)
    return out


def _apply(op: str, kernel: Kernel, a, name: str, keep, seed, layer, step, scale, out):
    if not device_arrays_like((a,), a):
        check_device_array(op, name, a)
        check_array(op, name, a)
    if type(scale) is not bool and not isinstance(scale, np.bool_):
        fail(op, f"scale must be a bool, got {scale!r}")
    on_device = type(step) is not int and type(step).__module__.startswith("cupy")
    key = _key(op, a.size, keep, seed, layer, 0 if on_device else step)
    if on_device:
        _check_device_step(op, step)
        kernel, key = _DEVICE_STEP[kernel], key[:2] + (step,) + key[3:]
    s = _scale(a.dtype, float(keep)) if scale else 1.0  # x * 1 == x exactly (dropout2)
    y = out if out is not None and device_arrays_like((out,), a) else _out(op, out, a, name)
    if a.size:
        launch(kernel, a.dtype, *dropout_launch_config(a.size), a, y, a.size, *key, s)
    return y


def dropout_fwd(x, *, keep, seed, layer, step, scale=True, out=None):
    """y = x * mask / keep (scale=True, ``dropout``) or x * mask (``dropout2``); y like x.

    ``step``: an int, or a CuPy int64 array of size 1 read by the kernel (see the module docstring).
    """
    return _apply("dropout_fwd", FWD, x, "x", keep, seed, layer, step, scale, out)


def dropout_bwd(dy, *, keep, seed, layer, step, scale=True, out=None):
    """dx = dy * mask / keep (scale=True) or dy * mask, with the mask of the same arguments.

    ``step``: an int, or a CuPy int64 array of size 1 read by the kernel (see the module docstring).
    """
    return _apply("dropout_bwd", BWD, dy, "dy", keep, seed, layer, step, scale, out)
