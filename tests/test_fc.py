"""Tests of the NumPy fully connected reference (pyconvnet.ops.fc)."""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops.conv import bias_bwd
from pyconvnet.ops.fc import fc_bwd_data, fc_bwd_filter, fc_fwd


def rand(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def test_fc_hand_case():
    x = np.array([[1, 2], [3, 4], [5, 6]], np.float32)  # F_in 3, N 2
    w = np.array([[1, 0], [0, 1], [1, 1]], np.float32)  # F_in 3, F_out 2
    b = np.array([[10], [20]], np.float32)
    y = fc_fwd(x, w, b)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[1 + 5 + 10, 2 + 6 + 10], [3 + 5 + 20, 4 + 6 + 20]])
    np.testing.assert_array_equal(fc_fwd(x, w), y - b)


@pytest.mark.parametrize("fin,fout,n", [(7, 5, 1), (3, 10, 3), (13, 4, 128)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fc_matches_direct_formula(fin, fout, n, dtype):
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, fin, n, dtype=dtype), rand(rng, fin, fout, dtype=dtype), \
        rand(rng, fout, 1, dtype=dtype)
    dy = rand(rng, fout, n, dtype=dtype)
    ref_y = np.zeros((fout, n))
    ref_dx = np.zeros((fin, n))
    ref_dw = np.zeros((fin, fout))
    for o in range(fout):
        for i in range(fin):
            ref_y[o] += float(w[i, o]) * x[i].astype(np.float64)
            ref_dx[i] += float(w[i, o]) * dy[o].astype(np.float64)
            ref_dw[i, o] = np.dot(x[i].astype(np.float64), dy[o].astype(np.float64))
        ref_y[o] += float(b[o, 0])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, ref in ((fc_fwd(x, w, b), ref_y), (fc_bwd_data(dy, w), ref_dx),
                     (fc_bwd_filter(dy, x), ref_dw)):
        assert got.dtype == dtype and got.shape == ref.shape and got.flags.c_contiguous
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(bias_bwd(dy, True), dy.astype(np.float64).sum(1, keepdims=True),
                               rtol=tol, atol=tol)


def _fc_problem(fin, fout, n, rng):
    inputs = dict(x=rand(rng, fin, n), w=rand(rng, fin, fout), b=rand(rng, fout, 1))

    def bwd(dy, x, w, b):
        return dict(x=fc_bwd_data(dy, w), w=fc_bwd_filter(dy, x), b=bias_bwd(dy, True))
    return fc_fwd, bwd, inputs


@pytest.mark.parametrize("fin,fout,n", [(5, 3, 1), (7, 10, 3), (3, 5, 128)])
def test_fc_gradients(fin, fout, n):
    fwd, bwd, inputs = _fc_problem(fin, fout, n, np.random.default_rng(2))
    check_grad(fwd, bwd, inputs, wrt=("x", "w", "b"))


def test_fc_gradcheck_catches_perturbation():
    fwd, bwd, inputs = _fc_problem(7, 5, 3, np.random.default_rng(3))
    check_grad_catches_perturbation(fwd, bwd, inputs, wrt=("x", "w", "b"))


def test_fc_bad_arguments():
    rng = np.random.default_rng(4)
    x, w, dy = rand(rng, 6, 4), rand(rng, 6, 3), rand(rng, 3, 4)
    with pytest.raises(ValueError, match=r"fc_fwd: x \(5, 4\) has 5 features but w \(6, 3\) "
                                         r"expects 6"):
        fc_fwd(x[:5].copy(), w)
    with pytest.raises(ValueError, match=r"fc_fwd: x must have 2 dimensions, got shape "
                                         r"\(6, 2, 2\)"):
        fc_fwd(x.reshape(6, 2, 2), w)
    with pytest.raises(ValueError, match=r"fc_fwd: b must have shape \(3, 1\), got \(1, 3\)"):
        fc_fwd(x, w, rand(rng, 1, 3))
    with pytest.raises(ValueError, match="fc_fwd: inputs must share one dtype, got x=float64, "
                                         "w=float64, b=float32"):
        fc_fwd(x, w, rand(rng, 3, 1, dtype=np.float32))
    with pytest.raises(ValueError, match="fc_fwd: x must be C-contiguous"):
        fc_fwd(x[:, ::2], w)
    with pytest.raises(ValueError, match="fc_fwd: w must be float32 or float64, got int64"):
        fc_fwd(x, np.ones((6, 3), np.int64))
    with pytest.raises(ValueError, match=r"fc_bwd_data: dy \(4, 4\) has 4 features but w \(6, 3\) "
                                         r"has 3 outputs"):
        fc_bwd_data(rand(rng, 4, 4), w)
    with pytest.raises(ValueError, match="fc_bwd_data: inputs must share one dtype"):
        fc_bwd_data(dy.astype(np.float32), w)
    with pytest.raises(ValueError, match=r"fc_bwd_filter: dy \(3, 5\) and x \(6, 4\) must have the "
                                         r"same batch size"):
        fc_bwd_filter(rand(rng, 3, 5), x)
    with pytest.raises(ValueError, match="fc_bwd_filter: dy must be C-contiguous"):
        fc_bwd_filter(np.asfortranarray(dy), x)
