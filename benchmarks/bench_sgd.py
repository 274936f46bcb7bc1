"""The fused SGD update (momentum + weight decay, in place) on 4096x4096 (an fc6-sized weight matrix) and
64x55x55x128 elements, against torch.optim.SGD (fused when torch has it, else foreach) on one tensor."""
from __future__ import annotations

from harness import Case

SHAPES = [(4096, 4096), (64, 55, 55, 128)]
HYPER = dict(eps=0.01, mom=0.9, wc=5e-4, n=128)


def cases(cp, torch):
    from pyconvnet.cuda.ops import sgd

    for shape in SHAPES:
        rng = cp.random.default_rng(0)
        w, inc, grad = (rng.standard_normal(shape, dtype=cp.float32) for _ in range(3))
        inc *= 1e-3
        w *= 1e-2
        label = "x".join(map(str, shape))
        trun, note = None, "reads w, inc, grad, writes w, inc"
        if torch is not None:
            p = torch.nn.Parameter(torch.randn(w.size, device="cuda") * 1e-2)
            p.grad = torch.randn(w.size, device="cuda")
            try:
                opt = torch.optim.SGD([p], lr=0.01, momentum=0.9, weight_decay=5e-4, fused=True)
                kind = "fused"
            except (RuntimeError, TypeError, ValueError):
                opt = torch.optim.SGD([p], lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=True)
                kind = "foreach"
            opt.step()  # creates the momentum buffer
            trun, note = opt.step, note + f"; torch: optim.SGD({kind}=True) step"
        yield Case("sgd_update", "update", label, lambda: sgd.sgd_update(w, inc, grad, **HYPER),
                   nbytes=5 * w.nbytes, torch_run=trun, note=note)
