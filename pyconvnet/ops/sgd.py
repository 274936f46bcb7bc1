"""cuda-convnet's learning rule: SGD with momentum and L2 weight decay, in place. NumPy reference.

For a weight array w, its momentum buffer inc and the gradient of the cost summed over n cases::

    inc = mom * inc - eps * (grad / n + wc * w)
    w   = w + inc

which is SGD with momentum (lr = eps, weight_decay = wc) on the minibatch-averaged gradient. w, inc
and grad are C-contiguous arrays of one shape and one dtype (float32 or float64); the scalars are
rounded to that dtype and every intermediate stays in it (no float64 temporaries for float32).
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_float, check_int, check_same_dtype, fail


def check_sgd_update(w, inc, grad, eps, mom, wc, n):
    """The argument checks of sgd_update (shared with the CUDA backend); returns eps, mom, wc as
    floats and n as an int."""
    op = "sgd_update"
    check_array(op, "w", w)
    check_array(op, "inc", inc, shape=w.shape)
    check_array(op, "grad", grad, shape=w.shape)
    check_same_dtype(op, w=w, inc=inc, grad=grad)
    eps = check_float(op, "eps", eps, lo=0.0)
    mom = check_float(op, "mom", mom, lo=0.0)
    wc = check_float(op, "wc", wc, lo=0.0)
    n = check_int(op, "n", n, lo=1)
    return eps, mom, wc, n


def sgd_update(w, inc, grad, *, eps, mom, wc, n=1):
    """Update ``w`` and ``inc`` in place as in the module docstring; returns None.

    eps, mom, wc: finite numbers >= 0; n: integer >= 1 (the number of cases grad is summed over).
    w and inc must be distinct, writeable, non-overlapping arrays.
    """
    op = "sgd_update"
    eps, mom, wc, n = check_sgd_update(w, inc, grad, eps, mom, wc, n)
    for name, a in (("w", w), ("inc", inc)):
        if not a.flags.writeable:
            fail(op, f"{name} must be writeable")
    if np.may_share_memory(w, inc):
        fail(op, "w and inc must not overlap in memory")
    dt = w.dtype.type
    step = np.divide(grad, dt(n)) if n != 1 else grad.copy()
    if wc != 0.0:
        step += np.multiply(w, dt(wc))
    step *= dt(eps)
    inc *= dt(mom)
    inc -= step
    w += inc
