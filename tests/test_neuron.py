"""Tests for pyconvnet.ops.neuron: hand values, kinks, stability, gradient checks, bad arguments."""
import math

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops.neuron import NEURONS, neuron_bwd, neuron_fwd

PARAMS = {"tanh": (1.7159, 0.6667), "brelu": (2.5,), "linear": (-0.5, 0.25)}
ALL = sorted(NEURONS)


def _scalar_ref(name, p, v):
    """Independent per-element forward and derivative, in Python math (float64)."""
    if name == "ident":
        return v, 1.0
    if name == "relu":
        return max(0.0, v), float(v > 0)
    if name == "logistic":
        s = 1.0 / (1.0 + math.exp(-v))
        return s, s * (1 - s)
    if name == "tanh":
        a, b = p
        return a * math.tanh(b * v), a * b / math.cosh(b * v) ** 2
    if name == "brelu":
        return min(max(0.0, v), p[0]), float(0 < v < p[0])
    if name == "softrelu":
        return math.log(1 + math.exp(v)), 1.0 / (1.0 + math.exp(-v))
    if name == "abs":
        return abs(v), math.copysign(1.0, v) if v != 0 else 0.0
    if name == "square":
        return v * v, 2 * v
    if name == "sqrt":
        return math.sqrt(v), 0.5 / math.sqrt(v)
    a, b = p
    return a * v + b, a


