"""Tests of the NumPy convolution reference (pyconvnet.ops.conv)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops import conv
from pyconvnet.ops.conv import (bias_bwd, conv_bwd_data, conv_bwd_filter, conv_fwd,
                                conv_out_size)


def direct_conv(x, w, b=None, padding=0, stride=1, groups=1):
    """Independent reference: y[k,oy,ox,:] = sum over in-image taps of w * x, one tap at a time."""
    C, H, W, N = x.shape
    Cg, R, _, K = w.shape
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
                                y[k, oy, ox] += w[c, i, j, k] * x[g * Cg + c, iy, ix]
    if b is not None:
        y += b.reshape(K, 1, 1, 1) if b.shape[0] == K else b.reshape(K, OH, OW, 1)
    return y


def direct_conv_bwd_data(dy, w, H, W, padding=0, stride=1, groups=1):
    """Independent reference: every tap scatters w * dy back to the input pixel it read."""
    K, OH, OW, N = dy.shape
    Cg, R, _, _ = w.shape
    Kg = K // groups
    dx = np.zeros((Cg * groups, H, W, N))
    for k in range(K):
        g = k // Kg
        for oy in range(OH):
            for ox in range(OW):
                for c in range(Cg):
                    for i in range(R):
                        for j in range(R):
                            iy, ix = oy * stride - padding + i, ox * stride - padding + j
                            if 0 <= iy < H and 0 <= ix < W:
                                dx[g * Cg + c, iy, ix] += w[c, i, j, k] * dy[k, oy, ox]
    return dx


def rand(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- output size

@pytest.mark.parametrize("img,f,p,s,want", [
    (32, 5, 2, 1, 32),    # layers-18pct conv1
    (224, 11, 0, 4, 55),  # AlexNet conv1 (cuda-convnet2): windows reach 227, past the border
    (224, 11, 2, 4, 56),  # with padding 2 the ceil rule gives 56 (floor rules give 55)
    (10, 3, 1, 4, 4),     # padded 12, windows at 0,4,8,12: the last reads 12..14, past the border
    (13, 3, 1, 2, 7),     # exact fit
    (5, 6, 0, 3, 1),      # filter larger than the image: one overhanging window
    (8, 1, 0, 1, 8),
    (7, 7, 0, 1, 1),
])
def test_conv_out_size(img, f, p, s, want):
    assert conv_out_size(img, f, p, s) == want


@pytest.mark.parametrize("args,match", [
    ((0, 3, 0, 1), "img must be >= 1"),
    ((8, 0, 0, 1), "filter_size must be >= 1"),
    ((8, 3, -1, 1), "padding must be >= 0"),
    ((8, 3, 0, 0), "stride must be >= 1"),
    ((8, 3.0, 0, 1), "filter_size must be an integer"),
    ((8, 3, True, 1), "padding must be an integer"),
    ((3, 6, 0, 1), r"output size would be -2 < 1 \(image size 3, filter_size 6"),
])
def test_conv_out_size_bad(args, match):
    with pytest.raises(ValueError, match="conv_out_size: " + match):
        conv_out_size(*args)


# --------------------------------------------------------------------------- forward values

def test_conv_fwd_hand_case_no_flip():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    ones = np.ones((1, 2, 2, 1), np.float32)
    np.testing.assert_array_equal(conv_fwd(x, ones)[0, :, :, 0], [[8, 12], [20, 24]])
    corner = np.zeros((1, 2, 2, 1), np.float32)
    corner[0, 0, 0, 0] = 1  # cross-correlation: the top-left tap reads the top-left pixel
    np.testing.assert_array_equal(conv_fwd(x, corner)[0, :, :, 0], [[0, 1], [3, 4]])
    # padding 1, stride 2, 3x3 filter of ones: 2x2 outputs, each the sum of an in-image window
    y = conv_fwd(x, np.ones((1, 3, 3, 1), np.float32), padding=1, stride=2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5],
                                                  [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])


def test_conv_fwd_overhanging_window_reads_zero():
    # img 4, f 3, p 0, s 2 -> 1 + ceil(1/2) = 2: the second window covers columns 2..4, 4 is outside
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    y = conv_fwd(x, np.ones((1, 3, 3, 1)), stride=2)
    assert y.shape == (1, 2, 2, 1)
    assert y[0, 1, 1, 0] == x[0, 2:, 2:, 0].sum()


FWD_CASES = [  # C, H, W, N, R, K, padding, stride, groups
    (3, 5, 5, 1, 3, 5, 1, 1, 1),
    (5, 7, 6, 3, 3, 7, 0, 2, 1),
    (3, 10, 9, 2, 3, 4, 1, 4, 1),
    (6, 6, 5, 2, 2, 4, 1, 1, 2),
    (6, 5, 7, 3, 3, 9, 2, 2, 3),
    (2, 4, 4, 2, 2, 3, 4, 1, 1),  # padding larger than the filter
    (1, 3, 3, 2, 5, 2, 0, 3, 1),  # filter larger than the image
]


@pytest.mark.parametrize("case", FWD_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_fwd_matches_direct(case, dtype):
    C, H, W, N, R, K, p, s, g = case
    rng = np.random.default_rng(1)
    x, w = rand(rng, C, H, W, N, dtype=dtype), rand(rng, C // g, R, R, K, dtype=dtype)
    y = conv_fwd(x, w, padding=p, stride=s, groups=g)
    assert y.dtype == dtype and y.flags.c_contiguous
    ref = direct_conv(x.astype(np.float64), w.astype(np.float64), padding=p, stride=s, groups=g)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_conv_chunking_does_not_change_results(monkeypatch):
    """Small chunks split rows into pieces; the results must not depend on the chunk size."""
    rng = np.random.default_rng(2)
    x, w = rand(rng, 4, 9, 7, 3), rand(rng, 2, 3, 3, 6)
    dy = rand(rng, 6, 5, 4, 3)
    kw = dict(padding=1, stride=2, groups=2)
    ref = (conv_fwd(x, w, **kw), conv_bwd_data(dy, w, (9, 7), **kw),
           conv_bwd_filter(dy, x, 3, **kw))
    for chunk in (1, 2 * 18 * 3 * 8, 10 * 18 * 3 * 8):  # one position, two, parts of two rows
        monkeypatch.setattr(conv, "CHUNK_BYTES", chunk)
        got = (conv_fwd(x, w, **kw), conv_bwd_data(dy, w, (9, 7), **kw),
               conv_bwd_filter(dy, x, 3, **kw))
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_conv_groups_equal_separate_convs():
    rng = np.random.default_rng(3)
    g, C, K = 3, 6, 9
    x, w = rand(rng, C, 6, 6, 2), rand(rng, C // g, 3, 3, K)
    y = conv_fwd(x, w, padding=1, stride=2, groups=g)
    dy = rand(rng, *y.shape)
    dx = conv_bwd_data(dy, w, (6, 6), padding=1, stride=2, groups=g)
    dw = conv_bwd_filter(dy, x, 3, padding=1, stride=2, groups=g)
    Cg, Kg = C // g, K // g
    for j in range(g):
        xs = np.ascontiguousarray(x[j * Cg:(j + 1) * Cg])
        ws = np.ascontiguousarray(w[..., j * Kg:(j + 1) * Kg])
        dys = np.ascontiguousarray(dy[j * Kg:(j + 1) * Kg])
        np.testing.assert_allclose(y[j * Kg:(j + 1) * Kg], conv_fwd(xs, ws, padding=1, stride=2),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx[j * Cg:(j + 1) * Cg],
                                   conv_bwd_data(dys, ws, (6, 6), padding=1, stride=2),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw[..., j * Kg:(j + 1) * Kg],
                                   conv_bwd_filter(dys, xs, 3, padding=1, stride=2),
                                   rtol=1e-12, atol=1e-12)


def test_conv_shared_and_untied_biases():
    rng = np.random.default_rng(4)
    x, w = rand(rng, 3, 5, 6, 2), rand(rng, 3, 3, 3, 4)
    y0 = conv_fwd(x, w, padding=1, stride=2)
    K, OH, OW, _ = y0.shape
    shared = rand(rng, K, 1)
    untied_same = np.repeat(shared, OH * OW, axis=0)  # row k*OH*OW + q holds shared[k]
    np.testing.assert_allclose(conv_fwd(x, w, shared, padding=1, stride=2),
                               conv_fwd(x, w, untied_same, padding=1, stride=2), rtol=1e-14)
    untied = rand(rng, K * OH * OW, 1)
    np.testing.assert_allclose(conv_fwd(x, w, untied, padding=1, stride=2) - y0,
                               np.broadcast_to(untied.reshape(K, OH, OW, 1), y0.shape),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_fwd(x, w, untied, padding=1, stride=2),
                               direct_conv(x, w, untied, padding=1, stride=2), rtol=1e-12)


def test_bias_bwd_values():
    dy = np.arange(2 * 2 * 3 * 2, dtype=np.float32).reshape(2, 2, 3, 2)
    db = bias_bwd(dy, True)
    assert db.shape == (2, 1) and db.dtype == np.float32
    np.testing.assert_array_equal(db[:, 0], [dy[0].sum(), dy[1].sum()])
    du = bias_bwd(dy, False)
    assert du.shape == (12, 1)
    np.testing.assert_array_equal(du[:, 0], dy.sum(axis=3).reshape(-1))
    fc = np.arange(6, dtype=np.float64).reshape(3, 2)
    np.testing.assert_array_equal(bias_bwd(fc, True), [[1], [5], [9]])
    np.testing.assert_array_equal(bias_bwd(fc, False), [[1], [5], [9]])


def test_conv_float32_close_to_float64():
    rng = np.random.default_rng(5)
    x, w, dy = rand(rng, 5, 8, 8, 4), rand(rng, 5, 3, 3, 7), rand(rng, 7, 8, 8, 4)
    for f in (lambda x, w, dy: conv_fwd(x, w, padding=1),
              lambda x, w, dy: conv_bwd_data(dy, w, (8, 8), padding=1),
              lambda x, w, dy: conv_bwd_filter(dy, x, 3, padding=1)):
        r64 = f(x, w, dy)
        r32 = f(x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32))
        assert r32.dtype == np.float32
        assert np.linalg.norm(r32 - r64) / np.linalg.norm(r64) < 1e-6


@pytest.mark.parametrize("min_channels", [1, 10**9], ids=["transposed", "col2im"])
@pytest.mark.parametrize("p", [0, 1, 2, 4])
def test_conv_bwd_data_both_methods(monkeypatch, min_channels, p):
    """Stride-1 backward-data runs as a transposed forward conv or as col2im; both are exact."""
    monkeypatch.setattr(conv, "TRANSPOSED_MIN_CHANNELS", min_channels)
    rng = np.random.default_rng(6)
    x, w = rand(rng, 4, 6, 5, 2), rand(rng, 2, 3, 3, 6)
    y = conv_fwd(x, w, padding=p, groups=2)
    dy = rand(rng, *y.shape)
    dx = conv_bwd_data(dy, w, (6, 5), padding=p, groups=2)
    # adjoint identity <conv(x), dy> = <x, conv_bwd_data(dy)>, then dx against the direct formula
    assert abs(np.sum(y * dy) - np.sum(x * dx)) < 1e-10 * np.abs(y * dy).sum()
    np.testing.assert_allclose(dx, direct_conv_bwd_data(dy, w, 6, 5, padding=p, groups=2),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", FWD_CASES)
def test_conv_bwd_data_matches_direct(case):
    C, H, W, N, R, K, p, s, g = case
    rng = np.random.default_rng(13)
    w = rand(rng, C // g, R, R, K)
    dy = rand(rng, K, conv_out_size(H, R, p, s), conv_out_size(W, R, p, s), N)
    np.testing.assert_allclose(conv_bwd_data(dy, w, (H, W), padding=p, stride=s, groups=g),
                               direct_conv_bwd_data(dy, w, H, W, p, s, g), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- gradients

GRAD_CASES = [  # C, H, W, N, R, K, padding, stride, groups, shared bias
    (3, 5, 5, 1, 3, 5, 1, 1, 1, True),     # batch 1, odd counts
    (5, 7, 6, 3, 3, 7, 0, 2, 1, True),     # stride 2, width overhangs
    (3, 10, 10, 3, 3, 5, 1, 4, 1, False),  # stride 4, overhang, untied biases
    (6, 5, 6, 3, 2, 4, 1, 1, 2, True),     # groups 2, even filter
    (6, 5, 5, 1, 3, 9, 2, 2, 3, False),    # groups 3, untied
    (2, 3, 3, 128, 2, 3, 1, 2, 1, True),   # batch 128, tiny otherwise
    (7, 4, 4, 2, 3, 3, 3, 1, 1, True),     # padding > filter - 1
]


def _conv_problem(case, rng):
    C, H, W, N, R, K, p, s, g, shared = case
    OH, OW = conv_out_size(H, R, p, s), conv_out_size(W, R, p, s)
    inputs = dict(x=rand(rng, C, H, W, N), w=rand(rng, C // g, R, R, K),
                  b=rand(rng, K, 1) if shared else rand(rng, K * OH * OW, 1))
    kw = dict(padding=p, stride=s, groups=g)

    def fwd(x, w, b):
        return conv_fwd(x, w, b, **kw)

    def bwd(dy, x, w, b):
        return dict(x=conv_bwd_data(dy, w, (H, W), **kw), w=conv_bwd_filter(dy, x, R, **kw),
                    b=bias_bwd(dy, shared))
    return fwd, bwd, inputs


@pytest.mark.parametrize("case", GRAD_CASES)
def test_conv_gradients(case):
    fwd, bwd, inputs = _conv_problem(case, np.random.default_rng(7))
    check_grad(fwd, bwd, inputs, wrt=("x", "w", "b"))


def test_conv_gradients_transposed_path(monkeypatch):
    monkeypatch.setattr(conv, "TRANSPOSED_MIN_CHANNELS", 1)
    for case in [(3, 5, 6, 2, 3, 5, 1, 1, 1, True), (6, 4, 4, 3, 3, 4, 2, 1, 2, True),
                 (3, 4, 4, 2, 2, 3, 3, 1, 1, True)]:
        fwd, bwd, inputs = _conv_problem(case, np.random.default_rng(8))
        check_grad(fwd, bwd, inputs, wrt=("x",))


def test_conv_gradcheck_catches_perturbation():
    fwd, bwd, inputs = _conv_problem(GRAD_CASES[1], np.random.default_rng(9))
    check_grad_catches_perturbation(fwd, bwd, inputs, wrt=("x", "w", "b"))


# --------------------------------------------------------------------------- bad arguments

def _ok(dtype=np.float32):
    rng = np.random.default_rng(10)
    return rand(rng, 4, 6, 6, 2, dtype=dtype), rand(rng, 2, 3, 3, 4, dtype=dtype)


@pytest.mark.parametrize("mutate,match", [
    (lambda x, w: (x[0], w), r"x must have 4 dimensions, got shape \(6, 6, 2\)"),
    (lambda x, w: (x, w[0]), r"w must have 4 dimensions"),
    (lambda x, w: (x, w[:, :2].copy()), r"filters must be square, w has shape \(2, 2, 3, 4\)"),
    (lambda x, w: (x[:3].copy(), w), r"channels 3 of x \(3, 6, 6, 2\) are not divisible by "
                                     r"groups=2"),
    (lambda x, w: (x, w[..., :3].copy()), r"filters K=3 of w \(2, 3, 3, 3\) are not divisible"),
    (lambda x, w: (x, w[:1].copy()), r"w \(1, 3, 3, 4\) has 1 channels per group, but x"),
    (lambda x, w: (x, w.astype(np.float64)), r"inputs must share one dtype, got x=float32, "
                                             r"w=float64"),
    (lambda x, w: (x.astype(np.int32), w), r"x must be float32 or float64, got int32"),
    (lambda x, w: (x[:, :, ::2], w), r"x must be C-contiguous"),
    (lambda x, w: (x, np.asfortranarray(w)), r"w must be C-contiguous"),
    (lambda x, w: ([[1.0]], w), r"x must be an array, got list"),
])
def test_conv_fwd_bad_arrays(mutate, match):
    x, w = mutate(*_ok())
    with pytest.raises(ValueError, match="conv_fwd: " + match):
        conv_fwd(x, w, groups=2)


@pytest.mark.parametrize("kw,match", [
    (dict(stride=0), "stride must be >= 1, got 0"),
    (dict(padding=-1), "padding must be >= 0, got -1"),
    (dict(groups=0), "groups must be >= 1, got 0"),
    (dict(stride=1.5), "stride must be an integer"),
])
def test_conv_fwd_bad_geometry(kw, match):
    x, w = _ok()
    with pytest.raises(ValueError, match="conv_fwd: " + match):
        conv_fwd(x, w, **kw)


def test_conv_fwd_output_too_small_and_bad_bias():
    rng = np.random.default_rng(11)
    x, w = rand(rng, 2, 3, 3, 1), rand(rng, 2, 5, 5, 2)
    with pytest.raises(ValueError, match=r"conv_fwd: output height would be -1 < 1 \(image "
                                         r"height 3, filter_size 5, padding 0, stride 1; "
                                         r"x \(2, 3, 3, 1\)"):
        conv_fwd(x, w)
    x, w = rand(rng, 2, 5, 5, 1), rand(rng, 2, 3, 3, 4)
    with pytest.raises(ValueError, match=r"conv_fwd: b must have shape \(4, 1\) or \(36, 1\) "
                                         r"\(K=4, OH=3, OW=3\), got \(5, 1\)"):
        conv_fwd(x, w, rand(rng, 5, 1))
    with pytest.raises(ValueError, match=r"conv_fwd: b must have 2 dimensions, got shape \(4,\)"):
        conv_fwd(x, w, rand(rng, 4))
    with pytest.raises(ValueError, match=r"conv_fwd: b must be an array, got list"):
        conv_fwd(x, w, [[0.0]] * 4)
    with pytest.raises(ValueError, match="conv_fwd: inputs must share one dtype, got x=float64, "
                                         "w=float64, b=float32"):
        conv_fwd(x, w, rand(rng, 4, 1, dtype=np.float32))


def test_conv_bwd_bad_arguments():
    rng = np.random.default_rng(12)
    x, w = rand(rng, 4, 6, 6, 2), rand(rng, 2, 3, 3, 4)
    dy = rand(rng, 4, 6, 6, 2)
    with pytest.raises(ValueError, match=r"conv_bwd_data: dy must have shape \(4, 4, 4, 2\) for "
                                         r"img_size \(6, 6\)"):
        conv_bwd_data(dy, w, (6, 6), padding=1, stride=2, groups=2)
    with pytest.raises(ValueError, match=r"conv_bwd_data: img_size must be a pair \(H, W\), got 6"):
        conv_bwd_data(dy, w, 6, padding=1, groups=2)
    with pytest.raises(ValueError, match=r"conv_bwd_data: img_size\[1\] must be >= 1, got 0"):
        conv_bwd_data(dy, w, (6, 0), padding=1, groups=2)
    with pytest.raises(ValueError, match=r"conv_bwd_data: filters K=4 of w \(2, 3, 3, 4\) are not "
                                         r"divisible by groups=3"):
        conv_bwd_data(dy, w, (6, 6), padding=1, groups=3)
    with pytest.raises(ValueError, match="conv_bwd_data: inputs must share one dtype"):
        conv_bwd_data(dy.astype(np.float32), w, (6, 6), padding=1, groups=2)
    with pytest.raises(ValueError, match=r"conv_bwd_filter: dy must have shape \(4, 4, 4, 2\) for "
                                         r"x \(4, 6, 6, 2\), filter_size 3, padding 0"):
        conv_bwd_filter(dy, x, 3, groups=2)
    with pytest.raises(ValueError, match="conv_bwd_filter: filter_size must be >= 1, got 0"):
        conv_bwd_filter(dy, x, 0, padding=1, groups=2)
    with pytest.raises(ValueError, match=r"conv_bwd_filter: channels 4 of x \(4, 6, 6, 2\) are not "
                                         r"divisible by groups=3"):
        conv_bwd_filter(dy, x, 3, padding=1, groups=3)
    with pytest.raises(ValueError, match="conv_bwd_filter: dy must be C-contiguous"):
        conv_bwd_filter(dy.transpose(0, 2, 1, 3), x, 3, padding=1, groups=2)


def test_bias_bwd_bad_arguments():
    with pytest.raises(ValueError, match=r"bias_bwd: dy must be \(F, N\) or \(K, OH, OW, N\), "
                                         r"got shape \(2, 3, 4\)"):
        bias_bwd(np.zeros((2, 3, 4), np.float32), True)
    with pytest.raises(ValueError, match="bias_bwd: shared must be a bool, got 1"):
        bias_bwd(np.zeros((2, 3), np.float32), 1)
    with pytest.raises(ValueError, match="bias_bwd: dy must be float32 or float64, got int64"):
        bias_bwd(np.zeros((2, 3), np.int64), True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw,min_channels", [
    (dict(padding=2, stride=1, groups=1), 16),   # bwd_data as a forward convolution
    (dict(padding=1, stride=2, groups=2), 16),   # bwd_data by col2im over blocks of channels
    (dict(padding=2, stride=1, groups=1), 99),   # stride 1 by col2im
])
def test_conv_results_do_not_depend_on_the_thread_count(monkeypatch, dtype, kw, min_channels):
    """The chunks run on PYCONVNET_CPU_THREADS threads; fwd, bwd_data and bwd_filter (its sum over
    chunks included) must come out bit-identical for 1, 2 and 3 threads."""
    rng = np.random.default_rng(11)
    C, H, W, N, R, K = 6, 11, 10, 5, 5, 8
    g, s, p = kw["groups"], kw["stride"], kw["padding"]
    OH, OW = conv_out_size(H, R, p, s), conv_out_size(W, R, p, s)
    x, w = rand(rng, C, H, W, N, dtype=dtype), rand(rng, C // g, R, R, K, dtype=dtype)
    b, dy = rand(rng, K, 1, dtype=dtype), rand(rng, K, OH, OW, N, dtype=dtype)
    monkeypatch.setattr(conv, "TRANSPOSED_MIN_CHANNELS", min_channels)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 3 * C * R * R * N * x.itemsize)  # many chunks

    def run():
        return (conv_fwd(x, w, b, **kw), conv_bwd_data(dy, w, (H, W), **kw),
                conv_bwd_filter(dy, x, R, **kw))

    monkeypatch.setenv("PYCONVNET_CPU_THREADS", "1")
    ref = run()
    for nt in ("2", "3"):
        monkeypatch.setenv("PYCONVNET_CPU_THREADS", nt)
        for got, want in zip(run(), ref):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes()
    # ... and still agree with the direct sums.
    np.testing.assert_allclose(ref[0], direct_conv(x, w, b, p, s, g),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)
    np.testing.assert_allclose(ref[1], direct_conv_bwd_data(dy, w, H, W, p, s, g),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)
