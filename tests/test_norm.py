"""Response and contrast normalisation reference (pyconvnet.ops.norm): values against per-element
loops and hand-computed numbers, AlexNet's LRN, gradient checks and argument errors."""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops import norm

OPS = ("cmrnorm", "rnorm", "cnorm")


def _fwd(op):
    return getattr(norm, op + "_fwd")


def _bwd(op):
    return getattr(norm, op + "_bwd")


# ---- independent per-element loops ----

def _span(i, size, n):
    lo = i - size // 2
    return max(0, lo), min(n, lo + size)


def loop_norm(op, x, size, scale, pow, min_div):
    """Denominator and output, one (channel, row, column, image) element at a time."""
    c_, h_, w_, n_ = x.shape
    d = np.empty_like(x, dtype=np.float64)
    for c in range(c_):
        for i in range(h_):
            for j in range(w_):
                for n in range(n_):
                    if op == "cmrnorm":
                        c0, c1 = _span(c, size, c_)
                        s = sum(x[k, i, j, n] ** 2 for k in range(c0, c1)) * scale / size
                    else:
                        i0, i1 = _span(i, size, h_)
                        j0, j1 = _span(j, size, w_)
                        win = [x[c, a, b, n] for a in range(i0, i1) for b in range(j0, j1)]
                        m = sum(win) / len(win) if op == "cnorm" else 0.0
                        s = sum((v - m) ** 2 for v in win) * scale / size**2
                    d[c, i, j, n] = min_div + s
    return x * d ** -pow, d


# ---- forward values ----

SHAPES = [(3, 4, 5, 2), (7, 3, 3, 1), (1, 5, 4, 3)]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_norm_matches_loop(op, size, shape):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(shape)
    kw = dict(size=size, scale=1.7, pow=0.75, min_div=1.3)
    y, d = _fwd(op)(x, **kw)
    want_y, want_d = loop_norm(op, x, **kw)
    np.testing.assert_allclose(d, want_d, rtol=1e-13)
    np.testing.assert_allclose(y, want_y, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("op", OPS)
def test_float32_stays_float32(op):
    x = np.random.default_rng(0).standard_normal((5, 6, 6, 4))
    kw = dict(size=3, scale=2.0, pow=0.75)
    y64, d64 = _fwd(op)(x, **kw)
    x32 = x.astype(np.float32)
    y, d = _fwd(op)(x32, **kw)
    assert y.dtype == d.dtype == np.float32
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d, d64, rtol=1e-5)
    dy = np.ones_like(x32)
    dx = _bwd(op)(dy, x32, y, d, **kw)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, _bwd(op)(np.ones_like(x), x, y64, d64, **kw), rtol=1e-4,
                               atol=1e-5)


def test_hand_computed_values():
    # cmrnorm, one pixel with channels [1, 2, 3], size 3, scale 3 (-> 1 per square), pow 1
    x = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1)
    y, d = norm.cmrnorm_fwd(x, size=3, scale=3.0, pow=1.0, min_div=1.0)
    np.testing.assert_allclose(d.ravel(), [1 + 5, 1 + 14, 1 + 13])
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14])
    # rnorm on [[1, 2], [3, 4]], size 2 (window rows/cols [i-1, i+1)), scale 4 (-> 1 per square)
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    y, d = norm.rnorm_fwd(x, size=2, scale=4.0, pow=1.0)
    np.testing.assert_allclose(d[0, :, :, 0], [[1 + 1, 1 + 5], [1 + 10, 1 + 30]])
    np.testing.assert_allclose(y[0, :, :, 0], [[1 / 2, 2 / 6], [3 / 11, 4 / 31]])
    # cnorm, same: windows {1}, {1,2} (mean 1.5), {1,3} (mean 2), all four (mean 2.5)
    y, d = norm.cnorm_fwd(x, size=2, scale=4.0, pow=0.5)
    np.testing.assert_allclose(d[0, :, :, 0], [[1.0, 1.5], [3.0, 6.0]])
    np.testing.assert_allclose(y[0, :, :, 0], [[1.0, 2 / 1.5**0.5], [3 / 3**0.5, 4 / 6**0.5]])


