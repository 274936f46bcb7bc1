"""Minibatch preparation on the GPU: kernels/augment.cu through either launch path.

``prepare`` is ``pyconvnet.data.augment.prepare`` on the device, bit for bit in float32: uint8 cases
(n, C, H, W) uploaded as they are, cropped at per-case corners, the mean image (cropped at the same
corner) subtracted, mirrored left-right where asked, a per-case colour shift added, written as
(C, S, S, n) with the batch innermost. The crop corners and flips travel as one int32 (n, 3) array
``geom`` built and checked on the host by ``pyconvnet.data.augment.pack_geometry``; the kernel trusts
it (an offset out of range reads outside the image).
"""
from __future__ import annotations

import numpy as np

from ...ops._check import check_array, check_int, check_same_dtype, fail
from ..launch import Kernel, check_device_array, launch

# img, mean, geom, shift (or a null pointer), out, n, C, H, W, S
FWD = Kernel("augment", "augment_fwd", "pppppiiiii")
TILE, ROWS = 32, 8  # AUG_TILE, AUG_ROWS of kernels/augment.cu (tests/test_cuda_augment.py checks them)
MAX_GRID_YZ = 65535
INT32_MAX = 2**31 - 1


def augment_launch_config(n: int, C: int, S: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(grid, block)`` for augment_fwd: a (32, 8) block per 32 x 32 tile of (x, case) of one output
    row (c, y); grid (ceil(S/32), ceil(n/32), C*S), y and z capped at 65535 (the kernel loops beyond)."""
    return ((-(-S // TILE), max(1, min(-(-n // TILE), MAX_GRID_YZ)), max(1, min(C * S, MAX_GRID_YZ))),
            (TILE, ROWS, 1))


def prepare(imgs, mean, geom, size, shift=None, *, out=None):
    """Crop, subtract the mean, mirror, shift: (C, S, S, n) of mean's dtype from uint8 cases.

    imgs: uint8 (n, C, H, W); mean: float32 or float64 (C, H, W), the output's dtype; geom: int32
    (n, 3) rows (oy, ox, flip 0/1) from ``pack_geometry`` (0 <= oy <= H-S, 0 <= ox <= W-S: not checked
    here); size: S, 1 <= S <= min(H, W); shift: None or (n, C) of mean's dtype; out: None or a
    C-contiguous (C, S, S, n) array of mean's dtype to write into. All CuPy arrays, C-contiguous.
    """
    op = "prepare"
    for name, a in (("imgs", imgs), ("mean", mean), ("geom", geom), ("shift", shift), ("out", out)):
        if a is not None:
            check_device_array(op, name, a)
    check_array(op, "imgs", imgs, ndim=4, dtype=np.uint8)
    n, C, H, W = (int(d) for d in imgs.shape)
    if max(n, C, H, W) > INT32_MAX:
        fail(op, f"imgs dimensions must be < 2**31, got shape {tuple(imgs.shape)}")
    check_array(op, "mean", mean, shape=(C, H, W))
    check_array(op, "geom", geom, dtype=np.int32, shape=(n, 3))
    S = check_int(op, "size", size, lo=1)
    if S > H or S > W:
        fail(op, f"size must be <= the image's height and width, got {S} for imgs of shape {tuple(imgs.shape)}")
    if shift is not None:
        check_array(op, "shift", shift, shape=(n, C))
    if out is None:
        import cupy
        out = cupy.empty((C, S, S, n), mean.dtype)
    else:
        check_array(op, "out", out, shape=(C, S, S, n))
    check_same_dtype(op, mean=mean, shift=shift, out=out)
    if out.size:  # shift None goes to the kernel as a null pointer (launch's rule)
        launch(FWD, mean.dtype, *augment_launch_config(n, C, S), imgs, mean, geom, shift, out, n, C, H, W, S)
    return out
