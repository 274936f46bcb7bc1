"""Pooling reference (pyconvnet.ops.pool): output sizes, values against a per-window loop,
tied maxima, gradient checks and argument errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops.pool import pool_bwd, pool_fwd, pool_out_size


# ---- independent loop implementation (one window at a time, all channels and images at once) ----

def _windows(img, size, stride, start, outputs):
    n = outputs or math.ceil((img - start - size) / stride) + 1
    return [(max(0, start + i * stride), min(img, start + i * stride + size)) for i in range(n)]


def loop_pool_fwd(x, mode, size, stride, start=0, outputs=0):
    rows = _windows(x.shape[1], size, stride, start, outputs)
    cols = _windows(x.shape[2], size, stride, start, outputs)
    y = np.empty((x.shape[0], len(rows), len(cols), x.shape[3]), dtype=x.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            win = x[:, r0:r1, c0:c1, :]
            y[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return y


def loop_pool_bwd(dy, x, mode, size, stride, start=0, outputs=0):
    rows = _windows(x.shape[1], size, stride, start, outputs)
    cols = _windows(x.shape[2], size, stride, start, outputs)
    dx = np.zeros_like(x)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            win = x[:, r0:r1, c0:c1, :]
            g = dy[:, i, j][:, None, None, :]
            if mode == "max":
                dx[:, r0:r1, c0:c1] += g * (win == win.max(axis=(1, 2), keepdims=True))
            else:
                dx[:, r0:r1, c0:c1] += g / ((r1 - r0) * (c1 - c0))
    return dx


# (C, H, W, N), size, stride, start, outputs
GEOMS = [
    ((1, 5, 5, 1), 3, 1, -1, 0),    # stride 1, windows off both borders
    ((3, 7, 6, 3), 3, 2, 0, 0),     # CIFAR-style 3/2, H != W, last window overhangs W
    ((5, 9, 9, 3), 3, 4, 0, 0),     # stride 4 > size: gaps; last window clipped to one row
    ((7, 6, 7, 1), 4, 2, -2, 0),    # even size, negative start
    ((3, 8, 8, 2), 3, 3, 0, 2),     # given outputs (fewer than the default 3)
    ((2, 7, 5, 3), 5, 4, -3, 0),    # big overhang on both sides
    ((2, 4, 4, 128), 2, 2, 0, 0),   # batch 128, tiny image
]
GEOM_IDS = ["C{}H{}W{}N{}".format(*g[0]) + "-s{}/{}-st{}-o{}".format(*g[1:]) for g in GEOMS]


def _distinct(shape, rng, dtype=np.float64):
    """Random values that are pairwise at least 0.01 apart (no ties, no kinks for the max)."""
    v = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0
    return np.ascontiguousarray(v, dtype=dtype)


# ---- output size ----

@pytest.mark.parametrize("args, want", [
    ((32, 3, 2), 16),            # ceil(29/2) + 1; last window [30, 33) overhangs
    ((24, 3, 2), 12),
    ((8, 3, 3), 3),              # windows 0, 3, 6; the last covers [6, 9) over an 8-wide image
    ((8, 2, 2), 4),              # exact tiling
    ((5, 3, 2, -1), 3),          # windows [-1,2) [1,4) [3,6)
    ((7, 2, 2, 1), 3),           # start > 0: [1,3) [3,5) [5,7)
    ((6, 1, 1), 6),
    ((5, 5, 1), 1),
    ((32, 3, 2, 0, 10), 10),     # given outputs win over the rule
    ((5, 3, 2, 0, 2), 2),
    ((5, 3, 2, -2, 3), 3),       # given outputs with negative start: [-2,1) [0,3) [2,5)
])
def test_pool_out_size(args, want):
    assert pool_out_size(*args) == want


@pytest.mark.parametrize("args, match", [
    ((5, 3, 2, 0, 4), r"pool_out_size: window 3 covers \[6, 9\) and misses the image \[0, 5\)"),
    ((5, 2, 1, -2), r"pool_out_size: window 0 covers \[-2, 0\) and misses"),
    ((2, 3, 1), r"pool_out_size: no output window"),
    ((7, 2, 4, -1), r"pool_out_size: window 2 covers \[7, 9\)"),  # stride > size overshoots
    ((5, 0, 1), r"pool_out_size: size must be >= 1, got 0"),
    ((5, -3, 1), r"pool_out_size: size must be >= 1, got -3"),
    ((5, 3, 0), r"pool_out_size: stride must be >= 1, got 0"),
    ((5, 3, 1, 0, -1), r"pool_out_size: outputs must be >= 0, got -1"),
    ((0, 3, 1), r"pool_out_size: img must be >= 1, got 0"),
    ((5, 2.0, 1), r"pool_out_size: size must be an integer"),
])
def test_pool_out_size_errors(args, match):
    with pytest.raises(ValueError, match=match):
        pool_out_size(*args)


# ---- forward and backward values ----

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size, stride, start, outputs", GEOMS, ids=GEOM_IDS)
def test_pool_matches_loop(shape, size, stride, start, outputs, mode, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    kw = dict(mode=mode, size=size, stride=stride, start=start, outputs=outputs)
    y = pool_fwd(x, **kw)
    want = loop_pool_fwd(x.astype(np.float64), mode, size, stride, start, outputs)
    assert y.dtype == dtype and y.shape == want.shape
    assert y.shape[1:3] == (pool_out_size(shape[1], size, stride, start, outputs),
                            pool_out_size(shape[2], size, stride, start, outputs))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = pool_bwd(dy, x, y, **kw)
    assert dx.dtype == dtype and dx.shape == x.shape
    dwant = loop_pool_bwd(dy.astype(np.float64), x.astype(np.float64), mode, size, stride, start,
                          outputs)
    np.testing.assert_allclose(dx, dwant, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape, size, stride, start, outputs", GEOMS, ids=GEOM_IDS)
def test_max_bwd_in_channel_blocks(shape, size, stride, start, outputs, monkeypatch):
    """The max backward walks channel blocks of BLOCK_BYTES; one channel per block (and a last,
    partial block) gives exactly the loop reference's result."""
    from pyconvnet.ops import pool
    monkeypatch.setattr(pool, "BLOCK_BYTES", 2 * shape[1] * shape[2] * shape[3] * 8 - 1)  # 1 channel/block
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((5, *shape[1:])), 1)  # 5 channels, rounded: ties occur
    kw = dict(mode="max", size=size, stride=stride, start=start, outputs=outputs)
    y = pool_fwd(x, **kw)
    dy = rng.standard_normal(y.shape)
    want = loop_pool_bwd(dy, x, "max", size, stride, start, outputs)
    np.testing.assert_allclose(pool_bwd(dy, x, y, **kw), want, rtol=1e-13, atol=1e-13)
    monkeypatch.setattr(pool, "BLOCK_BYTES", 2 * shape[1] * shape[2] * shape[3] * 8)  # 2 channels/block
    np.testing.assert_allclose(pool_bwd(dy, x, y, **kw), want, rtol=1e-13, atol=1e-13)


