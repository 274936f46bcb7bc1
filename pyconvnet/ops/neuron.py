"""Elementwise activation functions ("neurons"), NumPy reference.

``x``, ``y``, ``dy`` are C-contiguous float32 or float64 arrays of any shape (typically images
(C, H, W, N) or fully connected activations (F, N)); all arrays of one call share a dtype and a
shape, and the result has them too. Parameters are Python numbers, applied in the array's dtype.

=========  ======  ===========================  =======================================
name       params  forward y                    backward dx (dy: gradient of the cost wrt y)
=========  ======  ===========================  =======================================
ident      --      x                            dy
relu       --      max(0, x)                    dy * (y > 0)
logistic   --      1 / (1 + exp(-x))            dy * y * (1 - y)
tanh       a, b    a * tanh(b * x)              dy * b * (a - y*y/a)        (a != 0)
brelu      a       min(max(0, x), a)            dy * (0 < y < a)            (a > 0)
softrelu   --      log(1 + exp(x))              dy * logistic(x)
abs        --      |x|                          dy * sign(x)                (0 at x == 0)
square     --      x * x                        dy * 2 * x
sqrt       --      sqrt(x)                      dy / (2 * y)
linear     a, b    a * x + b                    dy * a
=========  ======  ===========================  =======================================

Kinks take the gradient of the side the forward output shows: relu passes dy only where y > 0,
brelu only where 0 < y < a, abs gives 0 at x == 0. softrelu is evaluated stably as
``max(x, 0) + log1p(exp(-|x|))`` (no overflow for large |x|, exact to rounding for very negative x).
logistic lets exp(-x) overflow to inf for very negative x, which gives the correct limit 0.
sqrt of a negative input gives NaN and its backward at y == 0 gives inf, as on the GPU (no warning).
Masks are applied by multiplication (``dy * (y > 0)``), so a non-finite dy in a masked-off element
gives NaN rather than 0.
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_float, check_same_dtype, fail

NEURONS = {
    "ident": 0, "relu": 0, "logistic": 0, "tanh": 2, "brelu": 1, "softrelu": 0,
    "abs": 0, "square": 0, "sqrt": 0, "linear": 2,
}


def _params(op: str, name, params) -> tuple:
    """Validate the neuron name and its parameters; return them as floats."""
    if not isinstance(name, str) or name not in NEURONS:
        fail(op, f"unknown neuron {name!r}; known: {', '.join(NEURONS)}")
    try:
        params = tuple(params)
    except TypeError:
        fail(op, f"params must be a sequence of numbers, got {params!r}")
    want = NEURONS[name]
    if len(params) != want:
        fail(op, f"neuron {name} takes {want} parameter(s), got {len(params)}: {params!r}")
    vals = tuple(check_float(op, f"{name} parameter {i}", p) for i, p in enumerate(params))
    if name == "tanh" and vals[0] == 0.0:
        fail(op, "tanh parameter a must be nonzero (a*tanh(b*x) would be constant 0)")
    if name == "brelu" and vals[0] <= 0.0:
        fail(op, f"brelu parameter a must be > 0, got {vals[0]}")
    return vals


def _logistic(x):
    """1 / (1 + exp(-x)) in x's dtype, in a new array."""
    y = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)
    return y


def neuron_fwd(x, name: str, params=()):
    """Apply neuron ``name`` with ``params`` to x; returns a new array of x's shape and dtype."""
    op = "neuron_fwd"
    vals = _params(op, name, params)
    check_array(op, "x", x)
    dt = x.dtype.type
    if name == "ident":
        return x.copy()
    if name == "relu":
        return np.maximum(x, dt(0))
    if name == "logistic":
        return _logistic(x)
    if name == "tanh":
        y = np.multiply(x, dt(vals[1]))
        np.tanh(y, out=y)
        y *= dt(vals[0])
        return y
    if name == "brelu":
        y = np.maximum(x, dt(0))
        np.minimum(y, dt(vals[0]), out=y)
        return y
    if name == "softrelu":
        y = np.abs(x)
        np.negative(y, out=y)
        np.exp(y, out=y)
        np.log1p(y, out=y)
        y += np.maximum(x, dt(0))
        return y
    if name == "abs":
        return np.abs(x)
    if name == "square":
        return np.square(x)
    if name == "sqrt":
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)
    # linear
    y = np.multiply(x, dt(vals[0]))
    y += dt(vals[1])
    return y


def neuron_bwd(dy, x, y, name: str, params=()):
    """Gradient wrt x of neuron ``name``, given dy (wrt y), its input x and its output y.

    All three arrays share one shape and dtype; returns a new array dx of that shape and dtype.
    """
    op = "neuron_bwd"
    vals = _params(op, name, params)
    check_array(op, "dy", dy)
    check_array(op, "x", x, shape=dy.shape)
    check_array(op, "y", y, shape=dy.shape)
    check_same_dtype(op, dy=dy, x=x, y=y)
    dt = dy.dtype.type
    if name in ("ident",):
        return dy.copy()
    if name == "relu":
        return np.multiply(dy, y > 0)
    if name == "logistic":
        dx = np.subtract(dt(1), y)
        dx *= y
        dx *= dy
        return dx
    if name == "tanh":
        a, b = dt(vals[0]), dt(vals[1])
        dx = np.square(y)
        dx /= a
        np.subtract(a, dx, out=dx)
        dx *= b
        dx *= dy
        return dx
    if name == "brelu":
        mask = y > 0
        mask &= y < dt(vals[0])
        return np.multiply(dy, mask)
    if name == "softrelu":
        dx = _logistic(x)
        dx *= dy
        return dx
    if name == "abs":
        dx = np.sign(x)
        dx *= dy
        return dx
    if name == "square":
        dx = np.multiply(x, dt(2))
        dx *= dy
        return dx
    if name == "sqrt":
        dx = np.multiply(y, dt(2))
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(dy, dx, out=dx)
        return dx
    # linear
    return np.multiply(dy, dt(vals[0]))
