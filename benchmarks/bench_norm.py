"""Response normalisation kernels: cross-map LRN (cmrnorm, size 5) forward, backward and both on AlexNet's
two LRN inputs (64x55x55x128, 192x27x27x128) against torch.nn.LocalResponseNorm, without stored
denominators (what NormLayer runs) and with them ("stored denom"), and same-map (rnorm) and contrast
(cnorm) normalisation, size 5, forward and backward on 64x55x55x128 (no PyTorch twin).

Parameters: AlexNet's LRN, b = a / (k + alpha * sum_{5 maps} a^2)^beta with k=2, alpha=1e-4, beta=0.75, is
ours with min_div=2, size=5, scale=5e-4, pow=0.75 (the parsed scale is divided by size: 5e-4/5 = 1e-4
per square). torch.nn.LocalResponseNorm also divides its alpha by the size, so the twin computing the
same thing is LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) (on NCHW tensors of the same sizes).

Minimum bytes. cmrnorm without stored denominators (keep_denom=False; the backward recomputes them from
x): forward reads x, writes y (2 arrays); backward reads dy, x, writes dx (3 arrays); fwd+bwd 5 arrays.
With stored denominators, and rnorm/cnorm: forward reads x and writes y and denom (3 arrays); backward
reads dy, x, y, denom and writes dx (5 arrays); fwd+bwd 8 arrays. cnorm's backward is two launches
(window means into a scratch array, then the gradient: 8 arrays moved) but is counted at the same
5-array minimum.
"""
from __future__ import annotations

from harness import Case

CMR_SHAPES = [(64, 55, 55, 128), (192, 27, 27, 128)]  # C, H, W, N
SPATIAL_SHAPE = (64, 55, 55, 128)
KW = dict(size=5, scale=5e-4, pow=0.75, min_div=2.0)
TWIN = "torch: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) NCHW"


def cases(cp, torch):
    from pyconvnet.cuda.ops import norm

    for shape in CMR_SHAPES:
        t = _torch_twins(torch, shape) if torch is not None else {}
        yield from _cmrnorm_recompute_cases(cp, norm, shape, t)
        yield from _stored_denom_cases(cp, norm, "cmrnorm", shape, t)
    for op in ("rnorm", "cnorm"):
        yield from _stored_denom_cases(cp, norm, op, SPATIAL_SHAPE, {})


def _inputs(cp, shape):
    rng = cp.random.default_rng(0)
    return rng.standard_normal(shape, dtype=cp.float32) * 30, rng.standard_normal(shape, dtype=cp.float32)


def _cmrnorm_recompute_cases(cp, norm, shape, t):
    """cmrnorm_fwd(keep_denom=False) (kernel cmrnorm_fwd_y) and cmrnorm_bwd(dy, x, None, None)
    (cmrnorm_bwd_x), as NormLayer runs them."""
    x, dy = _inputs(cp, shape)
    y = cp.empty_like(x)
    dx = cp.empty_like(x)
    nb = x.nbytes
    label = "x".join(map(str, shape))

    def fwd():
        norm.cmrnorm_fwd(x, **KW, keep_denom=False, out=(y, None))

    def bwd():
        norm.cmrnorm_bwd(dy, x, None, None, **KW, out=dx)

    def both():
        fwd()
        bwd()

    yield Case("cmrnorm 5", "fwd", label, fwd, nbytes=2 * nb, torch_run=t.get("fwd"),
               note="reads x, writes y (no denom)" + (f"; {TWIN} forward" if t else ""))
    yield Case("cmrnorm 5", "bwd", label, bwd, nbytes=3 * nb, torch_run=t.get("fwd+bwd"),
               note="reads dy, x, writes dx (denom recomputed)" +
                    (f"; {TWIN} forward + backward via autograd (its backward alone is not callable)" if t else ""))
    yield Case("cmrnorm 5", "fwd+bwd", label, both, nbytes=5 * nb, torch_run=t.get("fwd+bwd"),
               note=f"{TWIN} forward + torch.autograd.grad" if t else "")


