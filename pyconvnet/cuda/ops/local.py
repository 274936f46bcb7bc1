"""Locally connected (unshared-filter) layers on the GPU: kernels/local.cu through either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.local`` (layouts, output
size rule, padding and groups there), on C-contiguous float32/float64 CuPy arrays, with one extra
keyword: ``out``, a C-contiguous CuPy array of the result's shape and dtype to write into (it must
not overlap the inputs); by default a new array is returned.

- ``local_fwd``: y (K, OH, OW, N) from x (C, H, W, N), w (OH*OW, C/g, R, R, K), b None or (K*OH*OW, 1);
- ``local_bwd_data``: dx (C, H, W, N) from dy and w (a gather over the covering windows, no atomics);
- ``local_bwd_filter``: dw (OH*OW, C/g, R, R, K) from dy and x.

Each kernel's grid and block come from ``local_fwd_config``, ``local_bwd_data_config`` and
``local_bwd_filter_config`` (kernels/local.cu describes the tiles); none uses dynamic shared memory.
"""
from __future__ import annotations

from ...ops._check import check_array, check_same_dtype, fail
from ...ops.conv import check_bwd_data, check_bwd_filter, check_fwd
from ..launch import Kernel, check_device_array, launch

# x, w, b, y, C, H, W, N, R, K, OH, OW, padding, stride, groups, has_bias
FWD = Kernel("local", "local_fwd", "pppp" + "i" * 12)
# dy, w, dx, C, H, W, N, R, K, OH, OW, padding, stride, groups
BWD_DATA = Kernel("local", "local_bwd_data", "ppp" + "i" * 11)
# dy, x, dw, C, H, W, N, R, K, OH, OW, padding, stride, groups
BWD_FILTER = Kernel("local", "local_bwd_filter", "ppp" + "i" * 11)

