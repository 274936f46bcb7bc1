"""Pooling kernels: max and average 3/2 pooling, forward and backward, on AlexNet's pool1 and pool2
inputs (64x55x55x128, 192x27x27x128), and max-pool forward+backward against PyTorch's autograd."""
from __future__ import annotations

from harness import Case

SHAPES = [(64, 55, 55, 128), (192, 27, 27, 128)]  # C, H, W, N
SIZE, STRIDE = 3, 2


def cases(cp, torch):
    from pyconvnet.cuda.ops import pool

    for shape in SHAPES:
        c, h, w, n = shape
        rng = cp.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=cp.float32)
        dx = cp.empty_like(x)
        oh, ow = pool.pool_out_size(h, SIZE, STRIDE), pool.pool_out_size(w, SIZE, STRIDE)
        dy = rng.standard_normal((c, oh, ow, n), dtype=cp.float32)
        xb, yb = x.nbytes, dy.nbytes
        label = "x".join(map(str, shape))
        t = _torch_twins(torch, shape, dy.shape) if torch is not None else None
        for mode in ("max", "avg"):
            kw = dict(mode=mode, size=SIZE, stride=STRIDE)
            y = pool.pool_fwd(x, **kw)

            def fwd(kw=kw, y=y):
                pool.pool_fwd(x, **kw, out=y)

            def bwd(kw=kw, y=y):
                pool.pool_bwd(dy, x, y, **kw, out=dx)

            op = f"{mode}pool {SIZE}/{STRIDE}"
            yield Case(op, "fwd", label, fwd, nbytes=xb + yb, torch_run=t and t[mode]["fwd"],
                       note=f"reads x, writes y; torch: F.{mode}_pool2d NCHW")
            yield Case(op, "bwd", label, bwd, nbytes=(2 * xb + 2 * yb) if mode == "max" else (xb + yb),
                       torch_run=t and t[mode]["bwd"],
                       note=("reads dy, x, y, writes dx; torch: aten.max_pool2d_with_indices_backward"
                             if mode == "max" else "reads dy, writes dx; torch: aten.avg_pool2d_backward"))
            if mode == "max" and shape == SHAPES[0]:
                def both(kw=kw, y=y):
                    pool.pool_fwd(x, **kw, out=y)
                    pool.pool_bwd(dy, x, y, **kw, out=dx)

                yield Case(op, "fwd+bwd", label, both, nbytes=3 * xb + 3 * yb, torch_run=t and t[mode]["fwd+bwd"],
                           note="torch: F.max_pool2d forward + torch.autograd.grad (autograd)")


def _torch_twins(torch, shape, out_shape):
    """PyTorch callables for the same sizes on NCHW tensors: {mode: {direction: fn}}."""
    import torch.nn.functional as F

    c, h, w, n = shape
    tx = torch.randn((n, c, h, w), device="cuda")
    tdy = torch.randn((n, out_shape[0], out_shape[1], out_shape[2]), device="cuda")
    k, s = SIZE, STRIDE
    _, idx = torch.ops.aten.max_pool2d_with_indices(tx, [k, k], [s, s], [0, 0], [1, 1], False)
    txg = tx.clone().requires_grad_(True)

    def max_both():
        torch.autograd.grad(F.max_pool2d(txg, k, s), txg, tdy)

    return {
        "max": {"fwd": lambda: F.max_pool2d(tx, k, s),
                "bwd": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                    tdy, tx, [k, k], [s, s], [0, 0], [1, 1], False, idx),
                "fwd+bwd": max_both},
        "avg": {"fwd": lambda: F.avg_pool2d(tx, k, s),
                "bwd": lambda: torch.ops.aten.avg_pool2d_backward(tdy, tx, [k, k], [s, s], [0, 0], False, True,
                                                                  None)},
    }
