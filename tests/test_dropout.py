"""Tests for pyconvnet.ops.dropout: mask definition and statistics, scaling, gradient, errors."""
import math

import numpy as np
import pytest

from gradcheck import check_grad, check_grad_catches_perturbation
from pyconvnet.ops.dropout import dropout_bwd, dropout_fwd, dropout_mask, layer_id
from pyconvnet.ops.philox import dropout_bits

ARGS = dict(seed=1234, layer=layer_id("fc4096"), step=77)


def test_mask_is_the_documented_function_of_the_bits():
    shape = (3, 4, 5, 7)
    for keep in (0.5, 0.3, 0.9):
        bits = dropout_bits(420, ARGS["seed"], ARGS["layer"], ARGS["step"])
        want = ((bits >> 8) < math.floor(keep * 2**24)).reshape(shape)
        got = dropout_mask(shape, keep=keep, **ARGS)
        assert got.dtype == np.bool_ and got.shape == shape
        np.testing.assert_array_equal(got, want)
    # the mask is over the C-order flat index, whatever the shape
    np.testing.assert_array_equal(dropout_mask((6, 5), keep=0.5, **ARGS),
                                  dropout_mask((30,), keep=0.5, **ARGS).reshape(6, 5))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8])
def test_kept_fraction_is_close_to_keep(keep):
    n = 1 << 18
    frac = dropout_mask((n,), keep=keep, **ARGS).mean()
    assert abs(frac - keep) < 5 * math.sqrt(keep * (1 - keep) / n)


def test_edge_keep_values():
    assert dropout_mask((1000,), keep=1.0, **ARGS).all()
    # keep = 2**-24: threshold 1, an element is kept only when its top 24 bits are all zero
    bits = dropout_bits(1000, ARGS["seed"], ARGS["layer"], ARGS["step"])
    np.testing.assert_array_equal(dropout_mask((1000,), keep=2.0**-24, **ARGS), (bits >> 8) == 0)
    assert dropout_mask((0, 3), keep=0.5, **ARGS).shape == (0, 3)


def test_masks_differ_across_step_layer_seed_and_repeat_exactly():
    shape, keep = (64, 128), 0.5
    m = dropout_mask(shape, keep=keep, **ARGS)
    np.testing.assert_array_equal(m, dropout_mask(shape, keep=keep, **ARGS))
    others = [dict(ARGS, step=78), dict(ARGS, layer=layer_id("fc4096b")), dict(ARGS, seed=1235)]
    for a in others:
        agree = np.mean(dropout_mask(shape, keep=keep, **a) == m)
        # independent masks agree on half the elements
        assert abs(agree - 0.5) < 5 * 0.5 / math.sqrt(m.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [True, False])
def test_forward_and_backward_values(dtype, scale):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 3, 5)).astype(dtype)
    x.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
    keep = 0.6
    m = dropout_mask(x.shape, keep=keep, **ARGS)
    s = dtype(1 / 0.6) if scale else dtype(1)
    y = dropout_fwd(x, keep=keep, scale=scale, **ARGS)
    assert y.dtype == dtype and y.shape == x.shape and not np.shares_memory(y, x)
    with np.errstate(invalid="ignore"):
        want = np.array([xi * s if mi else 0 for xi, mi in zip(x.reshape(-1), m.reshape(-1))],
                        dtype=dtype).reshape(x.shape)
    np.testing.assert_array_equal(y, want)  # exact: one multiply by s rounded to dtype
    assert not np.isnan(y.reshape(-1)[:3][~m.reshape(-1)[:3]]).any()  # dropped is exactly 0
    np.testing.assert_array_equal(dropout_bwd(x, keep=keep, scale=scale, **ARGS), want)


def test_keep_one_is_identity():
    x = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(dropout_fwd(x, keep=1.0, **ARGS), x)


@pytest.mark.parametrize("scale", [True, False])
def test_gradient(scale):
    x = np.random.default_rng(2).standard_normal((3, 2, 2, 6))

    def fwd(x):
        return dropout_fwd(x, keep=0.7, scale=scale, **ARGS)

    def bwd(dy, x):
        return {"x": dropout_bwd(dy, keep=0.7, scale=scale, **ARGS)}

    check_grad(fwd, bwd, {"x": x}, ("x",))
    check_grad_catches_perturbation(fwd, bwd, {"x": x}, ("x",))


def test_layer_id_is_crc32():
    assert layer_id("The quick brown fox jumps over the lazy dog") == 0x414FA339
    assert layer_id("") == 0
    assert layer_id("fc4096") != layer_id("fc4096b")
    with pytest.raises(ValueError, match="layer_id: name must be a str, got int"):
        layer_id(3)


X = np.zeros((4, 5), np.float32)


@pytest.mark.parametrize("kw, match", [
    (dict(keep=0.0), "dropout_fwd: keep must be > 0.0, got 0.0"),
    (dict(keep=1.5), "dropout_fwd: keep must be <= 1.0, got 1.5"),
    (dict(keep=float("nan")), "dropout_fwd: keep must be finite"),
    (dict(keep=1e-9), r"dropout_fwd: keep must be >= 2\*\*-24"),
    (dict(keep=0.5, seed=-1), "dropout_fwd: seed must be >= 0, got -1"),
    (dict(keep=0.5, layer=2**32), r"dropout_fwd: layer must be < 2\*\*32"),
    (dict(keep=0.5, step=1.0), "dropout_fwd: step must be an integer"),
    (dict(keep=0.5, scale=1), "dropout_fwd: scale must be a bool"),
])
def test_bad_scalar_arguments(kw, match):
    args = dict(ARGS, **kw)
    with pytest.raises(ValueError, match=match):
        dropout_fwd(X, **args)


def test_bad_arrays_and_shapes():
    with pytest.raises(ValueError, match="dropout_fwd: x must be float32 or float64, got int32"):
        dropout_fwd(np.zeros((2, 2), np.int32), keep=0.5, **ARGS)
    with pytest.raises(ValueError, match="dropout_bwd: dy must be C-contiguous"):
        dropout_bwd(np.zeros((4, 4), np.float32).T[::2], keep=0.5, **ARGS)
    with pytest.raises(ValueError,
                       match=r"dropout_mask: shape entry \(in \(3, -1\)\) must be >= 0"):
        dropout_mask((3, -1), keep=0.5, **ARGS)
    with pytest.raises(ValueError, match="dropout_mask: shape must be a tuple of integers"):
        dropout_mask(5, keep=0.5, **ARGS)
    with pytest.raises(ValueError, match="dropout_mask: keep must be > 0.0"):
        dropout_mask((5,), keep=-0.5, **ARGS)
