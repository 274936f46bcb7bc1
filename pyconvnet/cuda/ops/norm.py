"""Response and contrast normalisation on the GPU: kernels/norm.cu through either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.norm`` (which defines the
math in its docstring), on C-contiguous float32/float64 CuPy arrays of shape (C, H, W, N), with one
extra keyword ``out``: for the forwards a pair ``(y, denom)`` of C-contiguous CuPy arrays of x's shape
and dtype to write into, for the backwards one array for dx; by default new arrays are returned.
Outputs may not overlap the inputs (or each other): every output element depends on its neighbours'
inputs.

cmrnorm can run without stored denominators: ``cmrnorm_fwd(..., keep_denom=False)`` writes y alone
(kernel cmrnorm_fwd_y, 2 arrays moved) and returns ``(y, None)``; ``cmrnorm_bwd(dy, x, None, None,
...)`` recomputes the denominators from x (kernel cmrnorm_bwd_x, reads dy and x, writes dx: 3 arrays).

Window sizes 3, 5 and 9 run kernel instances with the window in registers; any other size runs the
general instance (template size 0), which rereads the window from memory. cnorm_bwd takes two
launches (the window means of x into a scratch array, then the fused gradient).
"""
from __future__ import annotations

from ...ops._check import check_array, check_same_dtype, fail
from ...ops.norm import _bwd_args, _params
from ..launch import Kernel, check_device_array, device_limits, launch

SIZES = (3, 5, 9)  # sizes with a register-window instance; the others use instance 0

CMRNORM_FWD = Kernel("norm", "cmrnorm_fwd", "pppiliiifff", "{T}, {size}")   # x y denom C P N size chunk a b m
CMRNORM_BWD = Kernel("norm", "cmrnorm_bwd", "pppppiliiiff", "{T}, {size}")  # dy x y denom dx C P N size chunk k b
CMRNORM_FWD_Y = Kernel("norm", "cmrnorm_fwd_y", "ppiliiifff", "{T}, {size}")  # x y C P N size chunk a b m
CMRNORM_BWD_X = Kernel("norm", "cmrnorm_bwd_x", "pppiliiiffff", "{T}, {size}")  # dy x dx C P N size chunk a b m k
RNORM_FWD = Kernel("norm", "rnorm_fwd", "pppiiiiiifff", "{T}, {size}")      # x y denom C H W N size chunk a b m
RNORM_BWD = Kernel("norm", "rnorm_bwd", "pppppiiiiiiff", "{T}, {size}")     # dy x y denom dx C H W N size chunk k b
CNORM_FWD = Kernel("norm", "cnorm_fwd", "pppiiiiiifff", "{T}, {size}")      # as rnorm_fwd
CNORM_BWD_MEAN = Kernel("norm", "cnorm_bwd_mean", "ppiiiiii", "{T}, {size}")  # x m C H W N size chunk
CNORM_BWD = Kernel("norm", "cnorm_bwd", "ppppppiiiiiiff", "{T}, {size}")    # dy x y denom m dx C H W N size chunk k b

# Bytes of images one thread takes (its pack; 0: one image), as the kernels' PW constants say.
PACK_BYTES = {"cmrnorm_fwd": 16, "cmrnorm_bwd": 16, "cmrnorm_fwd_y": 16, "cmrnorm_bwd_x": 16, "rnorm_fwd": 16,
              "rnorm_bwd": 8, "cnorm_fwd": 0, "cnorm_bwd_mean": 16, "cnorm_bwd": 0}