def _stored_denom_cases(cp, norm, op, shape, t):
    fwd_fn, bwd_fn = getattr(norm, op + "_fwd"), getattr(norm, op + "_bwd")
    x, dy = _inputs(cp, shape)
    y, denom = fwd_fn(x, **KW)
    dx = cp.empty_like(x)
    nb = x.nbytes
    label = "x".join(map(str, shape))

    def fwd():
        fwd_fn(x, **KW, out=(y, denom))

    def bwd():
        bwd_fn(dy, x, y, denom, **KW, out=dx)

    def both():
        fwd()
        bwd()

    name = "cmrnorm 5 (stored denom)" if op == "cmrnorm" else f"{op} 5"
    yield Case(name, "fwd", label, fwd, nbytes=3 * nb, torch_run=t.get("fwd"),
               note="reads x, writes y, denom" + (f"; {TWIN} forward" if t else ""))
    yield Case(name, "bwd", label, bwd, nbytes=5 * nb, torch_run=t.get("fwd+bwd"),
               note="reads dy, x, y, denom, writes dx" +
                    ("; 2 launches (window means, then dx)" if op == "cnorm" else "") +
                    (f"; {TWIN} forward + backward via autograd (its backward alone is not "
                     "callable)" if t else ""))
    if op == "cmrnorm":
        yield Case(name, "fwd+bwd", label, both, nbytes=8 * nb, torch_run=t.get("fwd+bwd"),
                   note=f"{TWIN} forward + torch.autograd.grad" if t else "")


def _torch_twins(torch, shape):
    """PyTorch LocalResponseNorm on an NCHW tensor of the same sizes: {direction: fn}."""
    c, h, w, n = shape
    lrn = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    tx = torch.randn((n, c, h, w), device="cuda") * 30
    tdy = torch.randn((n, c, h, w), device="cuda")
    txg = tx.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            lrn(tx)

    def both():
        torch.autograd.grad(lrn(txg), txg, tdy)

    return {"fwd": fwd, "fwd+bwd": both}


def tune(cp, reps: int = 20):
    """Sweep the launch knobs of pyconvnet.cuda.ops.norm (threads per SM before the streamed axis is
    split, block sizes) on the benchmark shapes and print ms and GB/s per setting."""
    from harness import COPY_GBPS, time_ms

    from pyconvnet.cuda.ops import norm

    def stored(op):
        f, b = getattr(norm, op + "_fwd"), getattr(norm, op + "_bwd")
        return (lambda x, y, d: f(x, **KW, out=(y, d)), lambda x, y, d, dx: b(x, x, y, d, **KW, out=dx), 3, 5)

    no_denom = (lambda x, y, d: norm.cmrnorm_fwd(x, **KW, keep_denom=False, out=(y, None)),
                lambda x, y, d, dx: norm.cmrnorm_bwd(x, x, None, None, **KW, out=dx), 2, 3)
    saved = (norm.THREADS_PER_SM, norm.CMRNORM_BLOCK, norm.SPATIAL_BLOCK)
    print("| op | shape | threads/SM | block | fwd ms | fwd % copy | bwd ms | bwd % copy |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        for op, shapes, knob, (fwd, bwd, nf, nb) in (
                ("cmrnorm", CMR_SHAPES, "CMRNORM_BLOCK", no_denom),
                ("cmrnorm (stored denom)", CMR_SHAPES, "CMRNORM_BLOCK", stored("cmrnorm")),
                ("rnorm", [SPATIAL_SHAPE], "SPATIAL_BLOCK", stored("rnorm")),
                ("cnorm", [SPATIAL_SHAPE], "SPATIAL_BLOCK", stored("cnorm"))):
            for shape in shapes:
                x = cp.random.default_rng(0).standard_normal(shape, dtype=cp.float32) * 30
                y, d, dx = cp.empty_like(x), cp.empty_like(x), cp.empty_like(x)
                fwd(x, y, d)  # real denominators for the stored-denominator backward
                for tps in (256, 512, 1024, 2048):
                    for block in ((64, 128, 256) if knob == "CMRNORM_BLOCK" else (128, 256, 512)):
                        norm.THREADS_PER_SM = tps
                        setattr(norm, knob, block)
                        f = time_ms(cp, lambda: fwd(x, y, d), reps=reps)
                        b = time_ms(cp, lambda: bwd(x, y, d, dx), reps=reps)
                        gb = x.nbytes / 1e6
                        print(f"| {op} | {'x'.join(map(str, shape))} | {tps} | {block} | {f:.4f} | "
                              f"{100 * nf * gb / f / COPY_GBPS:.0f}% | {b:.4f} | "
                              f"{100 * nb * gb / b / COPY_GBPS:.0f}% |")
    finally:
        norm.THREADS_PER_SM, norm.CMRNORM_BLOCK, norm.SPATIAL_BLOCK = saved


if __name__ == "__main__":  # python benchmarks/bench_norm.py: the launch-knob sweep
    import cupy

    tune(cupy)
