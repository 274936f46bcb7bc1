"""Central finite-difference gradient checks for the NumPy reference ops (float64).

Usage::

    check_grad(fwd, bwd, inputs, wrt=("x", "w"))

``fwd(**inputs)`` returns one array (or a tuple whose first item is the output); ``bwd(dy, **inputs)``
returns a dict ``{name: gradient}`` with one entry per name in ``wrt``. The scalar checked is
``L = sum(G * fwd(...))`` for a fixed random ``G``; its numerical derivative with respect to each
checked element is ``(L(x + h) - L(x - h)) / 2h``. Arrays with at most ``max_elems`` elements are
checked element by element; larger ones on a random subset of ``max_elems`` elements plus
``directions`` random directional derivatives (which touch every element). The relative error
``||num - ana|| / ||num||`` must stay under ``rtol``.

``check_grad_catches_perturbation`` runs the same check with the backward's result perturbed at a
single checked element and asserts that the check fails, so every gradient test is shown to be able
to fail.
"""
from __future__ import annotations

import numpy as np

H = 1e-6
RTOL = 1e-6


def _out(r):
    return r[0] if isinstance(r, tuple) else r


def _numeric(fwd, inputs, name, G, idx_list, directions, rng, h):
    x = inputs[name]
    flat = x.reshape(-1)  # view: the inputs are C-contiguous
    num = np.empty(len(idx_list))
    for j, i in enumerate(idx_list):
        old = flat[i]
        flat[i] = old + h
        lp = np.sum(G * _out(fwd(**inputs)))
        flat[i] = old - h
        lm = np.sum(G * _out(fwd(**inputs)))
        flat[i] = old
        num[j] = (lp - lm) / (2 * h)
    dirs = []
    for _ in range(directions):
        v = rng.standard_normal(x.shape)
        inputs[name] = x + h * v
        lp = np.sum(G * _out(fwd(**inputs)))
        inputs[name] = x - h * v
        lm = np.sum(G * _out(fwd(**inputs)))
        inputs[name] = x
        dirs.append((v, (lp - lm) / (2 * h)))
    return num, dirs


def check_grad(fwd, bwd, inputs, wrt, *, seed=0, max_elems=400, directions=3, rtol=RTOL, h=H,
               _perturb=None):
    """Assert that ``bwd`` agrees with central differences of ``fwd`` for every name in ``wrt``."""
    rng = np.random.default_rng(seed)
    inputs = {k: (np.ascontiguousarray(v, dtype=np.float64) if isinstance(v, np.ndarray)
                  and v.dtype.kind == "f" else v) for k, v in inputs.items()}
    y = _out(fwd(**inputs))
    G = rng.standard_normal(y.shape)
    grads = bwd(G.copy(), **inputs)
    plan = {}
    for name in wrt:
        size = inputs[name].size
        if size <= max_elems:
            plan[name] = (np.arange(size), 0)
        else:
            plan[name] = (np.sort(rng.choice(size, max_elems, replace=False)), directions)
    if _perturb is not None:  # test the test: move one checked element of one gradient
        name = wrt[_perturb % len(wrt)]
        g = np.array(grads[name], dtype=np.float64, copy=True)
        i = plan[name][0][rng.integers(len(plan[name][0]))]
        g.reshape(-1)[i] += 1e-3 * (np.abs(g).max() + 1.0)
        grads = dict(grads, **{name: g})
    for name in wrt:
        ana = np.asarray(grads[name], dtype=np.float64)
        x = inputs[name]
        assert ana.shape == x.shape, f"d{name}: shape {ana.shape} != input shape {x.shape}"
        idx, ndir = plan[name]
        num, dirs = _numeric(fwd, inputs, name, G, idx, ndir, rng, h)
        a = ana.reshape(-1)[idx]
        scale = max(np.linalg.norm(num), np.linalg.norm(a), 1e-12)
        err = np.linalg.norm(num - a) / scale
        assert err < rtol, (f"d{name} (shape {x.shape}): relative error {err:.3e} >= {rtol:.0e} "
                            f"over {len(idx)} elements; worst at flat index "
                            f"{idx[np.argmax(np.abs(num - a))]}")
        for v, dnum in dirs:
            dana = float(np.sum(ana * v))
            derr = abs(dnum - dana) / max(abs(dnum), abs(dana), 1e-12)
            assert derr < rtol * 10, (f"d{name} (shape {x.shape}): directional derivative "
                                      f"{dana:.9g} != numerical {dnum:.9g} (rel. err {derr:.3e})")


def check_grad_catches_perturbation(fwd, bwd, inputs, wrt, **kw):
    """The check above must fail when the backward is off at one element (for each input)."""
    for k in range(len(wrt)):
        try:
            check_grad(fwd, bwd, inputs, wrt, _perturb=k, **kw)
        except AssertionError:
            continue
        raise AssertionError(f"gradient check did not notice a perturbed d{wrt[k]}")
