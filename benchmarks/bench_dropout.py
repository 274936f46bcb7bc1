"""Dropout kernels: forward, backward and the mask on AlexNet-sized tensors (pool1-sized 64x55x55x128 and
4096x4096, both larger than L2), against torch.nn.functional.dropout (whose RNG differs: torch draws
Philox in curand and writes a bool mask in the forward; ours regenerates the mask in the backward)."""
from __future__ import annotations

from harness import Case

SHAPES = [(64, 55, 55, 128), (4096, 4096)]
KEY = dict(keep=0.5, seed=1234, layer=0x5EED, step=77)


def cases(cp, torch):
    from pyconvnet.cuda.ops import dropout

    for shape in SHAPES:
        rng = cp.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=cp.float32)
        dy = rng.standard_normal(shape, dtype=cp.float32)
        y, dx = cp.empty_like(x), cp.empty_like(x)
        mask = cp.empty(shape, cp.bool_)
        n = x.size * 4
        label = "x".join(map(str, shape))
        t = None
        if torch is not None:
            tx = torch.randn(x.size, device="cuda")
            tdy = torch.randn(x.size, device="cuda")
            _, tmask = torch.ops.aten.native_dropout(tx, 0.5, True)
            t = dict(fwd=lambda: torch.ops.aten.native_dropout(tx, 0.5, True),
                     bwd=lambda: torch.ops.aten.native_dropout_backward(tdy, tmask, 2.0))
        yield Case("dropout", "fwd", label, lambda: dropout.dropout_fwd(x, out=y, **KEY), nbytes=2 * n,
                   torch_run=t and t["fwd"], note="reads x, writes y; torch: aten.native_dropout (also writes a mask)")
        yield Case("dropout", "bwd", label, lambda: dropout.dropout_bwd(dy, out=dx, **KEY), nbytes=2 * n,
                   torch_run=t and t["bwd"], note="reads dy, writes dx (mask regenerated); torch: "
                                                  "aten.native_dropout_backward (reads dy and its mask)")
        yield Case("dropout mask", "fwd", label, lambda: dropout.dropout_mask(shape, out=mask, **KEY),
                   nbytes=x.size, note="writes 1 byte per element; Philox-bound")
