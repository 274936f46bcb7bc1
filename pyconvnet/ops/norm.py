"""Response and contrast normalisation, NumPy reference (cuda-convnet semantics).

All arrays are (C, H, W, N) float32 or float64, C-contiguous, batch innermost; outputs keep x's
shape and dtype. With b = size // 2, the window around index i along one axis is
``[i - b, i - b + size)`` clipped to the axis (even sizes reach one further back than forward).

- cmrnorm (cross-map, AlexNet's LRN): window over channels,
  ``denom = min_div + (scale/size) * sum_window x^2``, ``y = x * denom^-pow``.
- rnorm (same map): size x size spatial window in each channel, ``scale/size^2`` (size^2 always,
  also where the window is clipped at the border).
- cnorm (contrast): as rnorm with ``sum_window (x - m)^2``, m the mean of x over the in-image part
  of the window of the output position; still ``y = x * denom^-pow``.

Backward, with g = dy * y / denom (= dy * x * denom^(-pow-1)) and a = scale/size or scale/size^2:
``dx = dy * denom^-pow - 2*pow*a * x * boxT(g)`` for cmrnorm and rnorm, where boxT sums over the
outputs whose window covers the input (the transposed window ``[i - (size-1-b), i + b]``). For
cnorm, d sum_window (x_q - m_p)^2 / d x_r = 2 (x_r - m_p) for r in the window of p (the term
through m_p vanishes, as the deviations sum to zero), so
``dx = dy * denom^-pow - 2*pow*a * (x * boxT(g) - boxT(g * m))``.

cmrnorm may drop the denominators: ``cmrnorm_fwd(..., keep_denom=False)`` returns ``(y, None)`` and
``cmrnorm_bwd(dy, x, None, None, ...)`` recomputes denom from x (min_div matters there), using
dy * y / denom = dy * x * denom^(-pow-1); the GPU forward then writes y alone and the backward reads dy
and x alone.

Window sums are separable: ``size`` strided slice-adds per axis. cnorm's sum of squared deviations
is taken directly, one pass per size*size offset, avoiding the cancellation in sum(x^2) - n*m^2.
Every op runs on blocks along an axis its windows do not cross (channels for rnorm and cnorm, rows
for cmrnorm) of about BLOCK_BYTES each, on pyconvnet's CPU threads (`_by_blocks`): the same bits for
any block size and thread count.
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_float, check_int, check_same_dtype, fail
from ._parallel import byte_blocks, run_blocks
from .pool import window_counts, window_taps

BLOCK_BYTES = 1 << 20  # blocks of one input array that the threads work on (see _by_blocks)


def _at(axis: int, s: slice):
    return (slice(None),) * axis + (s,)


def _box(a, axes, size: int, transpose: bool = False):
    """Sum of ``a`` over the clipped window along each of ``axes`` (or its transpose); new array."""
    before = size // 2
    if transpose:
        before = size - 1 - before
    for ax in axes:
        n = a.shape[ax]
        out = a.copy()  # offset k == before reads the output's own position
        for k, o, r in window_taps(n, n, size, 1, -before):
            if k != before:
                out[_at(ax, o)] += a[_at(ax, r)]
        a = out
    return a


def _by_blocks(axis, n_out, fn, *arrays):
    """``fn`` applied to blocks of ``arrays`` (None passes through) along ``axis``, which the op's
    windows do not cross, on a few threads: each block's work stays in cache and the two cores share
    it. ``fn(*blocks)`` returns ``n_out`` arrays of its blocks' shape, gathered into new arrays of
    arrays[0]'s shape and dtype; the result is the same as ``fn(*arrays)`` element for element."""
    x = arrays[0]
    length = x.shape[axis]
    outs = [np.empty_like(x) for _ in range(n_out)]

    def block(lo, hi):
        at = _at(axis, slice(lo, hi))
        for o, r in zip(outs, fn(*(None if a is None else a[at] for a in arrays))):
            o[at] = r

    run_blocks(block, byte_blocks(length, x.nbytes // max(length, 1), BLOCK_BYTES))
    return outs


def _params(op, x, size, scale, pow, min_div):
    check_array(op, "x", x, ndim=4)
    size = check_int(op, "size", size, 1)
    scale = check_float(op, "scale", scale, lo=0.0)
    pow = check_float(op, "pow", pow)
    min_div = check_float(op, "min_div", min_div, lo=0.0, lo_open=True)
    return size, scale, pow, min_div


def _bwd_args(op, dy, x, y, denom, size, scale, pow, min_div, optional=False):
    """The checked parameters; with ``optional`` (cmrnorm), y and denom may both be None."""
    params = _params(op, x, size, scale, pow, min_div)
    if optional and (y is None) != (denom is None):
        def what(a):
            return "None" if a is None else f"shape {tuple(getattr(a, 'shape', ()))}"
        fail(op, "y and denom must both be given or both be None (recomputed from x), "
                 f"got y {what(y)} and denom {what(denom)}")
    for name, a in (("dy", dy), ("y", y), ("denom", denom)):
        if a is not None or not optional:
            check_array(op, name, a, shape=x.shape)
    check_same_dtype(op, dy=dy, x=x, y=y, denom=denom)
    return params


def _finish_fwd(x, s, alpha, pow, min_div):
    """denom = min_div + alpha * s (in place on s); y = x * denom^-pow."""
    s *= alpha
    s += min_div
    return x * np.power(s, -pow), s


def _mean(x, size):
    """Mean of x over each position's clipped size x size window, (C, H, W, N)."""
    _, h, w, _ = x.shape
    b = size // 2
    cnt = np.outer(window_counts(h, h, size, 1, -b), window_counts(w, w, size, 1, -b))
    return _box(x, (1, 2), size) / cnt.astype(x.dtype)[None, :, :, None]


def cmrnorm_fwd(x, *, size, scale, pow, min_div=1.0, keep_denom=True):
    """Cross-map response norm. x (C, H, W, N) -> (y, denom), both (C, H, W, N), x's dtype;
    (y, None) with ``keep_denom=False`` (cmrnorm_bwd then recomputes denom from x)."""
    size, scale, pow, min_div = _params("cmrnorm_fwd", x, size, scale, pow, min_div)

    def fwd(xb):  # windows over channels: blocks of rows
        y, denom = _finish_fwd(xb, _box(np.square(xb), (0,), size), scale / size, pow, min_div)
        return (y, denom) if keep_denom else (y,)
    out = _by_blocks(1, 2 if keep_denom else 1, fwd, x)
    return (out[0], out[1]) if keep_denom else (out[0], None)


def rnorm_fwd(x, *, size, scale, pow, min_div=1.0):
    """Same-map response norm. x (C, H, W, N) -> (y, denom), both (C, H, W, N), x's dtype."""
    size, scale, pow, min_div = _params("rnorm_fwd", x, size, scale, pow, min_div)
    return tuple(_by_blocks(0, 2, lambda xb: _finish_fwd(xb, _box(np.square(xb), (1, 2), size),
                                                          scale / size**2, pow, min_div), x))


def cnorm_fwd(x, *, size, scale, pow, min_div=1.0):
    """Contrast norm. x (C, H, W, N) -> (y, denom), both (C, H, W, N), x's dtype."""
    size, scale, pow, min_div = _params("cnorm_fwd", x, size, scale, pow, min_div)
    _, h, w, _ = x.shape
    taps_h = list(window_taps(h, h, size, 1, -(size // 2)))
    taps_w = list(window_taps(w, w, size, 1, -(size // 2)))

    def fwd(xb):  # windows within a channel: blocks of channels
        m = _mean(xb, size)
        s = np.zeros_like(xb)
        for _, oy, ry in taps_h:
            for _, ox, rx in taps_w:
                s[:, oy, ox] += np.square(xb[:, ry, rx] - m[:, oy, ox])
        return _finish_fwd(xb, s, scale / size**2, pow, min_div)
    return tuple(_by_blocks(0, 2, fwd, x))


def _rnorm_like_bwd(dy, x, y, denom, axes, size, alpha, pow):
    t = _box(dy * y / denom, axes, size, transpose=True)
    return dy * np.power(denom, -pow) - (2.0 * pow * alpha) * x * t


def cmrnorm_bwd(dy, x, y, denom, *, size, scale, pow, min_div=1.0):
    """Gradient of cmrnorm_fwd. dy, x, y, denom (C, H, W, N), one dtype -> dx (C, H, W, N).

    y and denom may both be None: denom is then recomputed from x (with min_div) and
    dy * y / denom taken as dy * x * denom^(-pow-1).
    """
    size, scale, pow, min_div = _bwd_args("cmrnorm_bwd", dy, x, y, denom, size, scale, pow, min_div,
                                          optional=True)
    alpha = scale / size

    def bwd(dyb, xb, yb, db):  # windows over channels: blocks of rows
        if db is not None:
            return (_rnorm_like_bwd(dyb, xb, yb, db, (0,), size, alpha, pow),)
        db = min_div + alpha * _box(np.square(xb), (0,), size)
        p = np.power(db, -pow)
        t = _box(dyb * xb * (p / db), (0,), size, transpose=True)
        return (dyb * p - (2.0 * pow * alpha) * xb * t,)
    return _by_blocks(1, 1, bwd, dy, x, y, denom)[0]


def rnorm_bwd(dy, x, y, denom, *, size, scale, pow, min_div=1.0):
    """Gradient of rnorm_fwd. dy, x, y, denom (C, H, W, N), one dtype -> dx (C, H, W, N)."""
    size, scale, pow, _ = _bwd_args("rnorm_bwd", dy, x, y, denom, size, scale, pow, min_div)
    return _by_blocks(0, 1, lambda *b: (_rnorm_like_bwd(*b, (1, 2), size, scale / size**2, pow),),
                      dy, x, y, denom)[0]


def cnorm_bwd(dy, x, y, denom, *, size, scale, pow, min_div=1.0):
    """Gradient of cnorm_fwd (through the window mean too). dy, x, y, denom (C, H, W, N) -> dx."""
    size, scale, pow, _ = _bwd_args("cnorm_bwd", dy, x, y, denom, size, scale, pow, min_div)

    def bwd(dyb, xb, yb, db):  # windows within a channel: blocks of channels
        g = dyb * yb / db
        t = xb * _box(g, (1, 2), size, transpose=True)
        t -= _box(g * _mean(xb, size), (1, 2), size, transpose=True)
        return (dyb * np.power(db, -pow) - (2.0 * pow * scale / size**2) * t,)
    return _by_blocks(0, 1, bwd, dy, x, y, denom)[0]
