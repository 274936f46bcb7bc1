"""Tests for pyconvnet.ops.softmax: softmax, logistic-regression and sum-of-squares costs."""
import math

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops.softmax import (logreg_bwd, logreg_cost, softmax_bwd, softmax_fwd,
                                   softmax_logreg_bwd, sum2_bwd, sum2_cost)


def _check(fwd, bwd, inputs, wrt):
    check_grad(fwd, bwd, inputs, wrt)
    check_grad_catches_perturbation(fwd, bwd, inputs, wrt)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_hand_values(dtype):
    x = np.array([[0.0, 5.0], [math.log(2), 5.0], [math.log(3), 5.0]], dtype=dtype)
    y = softmax_fwd(x)
    assert y.dtype == dtype and y.shape == (3, 2)
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(y, [[1 / 6, 1 / 3], [2 / 6, 1 / 3], [3 / 6, 1 / 3]], rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_extreme_logits(dtype):
    x = np.array([[1e4, -1e4, -1e4, 1e4], [-1e4, -1e4, 1e4, 1e4], [0, -1e4, -1e4, -1e4]],
                 dtype=dtype)
    y = softmax_fwd(x)  # warnings are errors in this suite: no overflow, no invalid
    np.testing.assert_allclose(y, [[1, 1 / 3, 0, 0.5], [0, 1 / 3, 1, 0.5], [0, 1 / 3, 0, 0]],
                               rtol=1e-6)
    labels = np.array([1, 0, 2, 0])
    cost, nerr, _ = logreg_cost(y, labels)
    assert math.isfinite(cost)
    assert cost == pytest.approx(-2 * math.log(np.finfo(dtype).tiny) + math.log(3) + math.log(2),
                                 rel=1e-6)
    assert nerr == 4  # cases 0 and 2 have p = 0; cases 1 and 3 tie: all count as errors
    d = softmax_logreg_bwd(y, labels)
    assert np.all(np.isfinite(d))
    np.testing.assert_allclose(d, y - np.eye(3)[:, labels], atol=1e-7)


def test_softmax_float32_matches_float64_and_shift_invariance():
    x = np.random.default_rng(0).standard_normal((10, 33)) * 5
    y64 = softmax_fwd(x)
    np.testing.assert_allclose(softmax_fwd(x.astype(np.float32)), y64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(softmax_fwd(x + 300.0), y64, rtol=1e-12)
    np.testing.assert_allclose(y64.sum(axis=0), 1.0, rtol=1e-14)


def test_softmax_gradient():
    x = np.random.default_rng(1).standard_normal((7, 5))
    _check(lambda x: softmax_fwd(x), lambda dy, x: {"x": softmax_bwd(dy, softmax_fwd(x))},
           {"x": x}, ("x",))


def test_logreg_cost_hand_values():
    probs = np.array([[0.5, 0.1, 0.3, 0.4],
                      [0.3, 0.2, 0.3, 0.4],
                      [0.2, 0.7, 0.4, 0.2]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    cost, nerr, nerr2 = logreg_cost(probs, labels, topk=2)
    want = -(math.log(np.float32(0.5)) + math.log(np.float32(0.2)) + math.log(np.float32(0.3))
             + math.log(np.float32(0.4)))
    assert isinstance(cost, float) and cost == pytest.approx(want, rel=1e-6)
    # case 0 right; case 1: 0.2 is second; case 2: 0.3 ties with row 1 and loses to 0.4, so two
    # classes beat-or-tie it (wrong at top-2 too); case 3: 0.4 ties with row 0 (wrong at top-1 only)
    assert (nerr, nerr2) == (3, 1)
    assert logreg_cost(probs, labels, topk=3)[2] == 0
    assert logreg_cost(probs, labels)[1:] == (3, 3)


def test_logreg_zero_and_nan_probabilities():
    probs = np.array([[0.0, np.nan], [1.0, 0.5]], dtype=np.float32)
    labels = np.array([0, 1])
    tiny = float(np.finfo(np.float32).tiny)
    cost, nerr, nerr_top2 = logreg_cost(probs, labels, topk=2)
    assert cost == pytest.approx(-math.log(tiny) - math.log(0.5), rel=1e-6)  # 87.34 + 0.69: finite
    assert (nerr, nerr_top2) == (2, 0)  # the NaN competitor counts against label 1
    d = logreg_bwd(probs, labels)
    assert d[0, 0] == np.float32(-1 / np.float32(tiny)) and np.isfinite(d[0, 0])
    assert d[1, 1] == -2 and d[1, 0] == 0 and d[0, 1] == 0


@pytest.mark.parametrize("coeff", [1.0, 0.3])
def test_logreg_bwd_gradient(coeff):
    rng = np.random.default_rng(2)
    probs = rng.uniform(0.1, 1.0, size=(6, 8))
    labels = rng.integers(0, 6, size=8)

    def fwd(probs, labels):
        return np.array(coeff * logreg_cost(probs, labels)[0])

    def bwd(dy, probs, labels):
        return {"probs": logreg_bwd(probs, labels, coeff=coeff) * dy}

    _check(fwd, bwd, {"probs": probs, "labels": labels}, ("probs",))


@pytest.mark.parametrize("coeff", [1.0, 2.5])
def test_softmax_logreg_gradient_and_composition(coeff):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 9)) * 3
    labels = rng.integers(0, 5, size=9)

    def fwd(x, labels):
        return np.array(coeff * logreg_cost(softmax_fwd(x), labels)[0])

    def bwd(dy, x, labels):
        return {"x": softmax_logreg_bwd(softmax_fwd(x), labels, coeff=coeff) * dy}

    _check(fwd, bwd, {"x": x, "labels": labels}, ("x",))
    p = softmax_fwd(x)
    np.testing.assert_allclose(softmax_logreg_bwd(p, labels, coeff=coeff),
                               softmax_bwd(logreg_bwd(p, labels, coeff=coeff), p),
                               rtol=1e-12, atol=1e-14)
    p32 = p.astype(np.float32)
    d32 = softmax_logreg_bwd(p32, labels.astype(np.uint8), coeff=coeff)
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, coeff * (p - np.eye(5)[:, labels]), rtol=1e-6, atol=1e-7)


def test_empty_batch():
    probs = np.zeros((3, 0), np.float32)
    assert logreg_cost(probs, np.zeros(0, np.int64)) == (0.0, 0, 0)
    assert softmax_fwd(probs).shape == (3, 0)
    assert logreg_bwd(probs, np.zeros(0, np.int32)).shape == (3, 0)


def test_float_labels_are_accepted():
    rng = np.random.default_rng(4)
    probs = softmax_fwd(rng.standard_normal((4, 6)).astype(np.float32))
    lab = np.array([0, 3, 2, 1, 1, 0])
    for flab in (lab.astype(np.float32), lab.astype(np.float64)):
        assert logreg_cost(probs, flab, topk=2) == logreg_cost(probs, lab, topk=2)
        np.testing.assert_array_equal(logreg_bwd(probs, flab), logreg_bwd(probs, lab))
        np.testing.assert_array_equal(softmax_logreg_bwd(probs, flab),
                                      softmax_logreg_bwd(probs, lab))


def test_sum2():
    x = np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32)
    c = sum2_cost(x)
    assert isinstance(c, float) and c == 0.5 * (1 + 4 + 9 + 0.25)
    d = sum2_bwd(x, coeff=0.5)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [[0.5, -1.0], [1.5, 0.25]])
    xr = np.random.default_rng(5).standard_normal((3, 2, 2, 4))
    _check(lambda x: np.array(2.0 * sum2_cost(x)), lambda dy, x: {"x": sum2_bwd(x, coeff=2.0) * dy},
           {"x": xr}, ("x",))


