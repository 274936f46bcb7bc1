"""Ops that combine several inputs: weighted sum, elementwise max, concatenation (NumPy).

Inputs are lists (or tuples) of C-contiguous float32/float64 arrays sharing one dtype; results have
that dtype and are new arrays (never views of an input).

- eltsum / eltmax: every input has the same shape (any), and so does y.
- concat: inputs (F_i, N) or (C_i, H, W, N) -- the same number of dimensions and equal trailing
  dimensions -- joined along axis 0, so y is (sum F_i, N) or (sum C_i, H, W, N).
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_float, check_int, check_same_dtype, fail


def _check_list(op: str, xs, same_shape: bool):
    if not isinstance(xs, (list, tuple)) or len(xs) == 0:
        fail(op, f"xs must be a non-empty list of arrays, got {type(xs).__name__}"
                 + (" of length 0" if isinstance(xs, (list, tuple)) else ""))
    for i, x in enumerate(xs):
        check_array(op, f"xs[{i}]", x, shape=xs[0].shape if same_shape and i else None)
    check_same_dtype(op, **{f"xs[{i}]": x for i, x in enumerate(xs)})


def _check_coeffs(op: str, coeffs, n: int | None):
    """Finite numbers, n of them (or at least one when n is None), as floats."""
    try:
        coeffs = list(coeffs)
    except TypeError:
        fail(op, f"coeffs must be a sequence of numbers, got {coeffs!r}")
    if n is None and not coeffs:
        fail(op, "coeffs must have at least one entry")
    if n is not None and len(coeffs) != n:
        fail(op, f"coeffs has {len(coeffs)} entries for {n} inputs")
    return [check_float(op, f"coeffs[{i}]", c) for i, c in enumerate(coeffs)]


def eltsum_fwd(xs, coeffs):
    """y = sum_i coeffs[i] * xs[i], accumulated in input order in the inputs' dtype."""
    op = "eltsum_fwd"
    _check_list(op, xs, True)
    cs = _check_coeffs(op, coeffs, len(xs))
    dt = xs[0].dtype.type
    y = np.multiply(xs[0], dt(cs[0]))
    for x, c in zip(xs[1:], cs[1:]):
        y += x if c == 1.0 else x * dt(c)  # x * 1 == x exactly
    return y


def eltsum_bwd(dy, coeffs):
    """[coeffs[i] * dy for each input]: a list of new arrays shaped like dy."""
    op = "eltsum_bwd"
    check_array(op, "dy", dy)
    cs = _check_coeffs(op, coeffs, None)
    dt = dy.dtype.type
    return [np.multiply(dy, dt(c)) for c in cs]


def eltmax_fwd(xs):
    """y = elementwise max over the inputs (NaN propagates)."""
    op = "eltmax_fwd"
    _check_list(op, xs, True)
    y = xs[0].copy()
    for x in xs[1:]:
        np.maximum(y, x, out=y)
    return y


def eltmax_bwd(dy, xs, y):
    """[dy * (xs[i] == y) for each input]: every input equal to the max gets the gradient (ties
    all receive it, as in pool's max backward)."""
    op = "eltmax_bwd"
    _check_list(op, xs, True)
    check_array(op, "dy", dy, shape=xs[0].shape)
    check_array(op, "y", y, shape=xs[0].shape)
    check_same_dtype(op, dy=dy, y=y, xs=xs[0])
    return [np.multiply(dy, x == y) for x in xs]


def concat_fwd(xs):
    """Concatenate xs along axis 0 (see the module docstring for shapes); a new array."""
    op = "concat_fwd"
    _check_list(op, xs, False)
    rest = xs[0].shape[1:]
    if xs[0].ndim < 2:
        fail(op, f"inputs must be (F, N) or (C, H, W, N), got xs[0] of shape {tuple(xs[0].shape)}")
    for i, x in enumerate(xs):
        if x.ndim != xs[0].ndim or x.shape[1:] != rest:
            fail(op, f"xs[{i}] has shape {tuple(x.shape)}; all inputs must match xs[0] "
                     f"{tuple(xs[0].shape)} in every dimension but the first")
    return np.concatenate(xs, axis=0)


def check_concat_bwd(dy, sizes) -> list:
    """The argument checks of concat_bwd (shared with the CUDA backend); returns sizes as ints."""
    op = "concat_bwd"
    check_array(op, "dy", dy)
    if dy.ndim < 2:
        fail(op, f"dy must be (F, N) or (C, H, W, N), got shape {tuple(dy.shape)}")
    try:
        sizes = [check_int(op, f"sizes[{i}]", s, lo=1) for i, s in enumerate(sizes)]
    except TypeError:
        fail(op, f"sizes must be a sequence of integers, got {sizes!r}")
    if not sizes:
        fail(op, "sizes must have at least one entry")
    if sum(sizes) != dy.shape[0]:
        fail(op, f"sizes {sizes} sum to {sum(sizes)}, but dy has {dy.shape[0]} rows "
                 f"(shape {tuple(dy.shape)})")
    return sizes


def concat_bwd(dy, sizes):
    """Split dy along axis 0 into pieces of sizes[i] rows (channels); a list of new contiguous
    arrays, the inverse of concat_fwd. sum(sizes) must equal dy.shape[0]."""
    sizes = check_concat_bwd(dy, sizes)
    offs = np.cumsum([0] + sizes)
    return [dy[a:b].copy() for a, b in zip(offs[:-1], offs[1:])]