def test_rnorm_divides_by_size_squared_at_the_border():
    x = np.full((1, 3, 3, 1), 2.0)
    _, d = norm.rnorm_fwd(x, size=3, scale=9.0, pow=1.0)  # 1 per square, 4 each
    np.testing.assert_allclose(d[0, :, :, 0], 1 + 4 * np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]))


def test_alexnet_lrn():
    """AlexNet: b = a / (k + alpha * sum_{j=max(0,i-n/2)}^{min(C-1,i+n/2)} a_j^2)^beta with
    k=2, n=5, alpha=1e-4, beta=0.75 (torch's LocalResponseNorm writes alpha/n with alpha=5e-4)."""
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    a = np.random.default_rng(4).standard_normal((7, 3, 2, 4)) * 30
    want = np.empty_like(a)
    for i in range(a.shape[0]):
        s = np.sum(a[max(0, i - n // 2):min(a.shape[0] - 1, i + n // 2) + 1] ** 2, axis=0)
        want[i] = a[i] / (k + alpha * s) ** beta
    y, _ = norm.cmrnorm_fwd(a, size=5, scale=5e-4, pow=0.75, min_div=2.0)
    np.testing.assert_allclose(y, want, rtol=1e-13)
    assert np.abs(y - a * 2.0**-0.75).max() > 1e-3  # the sum really matters at this scale


# ---- gradient checks (float64) ----

# (C, H, W, N), size; random N(0,1) inputs, scale large enough that the denominator term matters
GRAD_CASES = [
    ((1, 4, 5, 1), 3),
    ((3, 4, 4, 3), 2),
    ((5, 3, 4, 3), 5),     # windows larger than the image / channel count
    ((7, 5, 3, 1), 4),
    ((3, 2, 2, 128), 3),   # batch 128, tiny maps
    ((7, 6, 6, 2), 1),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape, size", GRAD_CASES, ids=lambda c: str(c))
def test_norm_grad(op, shape, size):
    kw = dict(size=size, scale=2.5, pow=0.75, min_div=1.5)
    x = np.random.default_rng(5).standard_normal(shape)
    fwd, bwd = _fwd(op), _bwd(op)
    check_grad(lambda x: fwd(x, **kw), lambda dy, x: {"x": bwd(dy, x, *fwd(x, **kw), **kw)},
               {"x": x}, ("x",))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("pow", [0.5, 2.0, -0.3])
def test_norm_grad_other_powers(op, pow):
    kw = dict(size=3, scale=0.9, pow=pow, min_div=0.7)
    x = np.random.default_rng(6).standard_normal((4, 3, 4, 2))
    fwd, bwd = _fwd(op), _bwd(op)
    check_grad(lambda x: fwd(x, **kw), lambda dy, x: {"x": bwd(dy, x, *fwd(x, **kw), **kw)},
               {"x": x}, ("x",))


@pytest.mark.parametrize("op", OPS)
def test_norm_grad_catches_perturbation(op):
    kw = dict(size=3, scale=2.0, pow=0.75)
    x = np.random.default_rng(7).standard_normal((4, 4, 3, 2))
    fwd, bwd = _fwd(op), _bwd(op)
    check_grad_catches_perturbation(lambda x: fwd(x, **kw),
                                    lambda dy, x: {"x": bwd(dy, x, *fwd(x, **kw), **kw)},
                                    {"x": x}, ("x",))


def test_cnorm_ignores_the_local_mean():
    """A constant plus a small bump: the constant does not enter the denominator, but y keeps it."""
    x = np.full((2, 5, 5, 3), 7.0)
    y, d = norm.cnorm_fwd(x, size=3, scale=1.0, pow=0.75, min_div=1.5)
    np.testing.assert_allclose(d, 1.5, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y, 7.0 * 1.5**-0.75)
    x[0, 2, 2, 1] += 3.0  # centre window: deviations 8/3 and 8 x (-1/3), squares sum to 8
    _, d = norm.cnorm_fwd(x, size=3, scale=9.0, pow=0.75, min_div=1.0)
    np.testing.assert_allclose(d[0, 2, 2, 1], 1 + (3 - 1 / 3) ** 2 + 8 * (1 / 3) ** 2)
    np.testing.assert_allclose(d[0, 0, 0, 1], 1.0, atol=1e-12)  # its window misses the bump


# ---- bad arguments ----

X = np.ones((3, 4, 4, 2), np.float32)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("x, kw, match", [
    (X, dict(size=0), r"size must be >= 1, got 0"),
    (X, dict(size=-3), r"size must be >= 1, got -3"),
    (X, dict(size=2.5), r"size must be an integer"),
    (X, dict(pow=float("nan")), r"pow must be finite, got nan"),
    (X, dict(pow=float("inf")), r"pow must be finite, got inf"),
    (X, dict(scale=float("inf")), r"scale must be finite, got inf"),
    (X, dict(scale=float("nan")), r"scale must be finite"),
    (X, dict(scale=-1.0), r"scale must be >= 0.0, got -1.0"),
    (X, dict(min_div=0.0), r"min_div must be > 0.0, got 0.0"),
    (X[0], {}, r"x must have 4 dimensions, got shape \(4, 4, 2\)"),
    (X.astype(np.float16), {}, r"x must be float32 or float64, got float16"),
    (X.astype(np.int64), {}, r"x must be float32 or float64, got int64"),
    (np.ones((3, 4, 4, 4), np.float32)[..., 1:3], {}, r"x must be C-contiguous"),
])
def test_norm_fwd_bad_args(op, x, kw, match):
    kw = dict(dict(size=3, scale=1.0, pow=0.75), **kw)
    with pytest.raises(ValueError, match=rf"{op}_fwd: {match}"):
        _fwd(op)(x, **kw)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("which, bad, match", [
    ("dy", X[:2].copy(), r"dy must have shape \(3, 4, 4, 2\), got \(2, 4, 4, 2\)"),
    ("denom", X[..., :1].copy(), r"denom must have shape \(3, 4, 4, 2\)"),
    ("y", X.astype(np.float64), r"inputs must share one dtype"),
    ("dy", np.asfortranarray(np.ones((3, 4, 4, 2), np.float32)), r"dy must be C-contiguous"),
    ("x", X.astype(np.int32), r"x must be float32 or float64, got int32"),
])
def test_norm_bwd_bad_args(op, which, bad, match):
    args = dict(dy=X, x=X, y=X, denom=X)
    args[which] = bad
    with pytest.raises(ValueError, match=rf"{op}_bwd: {match}"):
        _bwd(op)(args["dy"], args["x"], args["y"], args["denom"], size=3, scale=1.0, pow=0.75)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kw, match", [
    (dict(pow=float("nan")), r"pow must be finite, got nan"),
    (dict(size=0), r"size must be >= 1, got 0"),
    (dict(scale=float("inf")), r"scale must be finite"),
    (dict(min_div=-1.0), r"min_div must be > 0.0, got -1.0"),
])
def test_norm_bwd_bad_params(op, kw, match):
    kw = dict(dict(size=3, scale=1.0, pow=0.75), **kw)
    with pytest.raises(ValueError, match=rf"{op}_bwd: {match}"):
        _bwd(op)(X, X, X, X, **kw)


# ---- cmrnorm without stored denominators (keep_denom=False; the backward recomputes them from x) ----

@pytest.mark.parametrize("shape, size", GRAD_CASES + [((9, 2, 3, 4), 9), ((6, 1, 2, 3), 8)], ids=lambda c: str(c))
@pytest.mark.parametrize("pow", [0.75, 2.0, -0.3])
def test_cmrnorm_recomputed_denom_equals_stored(shape, size, pow):
    kw = dict(size=size, scale=2.5, pow=pow, min_div=1.3)
    rng = np.random.default_rng(8)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    y, d = norm.cmrnorm_fwd(x, **kw)
    y2, none = norm.cmrnorm_fwd(x, keep_denom=False, **kw)
    assert none is None
    np.testing.assert_array_equal(y2, y)
    want = norm.cmrnorm_bwd(dy, x, y, d, **kw)
    got = norm.cmrnorm_bwd(dy, x, None, None, **kw)
    assert got.dtype == np.float64 and got.shape == shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    got32 = norm.cmrnorm_bwd(dy32, x32, None, None, **kw)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-5)


def test_cmrnorm_recompute_uses_min_div():
    """min_div only shifts the stored denominators; recomputed, it must be the caller's."""
    kw = dict(size=3, scale=2.0, pow=0.75)
    x = np.random.default_rng(9).standard_normal((5, 3, 3, 2))
    dy = np.ones_like(x)
    y, d = norm.cmrnorm_fwd(x, min_div=3.0, **kw)
    want = norm.cmrnorm_bwd(dy, x, y, d, **kw)  # min_div unused with stored denominators
    np.testing.assert_allclose(norm.cmrnorm_bwd(dy, x, None, None, min_div=3.0, **kw), want, rtol=1e-12)
    assert np.abs(norm.cmrnorm_bwd(dy, x, None, None, **kw) - want).max() > 1e-3


@pytest.mark.parametrize("shape, size", GRAD_CASES, ids=lambda c: str(c))
def test_cmrnorm_grad_recomputed_denom(shape, size):
    kw = dict(size=size, scale=2.5, pow=0.75, min_div=1.5)
    x = np.random.default_rng(5).standard_normal(shape)
    check_grad(lambda x: norm.cmrnorm_fwd(x, keep_denom=False, **kw)[0],
               lambda dy, x: {"x": norm.cmrnorm_bwd(dy, x, None, None, **kw)}, {"x": x}, ("x",))


def test_cmrnorm_grad_recomputed_denom_catches_perturbation():
    kw = dict(size=3, scale=2.0, pow=0.75, min_div=1.5)
    x = np.random.default_rng(7).standard_normal((4, 4, 3, 2))
    check_grad_catches_perturbation(lambda x: norm.cmrnorm_fwd(x, keep_denom=False, **kw)[0],
                                    lambda dy, x: {"x": norm.cmrnorm_bwd(dy, x, None, None, **kw)},
                                    {"x": x}, ("x",))


@pytest.mark.parametrize("y, denom, match", [
    (X, None, r"y and denom must both be given or both be None \(recomputed from x\), "
              r"got y shape \(3, 4, 4, 2\) and denom None"),
    (None, X, r"got y None and denom shape \(3, 4, 4, 2\)"),
    (None, X[..., :1].copy(), r"got y None and denom shape \(3, 4, 4, 1\)"),
])
def test_cmrnorm_bwd_needs_both_or_neither(y, denom, match):
    with pytest.raises(ValueError, match=rf"cmrnorm_bwd: .*{match}"):
        norm.cmrnorm_bwd(X, X, y, denom, size=3, scale=1.0, pow=0.75)


@pytest.mark.parametrize("op", ["rnorm", "cnorm"])
def test_rnorm_cnorm_need_stored_denominators(op):
    with pytest.raises(ValueError, match=rf"{op}_bwd: denom must be an array, got NoneType"):
        _bwd(op)(X, X, X, None, size=3, scale=1.0, pow=0.75)


def test_cmrnorm_recompute_bad_args():
    with pytest.raises(ValueError, match=r"cmrnorm_bwd: dy must have shape \(3, 4, 4, 2\), got \(2, 4, 4, 2\)"):
        norm.cmrnorm_bwd(X[:2].copy(), X, None, None, size=3, scale=1.0, pow=0.75)
    with pytest.raises(ValueError, match=r"cmrnorm_bwd: inputs must share one dtype"):
        norm.cmrnorm_bwd(X.astype(np.float64), X, None, None, size=3, scale=1.0, pow=0.75)
    with pytest.raises(ValueError, match=r"cmrnorm_bwd: min_div must be > 0.0, got 0.0"):
        norm.cmrnorm_bwd(X, X, None, None, size=3, scale=1.0, pow=0.75, min_div=0.0)


@pytest.mark.parametrize("op", ["cmrnorm", "rnorm", "cnorm"])
def test_empty_batch(op):
    """N = 0 gives empty outputs of the input's shape (the blocks of an empty batch)."""
    x = np.zeros((4, 5, 5, 0), np.float32)
    kw = dict(size=3, scale=0.1, pow=0.75)
    y, d = getattr(norm, f"{op}_fwd")(x, **kw)
    assert y.shape == d.shape == x.shape
    assert getattr(norm, f"{op}_bwd")(x, x, y, d, **kw).shape == x.shape
