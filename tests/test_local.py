"""Tests of the NumPy locally connected (unshared) reference (pyconvnet.ops.local)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops import conv
from pyconvnet.ops.conv import (bias_bwd, conv_bwd_data, conv_bwd_filter, conv_fwd,
                                conv_out_size)
from pyconvnet.ops.local import local_bwd_data, local_bwd_filter, local_fwd


def rand(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def direct_local(x, w, b=None, padding=0, stride=1, groups=1):
    """Independent reference: position q = oy*OW + ox uses its own filters w[q]."""
    C, H, W, N = x.shape
    _, Cg, R, _, K = w.shape
    OH = 1 + math.ceil((2 * padding + H - R) / stride)
    OW = 1 + math.ceil((2 * padding + W - R) / stride)
    Kg = K // groups
    y = np.zeros((K, OH, OW, N))
    for k in range(K):
        g = k // Kg
        for oy in range(OH):
            for ox in range(OW):
                for c in range(Cg):
                    for i in range(R):
                        for j in range(R):
                            iy, ix = oy * stride - padding + i, ox * stride - padding + j
                            if 0 <= iy < H and 0 <= ix < W:
                                y[k, oy, ox] += w[oy * OW + ox, c, i, j, k] * x[g * Cg + c, iy, ix]
    if b is not None:
        y += b.reshape(K, OH, OW, 1)
    return y


CASES = [  # C, H, W, N, R, K, padding, stride, groups
    (3, 5, 5, 1, 3, 5, 1, 1, 1),
    (5, 7, 6, 3, 3, 7, 0, 2, 1),    # width overhangs
    (3, 10, 10, 2, 3, 4, 1, 4, 1),  # stride 4, overhang
    (6, 5, 6, 3, 2, 4, 1, 1, 2),    # groups 2
    (6, 5, 5, 2, 3, 9, 2, 2, 3),    # groups 3
]


def _shapes(case):
    C, H, W, N, R, K, p, s, g = case
    return conv_out_size(H, R, p, s), conv_out_size(W, R, p, s)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_fwd_matches_direct(case, dtype):
    C, H, W, N, R, K, p, s, g = case
    OH, OW = _shapes(case)
    rng = np.random.default_rng(1)
    x, w = rand(rng, C, H, W, N, dtype=dtype), rand(rng, OH * OW, C // g, R, R, K, dtype=dtype)
    b = rand(rng, K * OH * OW, 1, dtype=dtype)
    y = local_fwd(x, w, b, padding=p, stride=s, groups=g)
    assert y.dtype == dtype and y.shape == (K, OH, OW, N) and y.flags.c_contiguous
    ref = direct_local(*(a.astype(np.float64) for a in (x, w, b)), padding=p, stride=s, groups=g)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_local_with_shared_filters_equals_conv(case, monkeypatch):
    C, H, W, N, R, K, p, s, g = case
    OH, OW = _shapes(case)
    rng = np.random.default_rng(2)
    x, w = rand(rng, C, H, W, N), rand(rng, C // g, R, R, K)
    wl = np.ascontiguousarray(np.broadcast_to(w, (OH * OW,) + w.shape))
    dy = rand(rng, K, OH, OW, N)
    kw = dict(padding=p, stride=s, groups=g)
    for chunk in (1, conv.CHUNK_BYTES):  # one position per chunk, and the default
        monkeypatch.setattr(conv, "CHUNK_BYTES", chunk)
        np.testing.assert_allclose(local_fwd(x, wl, **kw), conv_fwd(x, w, **kw),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(local_bwd_data(dy, wl, (H, W), **kw),
                                   conv_bwd_data(dy, w, (H, W), **kw), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(local_bwd_filter(dy, x, R, **kw).sum(axis=0),
                                   conv_bwd_filter(dy, x, R, **kw), rtol=1e-12, atol=1e-12)


def test_local_filter_gradient_is_per_position():
    """dw[q] only sees position q: with dy zero except at one position, dw is zero elsewhere."""
    rng = np.random.default_rng(3)
    x = rand(rng, 2, 4, 4, 3)
    dy = np.zeros((3, 2, 2, 3))
    dy[:, 1, 0] = rand(rng, 3, 3)
    dw = local_bwd_filter(dy, x, 3, stride=1)
    assert np.all(dw[[0, 1, 3]] == 0) and np.any(dw[2] != 0)
    # position (1, 0) reads x[:, 1:4, 0:3]:
    # dw[2, c, i, j, k] = sum_n x[c, 1+i, j, n] * dy[k, 1, 0, n]
    np.testing.assert_allclose(dw[2], np.einsum("cijn,kn->cijk", x[:, 1:4, 0:3], dy[:, 1, 0]),
                               rtol=1e-12)


# --------------------------------------------------------------------------- gradients

GRAD_CASES = CASES + [
    (2, 3, 3, 128, 2, 3, 1, 2, 1),  # batch 128, tiny otherwise
    (3, 4, 4, 3, 2, 5, 3, 1, 1),    # padding > filter - 1
]


def _local_problem(case, rng, bias=True):
    C, H, W, N, R, K, p, s, g = case
    OH, OW = _shapes(case)
    inputs = dict(x=rand(rng, C, H, W, N), w=rand(rng, OH * OW, C // g, R, R, K),
                  b=rand(rng, K * OH * OW, 1))
    kw = dict(padding=p, stride=s, groups=g)

    def fwd(x, w, b):
        return local_fwd(x, w, b, **kw)

    def bwd(dy, x, w, b):
        return dict(x=local_bwd_data(dy, w, (H, W), **kw), w=local_bwd_filter(dy, x, R, **kw),
                    b=bias_bwd(dy, False))
    return fwd, bwd, inputs


@pytest.mark.parametrize("case", GRAD_CASES)
def test_local_gradients(case):
    fwd, bwd, inputs = _local_problem(case, np.random.default_rng(4))
    check_grad(fwd, bwd, inputs, wrt=("x", "w", "b"))


def test_local_gradcheck_catches_perturbation():
    fwd, bwd, inputs = _local_problem(CASES[1], np.random.default_rng(5))
    check_grad_catches_perturbation(fwd, bwd, inputs, wrt=("x", "w", "b"))


# --------------------------------------------------------------------------- bad arguments

def test_local_bad_arguments():
    rng = np.random.default_rng(6)
    x = rand(rng, 4, 5, 5, 2)
    w = rand(rng, 9, 2, 3, 3, 4)  # 3x3 outputs with padding 0
    dy = rand(rng, 4, 3, 3, 2)
    local_fwd(x, w, groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: w \(9, 2, 3, 3, 4\) must have OH\*OW = "
                                         r"5\*5 = 25 filter banks"):
        local_fwd(x, w, padding=1, groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: w must have 5 dimensions, got shape "
                                         r"\(2, 3, 3, 4\)"):
        local_fwd(x, w[0], groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: b must have shape \(36, 1\) \(K=4, OH=3, "
                                         r"OW=3\), got \(4, 1\)"):
        local_fwd(x, w, rand(rng, 4, 1), groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: w \(9, 2, 3, 3, 4\) has 2 channels per "
                                         r"group, but x \(4, 5, 5, 2\) with groups=1 has 4"):
        local_fwd(x, w)
    with pytest.raises(ValueError, match="local_fwd: inputs must share one dtype"):
        local_fwd(x.astype(np.float32), w, groups=2)
    with pytest.raises(ValueError, match="local_fwd: x must be C-contiguous"):
        local_fwd(np.asfortranarray(x), w, groups=2)
    with pytest.raises(ValueError, match="local_fwd: stride must be >= 1, got 0"):
        local_fwd(x, w, stride=0, groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_data: dy must have shape \(4, 3, 3, 2\)"):
        local_bwd_data(dy[:, :2].copy(), w, (5, 5), groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_data: w \(9, 2, 3, 3, 4\) must have OH\*OW"):
        local_bwd_data(dy, w, (6, 6), groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_data: img_size must be a pair"):
        local_bwd_data(dy, w, (5, 5, 1), groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_filter: dy must have shape \(4, 5, 5, 2\)"):
        local_bwd_filter(dy, x, 3, padding=1, groups=2)
    with pytest.raises(ValueError, match="local_bwd_filter: padding must be >= 0, got -2"):
        local_bwd_filter(dy, x, 3, padding=-2, groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_filter: filters K=4 of dy \(4, 3, 3, 2\) are "
                                         r"not divisible by groups=3"):
        local_bwd_filter(dy, rand(rng, 3, 5, 5, 2), 3, groups=3)
