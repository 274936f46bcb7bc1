"""Softmax and the cost layers (logistic regression, sum of squares), NumPy reference.

Layout: x, y, probs, dy are C-contiguous float32/float64 arrays of shape (F, N) -- F classes or
features, N cases, batch innermost (cuda-convnet's layout); the softmax is over axis 0 (each column
is one case). Labels are an (N,) array of class indices in [0, F): any integer dtype, or float32 /
float64 holding integral values (cuda-convnet keeps labels as floats). Costs are summed over the
cases and returned as Python floats; gradients are those of the summed cost (not divided by N).

Clipping. -log p and -1/p use p clipped from below at the dtype's smallest positive normal number
(``np.finfo(dtype).tiny``: 1.18e-38 for float32, 2.2e-308 for float64), so a label probability of 0
gives a large finite cost (87.3 per case in float32, 708.4 in float64) and a large finite gradient,
never inf or NaN.

Error counting. A case counts as correct at top-k iff fewer than k *other* classes j satisfy
``not (p[j] < p[label])`` -- i.e. ties count against the label (a case whose label ties for the
largest probability is an error at top-1), and a NaN probability counts against it too. ``nerr`` is
the number of cases wrong at top-1, ``nerr_topk`` at top-k. (cuda-convnet gave a tied top-1 case a
fractional credit; a count of whole cases is simpler and matters only for exact ties.)
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_float, check_int, check_same_dtype, fail


def _check_labels(op: str, labels, probs):
    """Validate (N,) labels against probs (F, N); return them as an intp array."""
    f, n = probs.shape
    if not hasattr(labels, "dtype") or not hasattr(labels, "shape"):
        fail(op, f"labels must be an array, got {type(labels).__name__}")
    if labels.shape != (n,):
        fail(op, f"labels must have shape ({n},) to match probs {tuple(probs.shape)}, "
                 f"got {tuple(labels.shape)}")
    if not labels.flags.c_contiguous:
        fail(op, f"labels must be C-contiguous, got strides {labels.strides}")
    kind = labels.dtype.kind
    if kind == "f":
        if n and not np.all(np.isfinite(labels) & (np.floor(labels) == labels)):
            fail(op, "float labels must hold integral values")
    elif kind not in "iu":
        fail(op, f"labels must be integers (or integral floats), got {labels.dtype}")
    if n:
        lo, hi = labels.min(), labels.max()
        if lo < 0 or hi >= f:
            fail(op, f"labels must be in [0, {f}), got values in [{lo}, {hi}]")
    return labels.astype(np.intp, copy=False)


def _check_probs(op: str, name: str, probs, labels):
    check_array(op, name, probs, ndim=2)
    return _check_labels(op, labels, probs)


def softmax_fwd(x):
    """y[:, n] = exp(x[:, n] - max x[:, n]) / sum(...) for x (F, N); returns y (F, N) like x."""
    check_array("softmax_fwd", "x", x, ndim=2)
    if x.shape[0] == 0:
        fail("softmax_fwd", f"x must have at least one row (class), got shape {tuple(x.shape)}")
    y = np.subtract(x, x.max(axis=0, keepdims=True))
    np.exp(y, out=y)
    y /= y.sum(axis=0, keepdims=True)
    return y


def softmax_bwd(dy, y):
    """dx = y * (dy - sum_f(dy * y)) for dy, y (F, N) (softmax output y); returns dx (F, N)."""
    op = "softmax_bwd"
    check_array(op, "dy", dy, ndim=2)
    check_array(op, "y", y, shape=dy.shape)
    check_same_dtype(op, dy=dy, y=y)
    dx = np.multiply(dy, y)
    s = dx.sum(axis=0, keepdims=True)
    np.subtract(dy, s, out=dx)
    dx *= y
    return dx


def _label_probs(probs, lab):
    return probs[lab, np.arange(probs.shape[1])]


def logreg_cost(probs, labels, *, topk=1, device=False):
    """(cost, nerr, nerr_topk) for probs (F, N) and labels (N,).

    cost = sum_n -log(max(probs[label_n, n], tiny)) (logs in probs' dtype, summed in float64),
    nerr / nerr_topk = number of cases wrong at top-1 / top-k (ties count as wrong; see the module
    docstring). 1 <= topk <= F. ``device=True`` returns them as a float64 array of the backend,
    [cost, nerr, nerr_topk, number of invalid labels] (the CUDA backend then neither synchronises
    nor raises on bad labels; here labels are checked as always and the last entry is 0).
    """
    op = "logreg_cost"
    lab = _check_probs(op, "probs", probs, labels)
    topk = check_int(op, "topk", topk, lo=1)
    if topk > probs.shape[0]:
        fail(op, f"topk must be <= the number of classes {probs.shape[0]}, got {topk}")
    pl = _label_probs(probs, lab)
    tiny = np.finfo(probs.dtype).tiny
    cost = 0.0 - float(np.log(np.maximum(pl, tiny)).sum(dtype=np.float64))  # 0.0, not -0.0
    beats = ~(probs < pl)  # (F, N); includes the label's own row, which is always True
    nbeat = beats.sum(axis=0) - 1
    nerr, nerr_k = int(np.count_nonzero(nbeat >= 1)), int(np.count_nonzero(nbeat >= topk))
    if device:
        return np.array([cost, nerr, nerr_k, 0], np.float64)
    return cost, nerr, nerr_k


def logreg_bwd(probs, labels, *, coeff=1.0):
    """d cost / d probs for cost = coeff * sum -log p[label]: -coeff / max(p, tiny) at the label,
    0 elsewhere; probs (F, N), labels (N,); returns (F, N) like probs."""
    op = "logreg_bwd"
    lab = _check_probs(op, "probs", probs, labels)
    coeff = check_float(op, "coeff", coeff)
    dt = probs.dtype.type
    d = np.zeros_like(probs)
    pl = np.maximum(_label_probs(probs, lab), np.finfo(probs.dtype).tiny)
    d[lab, np.arange(probs.shape[1])] = dt(-coeff) / pl
    return d


def softmax_logreg_bwd(probs, labels, *, coeff=1.0):
    """Gradient wrt the softmax input x of coeff * sum -log softmax(x)[label], given the softmax
    output probs (F, N): coeff * (probs - onehot(labels)). Stable for any logits (no division)."""
    op = "softmax_logreg_bwd"
    lab = _check_probs(op, "probs", probs, labels)
    coeff = check_float(op, "coeff", coeff)
    dt = probs.dtype.type
    d = probs.copy()
    d[lab, np.arange(probs.shape[1])] -= dt(1)
    if coeff != 1.0:
        d *= dt(coeff)
    return d


def sum2_cost(x, *, device=False):
    """0.5 * sum(x**2) over all elements of x (any shape), summed in float64; a Python float
    (``device=True``: a float64 array (1,) of the backend)."""
    check_array("sum2_cost", "x", x)
    v = 0.5 * float(np.square(x, dtype=np.float64).sum())
    return np.array([v], np.float64) if device else v


def sum2_bwd(x, *, coeff=1.0):
    """coeff * x: the gradient of coeff * sum2_cost(x); same shape and dtype as x."""
    op = "sum2_bwd"
    check_array(op, "x", x)
    coeff = check_float(op, "coeff", coeff)
    return np.multiply(x, x.dtype.type(coeff))
