"""Elementwise sum and max of two inputs, forward and backward, and concatenation of two halves, on
64x55x55x128 and 4096x4096 (larger than L2), against a + b, torch.maximum and torch.cat."""
from __future__ import annotations

from harness import Case

SHAPES = [(64, 55, 55, 128), (4096, 4096)]


def cases(cp, torch):
    from pyconvnet.cuda.ops import elt

    for shape in SHAPES:
        rng = cp.random.default_rng(0)
        a, b, dy = (rng.standard_normal(shape, dtype=cp.float32) for _ in range(3))
        y, da, db = (cp.empty_like(a) for _ in range(3))
        half = (shape[0] // 2,) + shape[1:]
        h0, h1 = a[:half[0]].copy(), b[:half[0]].copy()
        cat = cp.empty((2 * half[0],) + shape[1:], cp.float32)
        elt.eltmax_fwd([a, b], out=y)
        m = a.nbytes
        label = "x".join(map(str, shape))
        t = {}
        if torch is not None:
            ta, tb, tdy = (torch.randn(a.size, device="cuda") for _ in range(3))
            ty = torch.empty_like(ta)
            th0, th1 = ta[:h0.size].clone(), tb[:h0.size].clone()
            t = dict(sum=lambda: torch.add(ta, tb, out=ty), max=lambda: torch.maximum(ta, tb, out=ty),
                     sumb=lambda: (tdy * 2.0, tdy * -1.0), cat=lambda: torch.cat([th0, th1]))
        yield Case("eltsum 2", "fwd", label, lambda: elt.eltsum_fwd([a, b], [1.0, 1.0], out=y), nbytes=3 * m,
                   torch_run=t.get("sum"), note="reads 2, writes 1; torch: torch.add(a, b, out=)")
        yield Case("eltsum 2", "bwd", label, lambda: elt.eltsum_bwd(dy, [2.0, -1.0], out=[da, db]), nbytes=3 * m,
                   torch_run=t.get("sumb"), note="reads dy, writes 2; torch: 2 multiplies")
        yield Case("eltmax 2", "fwd", label, lambda: elt.eltmax_fwd([a, b], out=y), nbytes=3 * m,
                   torch_run=t.get("max"), note="reads 2, writes 1; torch: torch.maximum(a, b, out=)")
        yield Case("eltmax 2", "bwd", label, lambda: elt.eltmax_bwd(dy, [a, b], y, out=[da, db]), nbytes=6 * m,
                   note="reads dy, y, 2 inputs, writes 2")
        yield Case("concat 2", "fwd", label, lambda: elt.concat_fwd([h0, h1], out=cat), nbytes=2 * cat.nbytes,
                   torch_run=t.get("cat"), note="2 device copies; torch: torch.cat")
