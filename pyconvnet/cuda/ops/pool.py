"""Max and average pooling on the GPU: kernels/pool.cu through either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.pool`` (which defines
the geometry and the semantics: windows clipped to the image, avg over the in-image count, max's
gradient to every tied input), on C-contiguous float32/float64 CuPy arrays in cuda-convnet's layout
(x (C, H, W, N), y (C, OH, OW, N)), with one extra keyword: ``out``, a C-contiguous CuPy array of
the result's shape and dtype to write into; by default a new array is returned.
"""
from __future__ import annotations

from ...ops._check import check_array, check_same_dtype, fail
from ...ops.pool import MODES, _check_mode, _out_shape, check_pool_bwd, pool_out_size  # noqa: F401  (the reference's)
from ..launch import Kernel, check_device_array, device_limits, launch

# Must match enum PoolMode in kernels/pool.cu (tests/test_cuda_pool.py checks it).
MODE_IDS = {"max": 0, "avg": 1}

# x, y, C, H, W, N, OH, OW, size, stride, start, mode, pack
FWD = Kernel("pool", "pool_fwd", "ppiiiiiiiiiii")
# dy, x, y, dx, C, H, W, N, OH, OW, size, stride, start, mode, pack
BWD = Kernel("pool", "pool_bwd", "ppppiiiiiiiiiii")

# Most threads per block. The backward's tiles hold ~95 registers per thread (sm_90, no spills):
# blocks of 128 keep 5 blocks (640 threads) on a multiprocessor where blocks of 256 keep 2 (512).
FWD_BLOCK = 256
BWD_BLOCK = 128


def pool_pack(n: int, itemsize: int, *arrays) -> int:
    """Images per thread: 16 bytes' worth (4 floats, 2 doubles) when ``n`` is a multiple of that and
    every array's data is 16-byte aligned, else 1."""
    p = 16 // itemsize
    return p if n % p == 0 and all(a.data.ptr % 16 == 0 for a in arrays) else 1


def _rows_config(rows: int, items: int, most: int, limits=None) -> tuple[tuple[int, int], int]:
    """``((grid_x, grid_y), block)``: one block row per pixel row, its ``items`` split over the
    fewest blocks of at most ``most`` threads, with the block rounded up to whole warps."""
    lim = limits if limits is not None else device_limits()
    most = min(most, lim.max_block)
    chunks = -(-items // most)
    block = min(most, 32 * -(-items // (32 * chunks)))
    return (max(1, min(rows, lim.max_grid_x)), max(1, min(chunks, 65535))), block


def pool_fwd_config(c: int, oh: int, ow: int, n: int, pack: int, limits=None):
    """``(grid, block)`` for pool_fwd on output (C, OH, OW, N) with ``pack`` images per thread."""
    return _rows_config(c * oh, ow * (n // pack), FWD_BLOCK, limits)


def pool_tiles(img: int, stride: int, start: int) -> int:
    """Tiles along one direction (kernels/pool.cu, pool_bwd_tile): tile t holds the positions
    [start + t*stride, start + (t+1)*stride); those meeting [0, img) hold every position once."""
    return (img - 1 - start) // stride - (-start) // stride + 1


def pool_bwd_config(c: int, h: int, w: int, n: int, pack: int, stride: int, start: int, limits=None):
    """``(grid, block)`` for pool_bwd on input (C, H, W, N): one item per tile of stride x stride
    input pixels and ``pack`` images."""
    rows, width = c * pool_tiles(h, stride, start), pool_tiles(w, stride, start)
    return _rows_config(rows, width * (n // pack), BWD_BLOCK, limits)


def _out(op: str, out, shape, like, **inputs):
    """``out`` checked against ``shape``, ``like``'s dtype and ``inputs`` (which it must not overlap:
    the kernels read neighbouring pixels of their inputs), or a new uninitialised array."""
    if out is None:
        import cupy
        return cupy.empty(shape, like.dtype)
    check_device_array(op, "out", out)
    check_array(op, "out", out, shape=shape)
    check_same_dtype(op, out=out, **inputs)
    lo = out.data.ptr
    for name, a in inputs.items():
        if a.nbytes and out.nbytes and lo < a.data.ptr + a.nbytes and a.data.ptr < lo + out.nbytes:
            fail(op, f"out must not overlap {name} (out {tuple(out.shape)}, {name} {tuple(a.shape)})")
    return out


def pool_fwd(x, *, mode, size, stride, start=0, outputs=0, out=None):
    """Max or average pooling. x (C, H, W, N) CuPy float32/float64 -> y (C, OH, OW, N), same dtype."""
    op = "pool_fwd"
    _check_mode(op, mode)
    check_device_array(op, "x", x)
    check_array(op, "x", x, ndim=4)
    oh, ow = _out_shape(op, x.shape, size, stride, start, outputs)
    c, h, w, n = x.shape
    y = _out(op, out, (c, oh, ow, n), x, x=x)
    if y.size:
        pack = pool_pack(n, x.itemsize, x, y)
        launch(FWD, x.dtype, *pool_fwd_config(c, oh, ow, n, pack), x, y, c, h, w, n, oh, ow, size, stride,
               start, MODE_IDS[mode], pack)
    return y


def pool_bwd(dy, x, y, *, mode, size, stride, start=0, outputs=0, out=None):
    """Gradient of pooling. dy, y (C, OH, OW, N); x (C, H, W, N) -> dx (C, H, W, N), x's dtype.

    avg: each input gets dy / count of every window covering it (x and y are checked, not read).
    max: each input equal to its window's max y gets that window's dy (all tied inputs receive it);
    y must be pool_fwd's output.
    """
    op = "pool_bwd"

    def devices():
        for name, a in (("dy", dy), ("x", x), ("y", y)):
            check_device_array(op, name, a)
    oh, ow = check_pool_bwd(dy, x, y, mode, size, stride, start, outputs, arrays=devices)
    c, h, w, n = x.shape
    dx = _out(op, out, x.shape, x, dy=dy, x=x, y=y)
    if dx.size:
        read = (dy, x, y) if mode == "max" else (dy,)
        pack = pool_pack(n, x.itemsize, dx, *read)
        launch(BWD, x.dtype, *pool_bwd_config(c, h, w, n, pack, stride, start), dy, x, y, dx, c, h, w, n, oh, ow, size,
               stride, start, MODE_IDS[mode], pack)
    return dx
