"""Pooling, NumPy reference (cuda-convnet semantics).

Images are (C, H, W, N) float32 or float64, C-contiguous, batch innermost; outputs are
(C, OH, OW, N) of the same dtype. One set of parameters (size, stride, start, outputs) applies to
both spatial directions: OH = pool_out_size(H, ...), OW = pool_out_size(W, ...).

Output window i covers input positions ``[start + i*stride, start + i*stride + size)`` clipped to
``[0, img)``; ``start`` may be negative and windows may fall off either border, but every window
must hold at least one in-image element. ``avg`` divides by the number of in-image elements of its
window; ``max`` takes the max over them, and its backward gives a window's gradient to every input
equal to the window's max (tied maxima all receive it, as cuda-convnet's kLocalMaxUndo does).

Vectorisation: a window is the product of a row range and a column range, so the forward and the
avg backward work separably (over rows, then columns: 2*size strided slice operations, no padded
copy). The max backward is size*size strided slice-adds of ``dy * (x == y)``, one per window
offset; within one offset the touched inputs are distinct, so the in-place adds are exact and
deterministic. (A separable max backward through the row-stage maxima is also exact, but was not
faster for 3/2 pooling.) All of it runs on blocks of channels of about BLOCK_BYTES of x, on
pyconvnet's CPU threads: each block's passes stay in cache, and the result does not depend on the
block size or the thread count.
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_int, check_same_dtype, fail
from ._parallel import byte_blocks, run_blocks

MODES = ("max", "avg")
BLOCK_BYTES = 1 << 20  # channel blocks of the forward and the max backward


def window_taps(img: int, n_out: int, size: int, stride: int, start: int):
    """For each window offset k in [0, size): the outputs whose tap k lies inside the image.

    Output i reads input ``start + i*stride + k``. Yields ``(k, out_slice, in_slice)`` where
    ``out_slice`` is the contiguous range of such outputs and ``in_slice`` the strided range of the
    inputs they read (equal lengths); offsets that touch no output are skipped.
    """
    for k in range(size):
        first = start + k  # input read by output 0
        i0 = -(first // stride) if first < 0 else 0  # first i with first + i*stride >= 0
        i1 = min(n_out, (img - 1 - first) // stride + 1) if first < img else 0
        if i1 <= i0:
            continue
        r0 = first + i0 * stride
        yield k, slice(i0, i1), slice(r0, r0 + (i1 - i0 - 1) * stride + 1, stride)


def window_counts(img: int, n_out: int, size: int, stride: int, start: int) -> np.ndarray:
    """(n_out,) int64: the number of in-image elements of each window along one direction."""
    lo = start + stride * np.arange(n_out)
    return np.minimum(img, lo + size) - np.maximum(0, lo)


def _geometry(op: str, img: int, size, stride, start, outputs) -> int:
    """Check the pooling parameters for one image dimension and return the output count."""
    size = check_int(op, "size", size, 1)
    stride = check_int(op, "stride", stride, 1)
    start = check_int(op, "start", start)
    outputs = check_int(op, "outputs", outputs, 0)
    n = outputs
    if n == 0:
        n = -((size + start - img) // stride) + 1  # ceil((img - start - size) / stride) + 1
        if n < 1:
            fail(op, f"no output window: image size {img}, size {size}, start {start}, "
                     f"stride {stride} give {n} outputs")
    if start + size <= 0:
        fail(op, f"window 0 covers [{start}, {start + size}) and misses the image [0, {img})")
    last = start + (n - 1) * stride
    if last >= img:
        fail(op, f"window {n - 1} covers [{last}, {last + size}) and misses the image [0, {img}) "
                 f"(image size {img}, size {size}, stride {stride}, start {start}, outputs {n})")
    return n


def pool_out_size(img, size, stride, start=0, outputs=0) -> int:
    """Output count along one direction: ``outputs`` if nonzero, else
    ceil((img - start - size) / stride) + 1. Raises ValueError if some window misses the image."""
    img = check_int("pool_out_size", "img", img, 1)
    return _geometry("pool_out_size", img, size, stride, start, outputs)


def _check_mode(op, mode):
    if mode not in MODES:
        fail(op, f"mode must be one of {MODES}, got {mode!r}")


def _out_shape(op, x_shape, size, stride, start, outputs):
    _, h, w, _ = x_shape
    return (_geometry(op, h, size, stride, start, outputs),
            _geometry(op, w, size, stride, start, outputs))


def _counts(h, w, oh, ow, size, stride, start, dtype):
    """(1, OH, OW, 1): in-image element count of each window, in ``dtype``."""
    cnt = np.outer(window_counts(h, oh, size, stride, start),
                   window_counts(w, ow, size, stride, start))
    return cnt.astype(dtype)[None, :, :, None]


def pool_fwd(x, *, mode, size, stride, start=0, outputs=0):
    """Max or average pooling. x (C, H, W, N) float32/float64 -> y (C, OH, OW, N), same dtype."""
    op = "pool_fwd"
    _check_mode(op, mode)
    check_array(op, "x", x, ndim=4)
    oh, ow = _out_shape(op, x.shape, size, stride, start, outputs)
    c, h, w, n = x.shape
    taps_h = list(window_taps(h, oh, size, stride, start))
    taps_w = list(window_taps(w, ow, size, stride, start))
    y = np.empty((c, oh, ow, n), dtype=x.dtype)
    cnt = None if mode == "max" else _counts(h, w, oh, ow, size, stride, start, x.dtype)

    # Blocks of channels of about BLOCK_BYTES of x (on a few threads): the row stage's result is
    # still in cache when the column stage reads it.
    def block(c0, c1):
        xs, ys = x[c0:c1], y[c0:c1]
        if mode == "max":
            rows = np.full((c1 - c0, oh, w, n), -np.inf, dtype=x.dtype)  # max over the window rows
            for _, o, r in taps_h:
                np.maximum(rows[:, o], xs[:, r], out=rows[:, o])
            ys.fill(-np.inf)
            for _, o, r in taps_w:
                np.maximum(ys[:, :, o], rows[:, :, r], out=ys[:, :, o])
            return
        rows = np.zeros((c1 - c0, oh, w, n), dtype=x.dtype)  # sum over the window rows
        for _, o, r in taps_h:
            rows[:, o] += xs[:, r]
        ys.fill(0)
        for _, o, r in taps_w:
            ys[:, :, o] += rows[:, :, r]
        ys /= cnt

    run_blocks(block, byte_blocks(c, h * w * n * x.itemsize, BLOCK_BYTES))
    return y


def check_pool_bwd(dy, x, y, mode, size, stride, start, outputs, arrays=None):
    """The argument checks of pool_bwd (shared with the CUDA backend, which passes ``arrays``: its
    device-array check, run after the mode's); returns (OH, OW)."""
    op = "pool_bwd"
    _check_mode(op, mode)
    if arrays is not None:
        arrays()
    check_array(op, "x", x, ndim=4)
    oh, ow = _out_shape(op, x.shape, size, stride, start, outputs)
    c, _, _, n = x.shape
    check_array(op, "dy", dy, shape=(c, oh, ow, n))
    check_array(op, "y", y, shape=(c, oh, ow, n))
    check_same_dtype(op, dy=dy, x=x, y=y)
    return oh, ow


def pool_bwd(dy, x, y, *, mode, size, stride, start=0, outputs=0):
    """Gradient of pooling. dy, y (C, OH, OW, N); x (C, H, W, N) -> dx (C, H, W, N), x's dtype.

    avg: each input gets dy / count of every window covering it. max: each input equal to its
    window's max y gets that window's dy (all tied inputs receive it); y must be pool_fwd's output.
    """
    oh, ow = check_pool_bwd(dy, x, y, mode, size, stride, start, outputs)
    c, h, w, n = x.shape
    taps_h = list(window_taps(h, oh, size, stride, start))
    taps_w = list(window_taps(w, ow, size, stride, start))
    dx = np.empty_like(x)  # each block zeroes its own channels first (in parallel, in cache)
    if mode == "max":
        # Blocks of channels of about BLOCK_BYTES (on a few threads), so the size*size passes over a
        # block run in cache, with the mask and product written into per-block buffers.
        def block(c0, c1):
            cs = slice(c0, c1)
            dx[cs].fill(0)
            eq = np.empty((c1 - c0, oh, ow, n), dtype=bool)
            prod = np.empty(eq.shape, dtype=x.dtype)
            for _, oy, ry in taps_h:
                for _, ox, rx in taps_w:
                    xs, d = x[cs, ry, rx], dx[cs, ry, rx]
                    e, t = eq[:, :xs.shape[1], :xs.shape[2]], prod[:, :xs.shape[1], :xs.shape[2]]
                    np.equal(xs, y[cs, oy, ox], out=e)
                    np.multiply(dy[cs, oy, ox], e, out=t)
                    np.add(d, t, out=d)

        run_blocks(block, byte_blocks(c, h * w * n * x.itemsize, BLOCK_BYTES))
        return dx
    cnt = _counts(h, w, oh, ow, size, stride, start, dy.dtype)

    def avg_block(c0, c1):
        g = dy[c0:c1] / cnt
        drows = np.zeros((c1 - c0, oh, w, n), dtype=x.dtype)  # gradient of the row-stage sums
        for _, o, r in taps_w:
            drows[:, :, r] += g[:, :, o]
        d = dx[c0:c1]
        d.fill(0)
        for _, o, r in taps_h:
            d[:, r] += drows[:, o]

    run_blocks(avg_block, byte_blocks(c, h * w * n * x.itemsize, BLOCK_BYTES))
    return dx
