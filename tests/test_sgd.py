"""Tests for pyconvnet.ops.sgd: the update formula, dtypes, equivalence with SGD + momentum."""
import numpy as np
import pytest

from pyconvnet.ops.sgd import sgd_update


def _arrays(dtype, shape=(4, 6), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(3)]


def test_hand_values():
    w = np.array([1.0, -2.0], dtype=np.float32)
    inc = np.array([0.5, 0.0], dtype=np.float32)
    grad = np.array([4.0, 8.0], dtype=np.float32)
    assert sgd_update(w, inc, grad, eps=0.1, mom=0.9, wc=0.5, n=4) is None
    # inc = 0.9*[0.5, 0] - 0.1*([1, 2] + 0.5*[1, -2]) = [0.45 - 0.15, -0.1] = [0.3, -0.1]
    np.testing.assert_allclose(inc, [0.3, -0.1], rtol=1e-6)
    np.testing.assert_allclose(w, [1.3, -2.1], rtol=1e-6)
    np.testing.assert_array_equal(grad, [4.0, 8.0])  # grad is not touched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wc, n", [(0.0, 1), (5e-4, 128), (0.01, 3)])
def test_matches_formula(dtype, wc, n):
    w, inc, grad = _arrays(dtype)
    w0, inc0 = w.copy(), inc.copy()
    sgd_update(w, inc, grad, eps=0.01, mom=0.9, wc=wc, n=n)
    assert w.dtype == dtype and inc.dtype == dtype
    w64, inc64, g64 = (a.astype(np.float64) for a in (w0, inc0, grad))
    want_inc = 0.9 * inc64 - 0.01 * (g64 / n + wc * w64)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(inc, want_inc, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(w, w64 + want_inc, rtol=rtol, atol=rtol * 1e-2)


def test_equals_sgd_with_momentum_and_weight_decay_over_several_steps():
    """The textbook form v = mom*v + (g_mean + wc*w); w -= lr*v gives the same weights."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal(20)
    inc = np.zeros(20)
    w_ref, v = w.copy(), np.zeros(20)
    lr, mom, wc, n = 0.05, 0.9, 1e-3, 16
    target = rng.standard_normal(20)
    for _ in range(10):
        grad = n * (w - target)  # summed over n cases of 0.5*||w - target||^2
        sgd_update(w, inc, grad, eps=lr, mom=mom, wc=wc, n=n)
        g_ref = n * (w_ref - target) / n + wc * w_ref
        v = mom * v + g_ref
        w_ref = w_ref - lr * v
    np.testing.assert_allclose(w, w_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(inc, -lr * v, rtol=1e-13, atol=1e-15)


def test_float32_has_no_float64_intermediates():
    """Every intermediate is rounded to float32: replay the documented sequence in float32."""
    w, inc, grad = _arrays(np.float32, (1000,), seed=2)
    f = np.float32
    step = grad / f(7)
    step = step + w * f(3e-3)
    step = step * f(0.02)
    want_inc = inc * f(0.8) - step
    want_w = w + want_inc
    sgd_update(w, inc, grad, eps=0.02, mom=0.8, wc=3e-3, n=7)
    np.testing.assert_array_equal(inc, want_inc)
    np.testing.assert_array_equal(w, want_w)


def test_zero_eps_and_mom_leave_nothing():
    w, inc, grad = _arrays(np.float64)
    w0 = w.copy()
    sgd_update(w, inc, grad, eps=0.0, mom=0.0, wc=0.1)
    np.testing.assert_array_equal(inc, 0)
    np.testing.assert_array_equal(w, w0)


W, I, G = _arrays(np.float32)


@pytest.mark.parametrize("args, kw, match", [
    ((W, I, G.astype(np.float64)), {}, "sgd_update: inputs must share one dtype"),
    ((W, I, np.zeros((4, 5), np.float32)), {},
     r"sgd_update: grad must have shape \(4, 6\), got \(4, 5\)"),
    ((W, np.zeros((6, 4), np.float32), G), {}, r"sgd_update: inc must have shape \(4, 6\)"),
    ((W.reshape(6, 4), I, G), {}, r"sgd_update: inc must have shape \(6, 4\), got \(4, 6\)"),
    ((np.zeros((4, 12), np.float32)[:, ::2], I, G), {}, "sgd_update: w must be C-contiguous"),
    ((W.astype(np.int32), I, G), {}, "sgd_update: w must be float32 or float64"),
    ((W, W, G), {}, "sgd_update: w and inc must not overlap in memory"),
    ((W, I, G), dict(eps=-0.1), "sgd_update: eps must be >= 0.0, got -0.1"),
    ((W, I, G), dict(mom=float("nan")), "sgd_update: mom must be finite"),
    ((W, I, G), dict(wc=-1), "sgd_update: wc must be >= 0.0"),
    ((W, I, G), dict(n=0), "sgd_update: n must be >= 1, got 0"),
    ((W, I, G), dict(n=2.0), "sgd_update: n must be an integer"),
])
def test_bad_arguments(args, kw, match):
    kw = dict(dict(eps=0.1, mom=0.9, wc=0.0), **kw)
    w0 = args[0].copy()
    with pytest.raises(ValueError, match=match):
        sgd_update(*args, **kw)
    np.testing.assert_array_equal(args[0], w0)  # nothing was changed


def test_read_only_weights_rejected():
    w, inc, grad = _arrays(np.float32)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="sgd_update: w must be writeable"):
        sgd_update(w, inc, grad, eps=0.1, mom=0.9, wc=0.0)