THREADS_PER_SM = 512  # split the streamed axis into chunks until about this many threads per SM
CMRNORM_BLOCK = 128
SPATIAL_BLOCK = 256


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _chunks(threads: int, length: int, size: int, lim) -> tuple[int, int]:
    """``(chunks, chunk)``: split an axis of ``length`` into chunks of ``chunk`` (the last may be short).

    One chunk while ``threads`` fill THREADS_PER_SM per SM; else enough chunks to, each at least
    max(8, 4*(size-1)) long (every chunk rereads size-1 neighbours), at most 65535 (grid y).
    """
    want = lim.sm_count * THREADS_PER_SM
    n = 1
    if threads < want:
        n = min(_cdiv(want, max(threads, 1)), max(1, length // max(8, 4 * (size - 1))))
    n = max(1, min(n, 65535))
    chunk = _cdiv(length, n)
    return _cdiv(length, chunk), chunk


def _pack(kernel: str, itemsize: int) -> int:
    return max(1, PACK_BYTES[kernel] // itemsize)


def cmrnorm_launch_config(shape, itemsize: int = 4, size: int = 5, limits=None, kernel: str = "cmrnorm_fwd"):
    """``(grid, block, chunk)`` for the cmrnorm kernel ``kernel`` on an array of ``shape`` (C, H, W, N).

    A thread per (pixel, pack of 16 bytes of images), grid-stride in x; blockIdx.y picks a chunk of
    ``chunk`` channels (see ``_chunks``). Each chunk rereads size-1 neighbour channels, 2*(size-1) for
    cmrnorm_bwd_x (whose entries need x over their own windows), so its chunks are twice as long.
    """
    lim = limits if limits is not None else device_limits()
    c, h, w, n = shape
    items = h * w * _cdiv(n, _pack(kernel, itemsize))
    chunks, chunk = _chunks(items, c, 2 * size - 1 if kernel == "cmrnorm_bwd_x" else size, lim)
    block = min(CMRNORM_BLOCK, lim.max_block)
    return (max(1, min(_cdiv(items, block), lim.max_grid_x)), chunks), block, chunk


def spatial_launch_config(kernel: str, shape, itemsize: int = 4, size: int = 5, limits=None):
    """``(grid, block, chunk)`` for the rnorm/cnorm kernel ``kernel`` (a PACK_BYTES key).

    block (BX, BY): BX image packs (up to 32) by BY columns, at most SPATIAL_BLOCK threads; blocks run
    over (channel, column tile, image tile), grid-stride in x; blockIdx.y picks a chunk of rows.
    """
    lim = limits if limits is not None else device_limits()
    c, h, w, n = shape
    g = _cdiv(n, _pack(kernel, itemsize))
    bx = min(32, g)
    by = max(1, min(min(SPATIAL_BLOCK, lim.max_block) // bx, w))
    blocks = c * _cdiv(w, by) * _cdiv(g, bx)
    chunks, chunk = _chunks(blocks * bx * by, h, size, lim)
    return (max(1, min(blocks, lim.max_grid_x)), chunks), (bx, by), chunk


def _tsize(size: int) -> int:
    return size if size in SIZES else 0


def _overlaps(a, b) -> bool:
    if a.size == 0 or b.size == 0:
        return False
    pa, pb = a.data.ptr, b.data.ptr
    return pa < pb + b.size * b.itemsize and pb < pa + a.size * a.itemsize


def _out(op: str, arr, name: str, like, like_name: str, inputs: dict):
    """``arr`` checked as an output like ``like`` that overlaps none of ``inputs``, or a new array."""
    if arr is None:
        import cupy
        return cupy.empty_like(like)
    check_device_array(op, name, arr)
    check_array(op, name, arr, shape=like.shape)
    check_same_dtype(op, **{name: arr, like_name: like})
    for other, a in inputs.items():
        if _overlaps(arr, a):
            fail(op, f"{name} must not overlap {other} (shape {tuple(arr.shape)})")
    return arr


def _fwd_args(op: str, x, size, scale, pow, min_div, out, keep_denom=True):
    """Checked parameters and the outputs (y, denom); denom is None when not ``keep_denom``."""
    check_device_array(op, "x", x)
    size, scale, pow, min_div = _params(op, x, size, scale, pow, min_div)
    if out is None:
        out = (None, None)
    elif not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(op, f"out must be a pair (y, denom) of CuPy arrays, got {type(out).__name__}")
    y = _out(op, out[0], "out[0]", x, "x", {"x": x})
    if not keep_denom:
        if out[1] is not None:
            fail(op, f"out[1] must be None with keep_denom=False, got {type(out[1]).__name__}")
        return size, scale, pow, min_div, y, None
    denom = _out(op, out[1], "out[1]", x, "x", {"x": x, "out[0]": y})
    return size, scale, pow, min_div, y, denom


def _bwd_all(op: str, dy, x, y, denom, size, scale, pow, min_div, out, optional=False):
    """Checked parameters and dx; with ``optional`` (cmrnorm), y and denom may both be None."""
    for name, a in (("dy", dy), ("x", x), ("y", y), ("denom", denom)):
        if a is not None or not optional:
            check_device_array(op, name, a)
    size, scale, pow, min_div = _bwd_args(op, dy, x, y, denom, size, scale, pow, min_div, optional=optional)
    inputs = {n: a for n, a in (("dy", dy), ("x", x), ("y", y), ("denom", denom)) if a is not None}
    dx = _out(op, out, "out", x, "x", inputs)
    return size, scale, pow, min_div, dx


def _spatial_fwd(kernel: Kernel, op: str, x, size, scale, pow, min_div, out):
    size, scale, pow, min_div, y, denom = _fwd_args(op, x, size, scale, pow, min_div, out)
    if x.size:
        grid, block, chunk = spatial_launch_config(kernel.name, x.shape, x.itemsize, size)
        launch(kernel, x.dtype, grid, block, x, y, denom, *x.shape, size, chunk, scale / size**2, pow, min_div,
               size=_tsize(size))
    return y, denom


def cmrnorm_fwd(x, *, size, scale, pow, min_div=1.0, keep_denom=True, out=None):
    """Cross-map response norm of x (C, H, W, N) -> (y, denom), both (C, H, W, N), x's dtype.

    With ``keep_denom=False`` -> (y, None): only y is written (``out`` then is ``(y, None)``).
    """
    op = "cmrnorm_fwd"
    size, scale, pow, min_div, y, denom = _fwd_args(op, x, size, scale, pow, min_div, out, keep_denom)
    if x.size:
        c, h, w, n = x.shape
        if keep_denom:
            grid, block, chunk = cmrnorm_launch_config(x.shape, x.itemsize, size)
            launch(CMRNORM_FWD, x.dtype, grid, block, x, y, denom, c, h * w, n, size, chunk, scale / size, pow,
                   min_div, size=_tsize(size))
        else:
            grid, block, chunk = cmrnorm_launch_config(x.shape, x.itemsize, size, kernel="cmrnorm_fwd_y")
            launch(CMRNORM_FWD_Y, x.dtype, grid, block, x, y, c, h * w, n, size, chunk, scale / size, pow, min_div,
                   size=_tsize(size))
    return y, denom


def cmrnorm_bwd(dy, x, y, denom, *, size, scale, pow, min_div=1.0, out=None):
    """Gradient of cmrnorm_fwd. dy, x, y, denom (C, H, W, N), one dtype -> dx (C, H, W, N).

    y and denom may both be None (from ``cmrnorm_fwd(..., keep_denom=False)``): the denominators are
    then recomputed from x with min_div, reading only dy and x.
    """
    op = "cmrnorm_bwd"
    size, scale, pow, min_div, dx = _bwd_all(op, dy, x, y, denom, size, scale, pow, min_div, out, optional=True)
    if x.size:
        c, h, w, n = x.shape
        alpha = scale / size
        if denom is not None:
            grid, block, chunk = cmrnorm_launch_config(x.shape, x.itemsize, size, kernel="cmrnorm_bwd")
            launch(CMRNORM_BWD, x.dtype, grid, block, dy, x, y, denom, dx, c, h * w, n, size, chunk,
                   2.0 * pow * alpha, pow, size=_tsize(size))
        else:
            grid, block, chunk = cmrnorm_launch_config(x.shape, x.itemsize, size, kernel="cmrnorm_bwd_x")
            launch(CMRNORM_BWD_X, x.dtype, grid, block, dy, x, dx, c, h * w, n, size, chunk, alpha, pow, min_div,
                   2.0 * pow * alpha, size=_tsize(size))
    return dx


def rnorm_fwd(x, *, size, scale, pow, min_div=1.0, out=None):
    """Same-map response norm of x (C, H, W, N) -> (y, denom), both (C, H, W, N), x's dtype."""
    return _spatial_fwd(RNORM_FWD, "rnorm_fwd", x, size, scale, pow, min_div, out)


def rnorm_bwd(dy, x, y, denom, *, size, scale, pow, min_div=1.0, out=None):
    """Gradient of rnorm_fwd. dy, x, y, denom (C, H, W, N), one dtype -> dx (C, H, W, N)."""
    op = "rnorm_bwd"
    size, scale, pow, _, dx = _bwd_all(op, dy, x, y, denom, size, scale, pow, min_div, out)
    if x.size:
        grid, block, chunk = spatial_launch_config("rnorm_bwd", x.shape, x.itemsize, size)
        launch(RNORM_BWD, x.dtype, grid, block, dy, x, y, denom, dx, *x.shape, size, chunk,
               2.0 * pow * (scale / size**2), pow, size=_tsize(size))
    return dx


def cnorm_fwd(x, *, size, scale, pow, min_div=1.0, out=None):
    """Contrast norm of x (C, H, W, N) -> (y, denom), both (C, H, W, N), x's dtype."""
    return _spatial_fwd(CNORM_FWD, "cnorm_fwd", x, size, scale, pow, min_div, out)


def cnorm_bwd(dy, x, y, denom, *, size, scale, pow, min_div=1.0, out=None):
    """Gradient of cnorm_fwd (through the window mean too). dy, x, y, denom (C, H, W, N) -> dx.

    Two launches: cnorm_bwd_mean writes the window means of x into a scratch array, cnorm_bwd the
    gradient.
    """
    op = "cnorm_bwd"
    size, scale, pow, _, dx = _bwd_all(op, dy, x, y, denom, size, scale, pow, min_div, out)
    if x.size:
        import cupy

        m = cupy.empty_like(x)
        grid, block, chunk = spatial_launch_config("cnorm_bwd_mean", x.shape, x.itemsize, size)
        launch(CNORM_BWD_MEAN, x.dtype, grid, block, x, m, *x.shape, size, chunk, size=_tsize(size))
        grid, block, chunk = spatial_launch_config("cnorm_bwd", x.shape, x.itemsize, size)
        launch(CNORM_BWD, x.dtype, grid, block, dy, x, y, denom, m, dx, *x.shape, size, chunk,
               2.0 * pow * (scale / size**2), pow, size=_tsize(size))
    return dx
