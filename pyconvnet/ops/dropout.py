"""Dropout, NumPy reference, with a stateless mask shared bit for bit with the CUDA kernels.

Mask. For an activation array of shape ``shape`` (any, e.g. (C, H, W, N) or (F, N)), element i of
its C-order flattening is kept iff::

    (dropout_bits(size, seed, layer, step)[i] >> 8) < threshold,   threshold = floor(keep * 2**24)

with ``threshold`` computed in Python float64 and the comparison done on integers, so both backends
decide every element identically (see ``pyconvnet.ops.philox`` for ``dropout_bits``). keep is
in [2**-24, 1]; keep == 1 keeps everything. The probability of keeping is threshold / 2**24, which
is keep rounded down to a multiple of 2**-24. ``layer`` identifies the layer (``layer_id(name)``),
``step`` the training step, ``seed`` the run; nothing is stored between forward and backward: the
backward regenerates the mask from the same arguments.

Scaling. ``scale=True`` (layer type ``dropout``): y = x * s where kept, 0 where dropped, with
s = 1/keep computed in float64 and rounded once to x's dtype. ``scale=False`` (``dropout2``):
y = x where kept, 0 where dropped (at test time that layer multiplies by keep instead). Dropped
elements are exactly 0 even for non-finite x. The backward is the same map applied to dy.
"""
from __future__ import annotations

import zlib

import numpy as np

from ._check import check_array, check_float, check_int, fail
from .philox import dropout_bits


def layer_id(name: str) -> int:
    """Stable 32-bit id of a layer name for the ``layer`` argument: CRC-32 of its UTF-8 bytes."""
    if not isinstance(name, str):
        fail("layer_id", f"name must be a str, got {type(name).__name__}")
    return zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF


def _threshold(op: str, keep) -> int:
    keep = check_float(op, "keep", keep, lo=0.0, hi=1.0, lo_open=True)
    thr = int(keep * 2.0**24)  # floor: keep * 2**24 >= 0
    if thr == 0:
        fail(op, f"keep must be >= 2**-24 (the mask's resolution), got {keep}")
    return thr


def _shape(op: str, shape) -> tuple:
    """``shape`` as a tuple of ints >= 0 (shared with the CUDA backend)."""
    try:
        shape = tuple(shape)
    except TypeError:
        fail(op, f"shape must be a tuple of integers, got {shape!r}")
    for d in shape:
        check_int(op, f"shape entry (in {shape})", d, lo=0)
    return tuple(int(d) for d in shape)


def _mask(op: str, shape, keep, seed, layer, step):
    shape = _shape(op, shape)
    thr = _threshold(op, keep)
    n = int(np.prod(shape, dtype=np.int64))
    try:
        bits = dropout_bits(n, seed, layer, step)
    except ValueError as e:  # re-raise under this op's name
        fail(op, str(e).split(": ", 1)[1])
    bits >>= np.uint32(8)
    return (bits < np.uint32(thr)).reshape(shape)


def dropout_mask(shape, *, keep, seed, layer, step):
    """Boolean keep-mask of ``shape`` (True = kept), as defined in the module docstring."""
    return _mask("dropout_mask", shape, keep, seed, layer, step)


def _apply(op, a, keep, seed, layer, step, scale):
    check_array(op, "x" if op == "dropout_fwd" else "dy", a)
    if not isinstance(scale, (bool, np.bool_)):
        fail(op, f"scale must be a bool, got {scale!r}")
    mask = _mask(op, a.shape, keep, seed, layer, step)
    dt = a.dtype.type
    kept = a * dt(1.0 / float(keep)) if scale else a
    return np.where(mask, kept, dt(0))


def dropout_fwd(x, *, keep, seed, layer, step, scale=True):
    """y = x * mask / keep (scale=True, ``dropout``) or x * mask (``dropout2``); y like x."""
    return _apply("dropout_fwd", x, keep, seed, layer, step, scale)


def dropout_bwd(dy, *, keep, seed, layer, step, scale=True):
    """dx = dy * mask / keep (scale=True) or dy * mask, with the mask of the same arguments."""
    return _apply("dropout_bwd", dy, keep, seed, layer, step, scale)