THREADS = 128                       # block size of all three kernels
FWD_TILE = (32, 64)                 # filters x images per local_fwd block
BWD_DATA_TILE = (32, 64)            # channels x images per local_bwd_data block (one input pixel)
BWD_FILTER_TILE = (64, 32)          # rows of C/g*R*R x filters per local_bwd_filter block
MAX_GRID_X, MAX_GRID_YZ = 2**31 - 1, 65535
INT32_MAX = 2**31 - 1


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _grid(op: str, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    gx, gy, gz = grid
    if gx > MAX_GRID_X or gy > MAX_GRID_YZ or gz > MAX_GRID_YZ:
        fail(op, f"problem too large for one launch: grid {gx}x{gy}x{gz} (limits {MAX_GRID_X}x{MAX_GRID_YZ}"
                 f"x{MAX_GRID_YZ})")
    return grid


def local_fwd_config(positions: int, N: int, K: int, groups: int) -> tuple[tuple[int, int, int], int]:
    """``(grid, block)`` of local_fwd: a block per (position, 64 images, group x 32 filters)."""
    return _grid("local_fwd", (positions, _cdiv(N, FWD_TILE[1]),
                               groups * _cdiv(K // groups, FWD_TILE[0]))), THREADS


def local_bwd_data_config(H: int, W: int, N: int, C: int, groups: int) -> tuple[tuple[int, int, int], int]:
    """``(grid, block)`` of local_bwd_data: a block per (input pixel, 64 images, group x 32 channels)."""
    return _grid("local_bwd_data", (H * W, _cdiv(N, BWD_DATA_TILE[1]),
                                    groups * _cdiv(C // groups, BWD_DATA_TILE[0]))), THREADS


def local_bwd_filter_config(positions: int, rows: int, K: int, groups: int) -> tuple[tuple[int, int, int], int]:
    """``(grid, block)`` of local_bwd_filter: a block per (position, 64 of the ``rows`` = C/g*R*R filter
    rows, group x 32 filters)."""
    return _grid("local_bwd_filter", (positions, _cdiv(rows, BWD_FILTER_TILE[0]),
                                      groups * _cdiv(K // groups, BWD_FILTER_TILE[1]))), THREADS


def _devices(op: str, **arrays) -> None:
    for name, a in arrays.items():
        if a is not None:
            check_device_array(op, name, a)


def _out(op: str, out, shape, like):
    """``out`` checked against the result's shape and ``like``'s dtype, or a new uninitialised array."""
    if out is None:
        import cupy
        return cupy.empty(shape, dtype=like.dtype)
    check_device_array(op, "out", out)
    check_array(op, "out", out, shape=shape)
    check_same_dtype(op, out=out, input=like)
    return out


def _int32(op: str, **sizes) -> None:
    """Sizes the kernels index with 32-bit ints (element offsets are 64-bit)."""
    for name, v in sizes.items():
        if v > INT32_MAX:
            fail(op, f"{name} = {v} does not fit the kernels' 32-bit sizes")


def local_fwd(x, w, b=None, *, padding=0, stride=1, groups=1, out=None):
    """y (K, OH, OW, N) from x (C, H, W, N) and w (OH*OW, C/groups, R, R, K); b None or untied
    (K*OH*OW, 1). CuPy arrays of one float dtype; returns ``out`` or a new array."""
    op = "local_fwd"
    padding, stride, groups, R, (C, H, W, N), Cg, K, OH, OW, b = check_fwd(
        op, x, w, b, padding, stride, groups, local=True, arrays=lambda: _devices(op, x=x, w=w, b=b))
    _int32(op, **{"C*H*W": C * H * W, "K*OH*OW": K * OH * OW, "C/groups*R*R": Cg * R * R, "N": N})
    y = _out(op, out, (K, OH, OW, N), x)
    if y.size:
        grid, block = local_fwd_config(OH * OW, N, K, groups)
        launch(FWD, x.dtype, grid, block, x, w, y if b is None else b, y, C, H, W, N, R, K, OH, OW,
               padding, stride, groups, int(b is not None))
    return y


def local_bwd_data(dy, w, img_size, *, padding=0, stride=1, groups=1, out=None):
    """dx (C, H, W, N) from dy (K, OH, OW, N) and w (OH*OW, C/groups, R, R, K); img_size = (H, W).
    CuPy arrays of one float dtype; returns ``out`` or a new array."""
    op = "local_bwd_data"
    padding, stride, groups, R, (H, W), N, Cg, K, OH, OW = check_bwd_data(
        op, dy, w, img_size, padding, stride, groups, local=True, arrays=lambda: _devices(op, dy=dy, w=w))
    C = Cg * groups
    _int32(op, **{"C*H*W": C * H * W, "K*OH*OW": K * OH * OW, "C/groups*R*R": Cg * R * R, "N": N})
    dx = _out(op, out, (C, H, W, N), dy)
    if dx.size:
        grid, block = local_bwd_data_config(H, W, N, C, groups)
        launch(BWD_DATA, dy.dtype, grid, block, dy, w, dx, C, H, W, N, R, K, OH, OW, padding, stride,
               groups)
    return dx


def local_bwd_filter(dy, x, filter_size, *, padding=0, stride=1, groups=1, out=None):
    """dw (OH*OW, C/groups, R, R, K) from dy (K, OH, OW, N) and x (C, H, W, N), R = filter_size.
    CuPy arrays of one float dtype; returns ``out`` or a new array."""
    op = "local_bwd_filter"
    padding, stride, groups, R, (C, H, W, N), K, OH, OW = check_bwd_filter(
        op, dy, x, filter_size, padding, stride, groups, arrays=lambda: _devices(op, dy=dy, x=x))
    Cg = C // groups
    _int32(op, **{"C*H*W": C * H * W, "K*OH*OW": K * OH * OW, "C/groups*R*R": Cg * R * R, "N": N})
    dw = _out(op, out, (OH * OW, Cg, R, R, K), x)
    if dw.size:
        grid, block = local_bwd_filter_config(OH * OW, Cg * R * R, K, groups)
        launch(BWD_FILTER, x.dtype, grid, block, dy, x, dw, C, H, W, N, R, K, OH, OW, padding, stride,
               groups)
    return dw