def _inputs(name, shape, rng, dtype=np.float64):
    """Random inputs kept away from kinks (0, and a for brelu) and inside sqrt's domain."""
    x = rng.uniform(0.05, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    if name == "sqrt":
        x = np.abs(x)
    if name == "brelu":
        x[np.abs(x - 2.5) < 0.05] += 0.2
    return np.ascontiguousarray(x, dtype=dtype)


@pytest.mark.parametrize("name", ALL)
def test_values_match_scalar_reference(name):
    rng = np.random.default_rng(1)
    p = PARAMS.get(name, ())
    x = _inputs(name, (3, 7), rng)
    dy = rng.standard_normal(x.shape)
    y = neuron_fwd(x, name, p)
    dx = neuron_bwd(dy, x, y, name, p)
    ref = [_scalar_ref(name, p, float(v)) for v in x.reshape(-1)]
    np.testing.assert_allclose(y.reshape(-1), [r[0] for r in ref], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx.reshape(-1), dy.reshape(-1) * [r[1] for r in ref],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_preserved_and_inputs_untouched(name, dtype):
    rng = np.random.default_rng(2)
    p = PARAMS.get(name, ())
    x = _inputs(name, (2, 3, 3, 5), rng, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    x0, dy0 = x.copy(), dy.copy()
    y = neuron_fwd(x, name, p)
    dx = neuron_bwd(dy, x, y, name, p)
    for a in (y, dx):
        assert a.dtype == dtype and a.shape == x.shape and a.flags.c_contiguous
        assert not np.shares_memory(a, x) and not np.shares_memory(a, dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    if dtype == np.float32:  # float32 result agrees with float64 to float32 rounding
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        y64 = neuron_fwd(x64, name, p)
        np.testing.assert_allclose(y, y64, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(dx, neuron_bwd(dy64, x64, y64, name, p), rtol=5e-6, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_gradient(name):
    rng = np.random.default_rng(3)
    p = PARAMS.get(name, ())
    x = _inputs(name, (3, 2, 2, 5), rng)

    def fwd(x):
        return neuron_fwd(x, name, p)

    def bwd(dy, x):
        return {"x": neuron_bwd(dy, x, neuron_fwd(x, name, p), name, p)}

    check_grad(fwd, bwd, {"x": x}, ("x",))
    check_grad_catches_perturbation(fwd, bwd, {"x": x}, ("x",))


def test_gradient_large_input_is_sampled():
    rng = np.random.default_rng(4)
    x = _inputs("tanh", (8, 6, 6, 3), rng)  # 864 > max_elems: subset + directional checks
    p = PARAMS["tanh"]

    def fwd(x):
        return neuron_fwd(x, "tanh", p)

    def bwd(dy, x):
        return {"x": neuron_bwd(dy, x, fwd(x), "tanh", p)}

    check_grad(fwd, bwd, {"x": x}, ("x",))


def test_kinks_follow_forward_output():
    x = np.array([[-1.0, 0.0, 1e-30, 1.0, 2.5, 3.0]], dtype=np.float32)
    dy = np.ones_like(x)
    y = neuron_fwd(x, "relu")
    np.testing.assert_array_equal(y, [[0, 0, np.float32(1e-30), 1, 2.5, 3]])
    np.testing.assert_array_equal(neuron_bwd(dy, x, y, "relu"), [[0, 0, 1, 1, 1, 1]])
    y = neuron_fwd(x, "brelu", (2.5,))
    np.testing.assert_array_equal(y, [[0, 0, np.float32(1e-30), 1, 2.5, 2.5]])
    np.testing.assert_array_equal(neuron_bwd(dy, x, y, "brelu", (2.5,)), [[0, 0, 1, 1, 0, 0]])
    xa = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(neuron_bwd(np.ones(3), xa, neuron_fwd(xa, "abs"), "abs"),
                                  [-1, 0, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_are_stable(dtype):
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], dtype=dtype)
    dy = np.ones_like(x)
    sr = neuron_fwd(x, "softrelu")  # warnings are errors in this test suite
    assert np.all(np.isfinite(sr))
    assert sr[0] == 0 and sr[-1] == np.float32(1e4) and sr[3] == dtype(math.log(2))
    tiny = math.exp(-30)  # log1p(e^-30) ~ e^-30: kept, not lost to cancellation
    np.testing.assert_allclose(sr[2], tiny, rtol=1e-6)
    # logistic(-100) = e^-100 is below float32's smallest normal (exp(100) overflows there, giving
    # 0): results below the smallest normal are held to an absolute bound of that size
    np.testing.assert_allclose(neuron_bwd(dy, x, sr, "softrelu"),
                               [0, math.exp(-100), tiny, 0.5, 1, 1, 1], rtol=1e-6,
                               atol=float(np.finfo(dtype).tiny))
    lg = neuron_fwd(x, "logistic")
    np.testing.assert_array_equal(lg[[0, 3, 6]], [0, 0.5, 1])
    assert np.all(np.isfinite(neuron_bwd(dy, x, lg, "logistic")))
    th = neuron_fwd(x, "tanh", (2.0, 1.0))
    np.testing.assert_array_equal(th[[0, 3, 6]], [-2, 0, 2])


def test_sqrt_edge_values_without_warnings():
    x = np.array([-1.0, 0.0, 4.0], dtype=np.float32)
    y = neuron_fwd(x, "sqrt")
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2
    dx = neuron_bwd(np.ones_like(x), x, y, "sqrt")
    assert np.isinf(dx[1]) and dx[2] == 0.25


def test_relu_on_a_large_tensor():
    x = np.random.default_rng(5).standard_normal((32, 32, 32, 128), dtype=np.float32)
    y = neuron_fwd(x, "relu")
    dx = neuron_bwd(x, x, y, "relu")
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
    np.testing.assert_array_equal(dx, y)


@pytest.mark.parametrize("args, match", [
    (("nope", ()), "neuron_fwd: unknown neuron 'nope'"),
    (("relu", (1.0,)), "neuron_fwd: neuron relu takes 0 parameter"),
    (("tanh", (1.0,)), "neuron_fwd: neuron tanh takes 2 parameter"),
    (("brelu", ()), "neuron_fwd: neuron brelu takes 1 parameter"),
    (("brelu", (0.0,)), "neuron_fwd: brelu parameter a must be > 0"),
    (("tanh", (0.0, 1.0)), "neuron_fwd: tanh parameter a must be nonzero"),
    (("linear", (1.0, float("nan"))), "neuron_fwd: linear parameter 1 must be finite"),
    (("linear", (1.0, "2")), "neuron_fwd: linear parameter 1 must be a number"),
    (("tanh", 3), "neuron_fwd: params must be a sequence"),
])
def test_bad_names_and_params(args, match):
    with pytest.raises(ValueError, match=match):
        neuron_fwd(np.zeros((2, 3), np.float32), *args)


def test_bad_arrays():
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="neuron_fwd: x must be float32 or float64, got int64"):
        neuron_fwd(np.zeros((4, 6), np.int64), "relu")
    with pytest.raises(ValueError, match="neuron_fwd: x must be C-contiguous"):
        neuron_fwd(x[:, ::2], "relu")
    with pytest.raises(ValueError, match="neuron_fwd: x must be an array"):
        neuron_fwd([1.0, 2.0], "relu")
    with pytest.raises(ValueError, match=r"neuron_bwd: y must have shape \(4, 6\), got \(4, 5\)"):
        neuron_bwd(x, x, np.zeros((4, 5), np.float32), "relu")
    with pytest.raises(ValueError, match="neuron_bwd: inputs must share one dtype"):
        neuron_bwd(x, x, x.astype(np.float64), "relu")
    with pytest.raises(ValueError, match="neuron_bwd: unknown neuron 'Relu'"):
        neuron_bwd(x, x, x, "Relu")
