"""Tests for pyconvnet.ops.elt: eltsum, eltmax, concat (values, gradients, bad arguments)."""
import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops.elt import (concat_bwd, concat_fwd, eltmax_bwd, eltmax_fwd, eltsum_bwd,
                               eltsum_fwd)


def _check(fwd, bwd, inputs, wrt):
    check_grad(fwd, bwd, inputs, wrt)
    check_grad_catches_perturbation(fwd, bwd, inputs, wrt)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eltsum_values(dtype):
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=dtype)
    b = np.array([[0.5, -1.0], [0.0, 2.0]], dtype=dtype)
    y = eltsum_fwd([a, b], [2.0, -1.0])
    assert y.dtype == dtype and not np.shares_memory(y, a)
    np.testing.assert_array_equal(y, [[1.5, 5.0], [6.0, 6.0]])
    np.testing.assert_array_equal(eltsum_fwd((a,), [1]), a)
    da, db = eltsum_bwd(b, (2.0, -1.0))
    np.testing.assert_array_equal(da, 2 * b)
    np.testing.assert_array_equal(db, -b)
    assert da.dtype == dtype and not np.shares_memory(da, b)


def test_eltsum_gradient():
    rng = np.random.default_rng(0)
    xs = {f"x{i}": rng.standard_normal((3, 2, 2, 4)) for i in range(3)}
    cs = [0.5, -2.0, 1.0]

    def fwd(x0, x1, x2):
        return eltsum_fwd([x0, x1, x2], cs)

    def bwd(dy, x0, x1, x2):
        return dict(zip(("x0", "x1", "x2"), eltsum_bwd(dy, cs)))

    _check(fwd, bwd, xs, ("x0", "x1", "x2"))


def test_eltmax_values_and_ties():
    a = np.array([[1.0, 5.0, 2.0]], dtype=np.float32)
    b = np.array([[3.0, 5.0, -1.0]], dtype=np.float32)
    c = np.array([[0.0, 4.0, 2.0]], dtype=np.float32)
    y = eltmax_fwd([a, b, c])
    np.testing.assert_array_equal(y, [[3, 5, 2]])
    dy = np.array([[10.0, 20.0, 30.0]], dtype=np.float32)
    da, db, dc = eltmax_bwd(dy, [a, b, c], y)
    np.testing.assert_array_equal(da, [[0, 20, 30]])  # ties: every maximal input gets dy
    np.testing.assert_array_equal(db, [[10, 20, 0]])
    np.testing.assert_array_equal(dc, [[0, 0, 30]])
    assert da.dtype == np.float32


def test_eltmax_gradient():
    rng = np.random.default_rng(1)
    xs = {f"x{i}": rng.standard_normal((5, 7)) for i in range(3)}  # no ties

    def fwd(x0, x1, x2):
        return eltmax_fwd([x0, x1, x2])

    def bwd(dy, x0, x1, x2):
        ins = [x0, x1, x2]
        return dict(zip(("x0", "x1", "x2"), eltmax_bwd(dy, ins, eltmax_fwd(ins))))

    _check(fwd, bwd, xs, ("x0", "x1", "x2"))


@pytest.mark.parametrize("shapes", [[(2, 5), (3, 5), (1, 5)], [(2, 3, 3, 4), (5, 3, 3, 4)]])
def test_concat_values_and_inverse(shapes):
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    y = concat_fwd(xs)
    assert y.shape == (sum(s[0] for s in shapes),) + shapes[0][1:] and y.dtype == np.float32
    off = 0
    for x in xs:
        np.testing.assert_array_equal(y[off:off + x.shape[0]], x)
        off += x.shape[0]
    parts = concat_bwd(y, [s[0] for s in shapes])
    for p, x in zip(parts, xs):
        assert p.flags.c_contiguous and not np.shares_memory(p, y)
        np.testing.assert_array_equal(p, x)


def test_concat_gradient():
    rng = np.random.default_rng(3)
    xs = {"a": rng.standard_normal((2, 2, 2, 3)), "b": rng.standard_normal((3, 2, 2, 3))}

    def fwd(a, b):
        return concat_fwd([a, b])

    def bwd(dy, a, b):
        return dict(zip(("a", "b"), concat_bwd(dy, [2, 3])))

    _check(fwd, bwd, xs, ("a", "b"))


F = np.zeros((3, 4), np.float32)


@pytest.mark.parametrize("call, match", [
    (lambda: eltsum_fwd([], []),
     "eltsum_fwd: xs must be a non-empty list of arrays, got list of length 0"),
    (lambda: eltsum_fwd(F, [1.0]),
     "eltsum_fwd: xs must be a non-empty list of arrays, got ndarray"),
    (lambda: eltsum_fwd([F, F], [1.0]), "eltsum_fwd: coeffs has 1 entries for 2 inputs"),
    (lambda: eltsum_fwd([F, np.zeros((3, 5), np.float32)], [1, 1]),
     r"eltsum_fwd: xs\[1\] must have shape \(3, 4\), got \(3, 5\)"),
    (lambda: eltsum_fwd([F, F.astype(np.float64)], [1, 1]),
     r"eltsum_fwd: inputs must share one dtype, got xs\[0\]=float32, xs\[1\]=float64"),
    (lambda: eltsum_fwd([F, F], [1, float("inf")]), r"eltsum_fwd: coeffs\[1\] must be finite"),
    (lambda: eltsum_fwd([F, F], 1.0), "eltsum_fwd: coeffs must be a sequence of numbers"),
    (lambda: eltsum_bwd(F, []), "eltsum_bwd: coeffs must have at least one entry"),
    (lambda: eltsum_bwd(F.astype(np.int32), [1]), "eltsum_bwd: dy must be float32 or float64"),
    (lambda: eltmax_fwd([F, np.zeros((3, 8), np.float32)[:, ::2]]),
     r"eltmax_fwd: xs\[1\] must be C-contiguous"),
    (lambda: eltmax_bwd(F, [F, F], np.zeros((3, 3), np.float32)),
     r"eltmax_bwd: y must have shape \(3, 4\), got \(3, 3\)"),
    (lambda: eltmax_bwd(F.astype(np.float64), [F, F], F),
     "eltmax_bwd: inputs must share one dtype"),
    (lambda: concat_fwd([F, np.zeros((2, 5), np.float32)]),
     r"concat_fwd: xs\[1\] has shape \(2, 5\); all inputs must match xs\[0\] \(3, 4\)"),
    (lambda: concat_fwd([F, np.zeros((3, 1, 1, 4), np.float32)]),
     r"concat_fwd: xs\[1\] has shape \(3, 1, 1, 4\)"),
    (lambda: concat_fwd([np.zeros(3, np.float32)]), "concat_fwd: inputs must be .F, N. or"),
    (lambda: concat_bwd(F, [1, 1]), r"concat_bwd: sizes \[1, 1\] sum to 2, but dy has 3 rows"),
    (lambda: concat_bwd(F, [3, 0]), r"concat_bwd: sizes\[1\] must be >= 1, got 0"),
    (lambda: concat_bwd(F, [1.5, 1.5]), r"concat_bwd: sizes\[0\] must be an integer"),
    (lambda: concat_bwd(F, []), "concat_bwd: sizes must have at least one entry"),
    (lambda: concat_bwd(F, 3), "concat_bwd: sizes must be a sequence of integers"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