def test_avg_divides_by_in_image_count():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # [[1 2 3] [4 5 6] [7 8 9]]
    y = pool_fwd(x, mode="avg", size=2, stride=2)  # windows rows/cols [0,2) and [2,3)
    np.testing.assert_allclose(y[0, :, :, 0], [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2],
                                               [(7 + 8) / 2, 9.0]])
    y = pool_fwd(x, mode="avg", size=3, stride=2, start=-1)  # [-1,2) -> [0,2), [1,4) -> [1,3)
    np.testing.assert_allclose(y[0, :, :, 0], [[3.0, 4.0], [6.0, 7.0]])
    ones = np.ones((2, 5, 7, 3), np.float32)  # any in-image mean of ones is exactly 1
    np.testing.assert_array_equal(pool_fwd(ones, mode="avg", size=4, stride=3, start=-2), 1.0)
    dx = pool_bwd(np.ones((1, 2, 2, 1)), x, y, mode="avg", size=2, stride=2)
    np.testing.assert_allclose(dx[0, :, :, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5],
                                                [0.5, 0.5, 1.0]])


def test_max_ties_all_get_the_gradient():
    x = np.zeros((1, 4, 4, 2))
    x[0, :, :, 0] = [[1, 5, 0, 0],
                     [5, 2, 0, 7],
                     [0, 0, 3, 3],
                     [0, 0, 3, 1]]
    x[0, :, :, 1] = np.arange(16).reshape(4, 4)  # no ties in image 1
    y = pool_fwd(x, mode="max", size=2, stride=2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [0, 3]])
    dy = np.array([[10.0, 20.0], [30.0, 40.0]])[None, :, :, None] * np.ones((1, 1, 1, 2))
    dx = pool_bwd(dy, x, y, mode="max", size=2, stride=2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 10, 0, 0],     # both 5s get 10
                                                   [10, 0, 0, 20],
                                                   [30, 30, 40, 40],  # four 0s tie, three 3s tie
                                                   [30, 30, 40, 0]])
    want1 = np.zeros((4, 4))
    want1[1, 1], want1[1, 3], want1[3, 1], want1[3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(dx[0, :, :, 1], want1)


def test_max_overlapping_windows_sum_their_gradients():
    x = np.array([0.0, 1.0, 9.0, 2.0, 3.0]).reshape(1, 1, 5, 1) * np.ones((1, 5, 1, 1))
    y = pool_fwd(x, mode="max", size=3, stride=1)  # 3x3 output; column 2 is the max of each row
    dy = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    dx = pool_bwd(dy, x, y, mode="max", size=3, stride=1)
    # every window contains column 2 in 3 of its rows (all tied at 9): all of dy lands there
    assert np.count_nonzero(dx) == 5
    np.testing.assert_allclose(dx[0, :, 2, 0], [dy[0, 0].sum(), dy[0, :2].sum(), dy.sum(),
                                                dy[0, 1:].sum(), dy[0, 2].sum()])


# ---- gradient checks (float64) ----

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape, size, stride, start, outputs", GEOMS, ids=GEOM_IDS)
def test_pool_grad(shape, size, stride, start, outputs, mode):
    kw = dict(mode=mode, size=size, stride=stride, start=start, outputs=outputs)
    x = _distinct(shape, np.random.default_rng(2))
    check_grad(lambda x: pool_fwd(x, **kw),
               lambda dy, x: {"x": pool_bwd(dy, x, pool_fwd(x, **kw), **kw)}, {"x": x}, ("x",))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_grad_catches_perturbation(mode):
    kw = dict(mode=mode, size=3, stride=2, start=-1)
    x = _distinct((3, 6, 5, 2), np.random.default_rng(3))
    check_grad_catches_perturbation(lambda x: pool_fwd(x, **kw),
                                    lambda dy, x: {"x": pool_bwd(dy, x, pool_fwd(x, **kw), **kw)},
                                    {"x": x}, ("x",))


# ---- bad arguments ----

X = np.zeros((2, 6, 6, 3), np.float32)
Y = np.zeros((2, 3, 3, 3), np.float32)  # size 2, stride 2


@pytest.mark.parametrize("x, kw, match", [
    (X, dict(size=-1), r"pool_fwd: size must be >= 1, got -1"),
    (X, dict(size=0), r"pool_fwd: size must be >= 1, got 0"),
    (X, dict(stride=-2), r"pool_fwd: stride must be >= 1, got -2"),
    (X, dict(outputs=-1), r"pool_fwd: outputs must be >= 0"),
    (X, dict(start=-2), r"pool_fwd: window 0 covers \[-2, 0\)"),
    (X, dict(outputs=4), r"pool_fwd: window 3 covers \[6, 8\) and misses the image \[0, 6\)"),
    (X, dict(mode="min"), r"pool_fwd: mode must be one of \('max', 'avg'\), got 'min'"),
    (X[0], {}, r"pool_fwd: x must have 4 dimensions, got shape \(6, 6, 3\)"),
    (X.astype(np.float16), {}, r"pool_fwd: x must be float32 or float64, got float16"),
    (X.astype(np.int32), {}, r"pool_fwd: x must be float32 or float64, got int32"),
    (np.zeros((2, 6, 6, 6), np.float32)[..., ::2], {}, r"pool_fwd: x must be C-contiguous"),
    ([[1.0]], {}, r"pool_fwd: x must be an array"),
])
def test_pool_fwd_bad_args(x, kw, match):
    kw = dict(dict(mode="max", size=2, stride=2), **kw)
    with pytest.raises(ValueError, match=match):
        pool_fwd(x, **kw)


@pytest.mark.parametrize("dy, x, y, match", [
    (Y[:, :2], X, Y, r"pool_bwd: dy must have shape \(2, 3, 3, 3\), got \(2, 2, 3, 3\)"),
    (Y, X, Y[..., :2].copy(), r"pool_bwd: y must have shape \(2, 3, 3, 3\), got \(2, 3, 3, 2\)"),
    (Y.astype(np.float64), X, Y, r"pool_bwd: inputs must share one dtype"),
    (Y, X.astype(np.int64), Y, r"pool_bwd: x must be float32 or float64, got int64"),
    (Y, X[:, :, :, None], Y, r"pool_bwd: x must have 4 dimensions"),
    (np.asfortranarray(Y), X, Y, r"pool_bwd: dy must be C-contiguous"),
])
def test_pool_bwd_bad_args(dy, x, y, match):
    with pytest.raises(ValueError, match=match):
        pool_bwd(dy, x, y, mode="avg", size=2, stride=2)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_empty_batch(mode):
    """N = 0 gives empty outputs of the right shapes (the channel blocks of an empty batch)."""
    x = np.zeros((4, 8, 8, 0), np.float32)
    y = pool_fwd(x, mode=mode, size=3, stride=2)
    assert y.shape == (4, 4, 4, 0) and y.dtype == np.float32
    dx = pool_bwd(y, x, y, mode=mode, size=3, stride=2)
    assert dx.shape == x.shape and dx.dtype == np.float32