P = np.full((3, 4), 0.25, np.float32)
L = np.array([0, 1, 2, 0])


@pytest.mark.parametrize("call, match", [
    (lambda: softmax_fwd(np.zeros((3, 4, 1), np.float32)), "softmax_fwd: x must have 2 dimensions"),
    (lambda: softmax_fwd(np.zeros((0, 4), np.float32)),
     "softmax_fwd: x must have at least one row"),
    (lambda: softmax_fwd(np.zeros((4, 4), np.float16)),
     "softmax_fwd: x must be float32 or float64"),
    (lambda: softmax_fwd(np.zeros((4, 8), np.float32)[:, ::2]),
     "softmax_fwd: x must be C-contiguous"),
    (lambda: softmax_bwd(P, P.astype(np.float64)), "softmax_bwd: inputs must share one dtype"),
    (lambda: softmax_bwd(P, np.zeros((3, 5), np.float32)),
     r"softmax_bwd: y must have shape \(3, 4\), got \(3, 5\)"),
    (lambda: logreg_cost(P, np.array([0, 1, 3, 0])),
     r"logreg_cost: labels must be in \[0, 3\), got values in \[0, 3\]"),
    (lambda: logreg_cost(P, np.array([0, -1, 2, 0])), r"logreg_cost: labels must be in \[0, 3\)"),
    (lambda: logreg_cost(P, np.array([0, 1, 2])),
     r"logreg_cost: labels must have shape \(4,\) to match probs \(3, 4\), got \(3,\)"),
    (lambda: logreg_cost(P, np.array([0, 1.5, 2, 0])),
     "logreg_cost: float labels must hold integral values"),
    (lambda: logreg_cost(P, np.array([0, np.nan, 2, 0])),
     "logreg_cost: float labels must hold integral values"),
    (lambda: logreg_cost(P, np.array([True, False, True, True])),
     "logreg_cost: labels must be integers .or integral floats., got bool"),
    (lambda: logreg_cost(P, [0, 1, 2, 0]), "logreg_cost: labels must be an array, got list"),
    (lambda: logreg_cost(P, np.array([0, 0, 1, 1, 2, 2, 0, 0])[::2]),
     "logreg_cost: labels must be C-contiguous"),
    (lambda: logreg_cost(P, L, topk=0), "logreg_cost: topk must be >= 1, got 0"),
    (lambda: logreg_cost(P, L, topk=4), "logreg_cost: topk must be <= the number of classes 3"),
    (lambda: logreg_bwd(P, L, coeff=float("inf")), "logreg_bwd: coeff must be finite"),
    (lambda: logreg_bwd(P[None], L), "logreg_bwd: probs must have 2 dimensions"),
    (lambda: softmax_logreg_bwd(P, L.astype(np.float32) + 3),
     r"softmax_logreg_bwd: labels must be in \[0, 3\)"),
    (lambda: softmax_logreg_bwd(P, L, coeff="1"), "softmax_logreg_bwd: coeff must be a number"),
    (lambda: sum2_cost(np.zeros(3, np.int64)), "sum2_cost: x must be float32 or float64"),
    (lambda: sum2_bwd(P, coeff=None), "sum2_bwd: coeff must be a number"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
