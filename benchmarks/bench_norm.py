"""Response normalisation kernels: cross-map LRN (cmrnorm, size 5) forward, backward and both on AlexNet's
two LRN inputs (64x55x55x128, 192x27x27x128) against torch.nn.LocalResponseNorm, and same-map (rnorm) and
contrast (cnorm) normalisation, size 5, forward and backward on 64x55x55x128 (no PyTorch twin).

Parameters: AlexNet's LRN, b = a / (k + alpha * sum_{5 maps} a^2)^beta with k=2, alpha=1e-4, beta=0.75, is
ours with min_div=2, size=5, scale=5e-4, pow=0.75 (the parsed scale is divided by size: 5e-4/5 = 1e-4
per square). torch.nn.LocalResponseNorm also divides its alpha by the size, so the twin computing the
same thing is LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) (on NCHW tensors of the same sizes).

Minimum bytes: forward reads x and writes y and denom (3 arrays); backward reads dy, x, y, denom and
writes dx (5 arrays); fwd+bwd 8 arrays. cnorm's backward is two launches (window means into a scratch
array, then the gradient: 8 arrays moved) but is counted at the same 5-array minimum.
"""
from __future__ import annotations

from harness import Case

CMR_SHAPES = [(64, 55, 55, 128), (192, 27, 27, 128)]  # C, H, W, N
SPATIAL_SHAPE = (64, 55, 55, 128)
KW = dict(size=5, scale=5e-4, pow=0.75, min_div=2.0)


def cases(cp, torch):
    from pyconvnet.cuda.ops import norm

    for op, shapes in (("cmrnorm", CMR_SHAPES), ("rnorm", [SPATIAL_SHAPE]), ("cnorm", [SPATIAL_SHAPE])):
        fwd_fn, bwd_fn = getattr(norm, op + "_fwd"), getattr(norm, op + "_bwd")
        for shape in shapes:
            rng = cp.random.default_rng(0)
            x = rng.standard_normal(shape, dtype=cp.float32) * 30
            dy = rng.standard_normal(shape, dtype=cp.float32)
            y, denom = fwd_fn(x, **KW)
            dx = cp.empty_like(x)
            nb = x.nbytes
            label = "x".join(map(str, shape))
            t = _torch_twins(torch, shape) if torch is not None and op == "cmrnorm" else {}

            def fwd(fwd_fn=fwd_fn, x=x, y=y, denom=denom):
                fwd_fn(x, **KW, out=(y, denom))

            def bwd(bwd_fn=bwd_fn, dy=dy, x=x, y=y, denom=denom, dx=dx):
                bwd_fn(dy, x, y, denom, **KW, out=dx)

            def both(fwd=fwd, bwd=bwd):
                fwd()
                bwd()

            name = f"{op} 5"
            twin = "torch: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) NCHW"
            yield Case(name, "fwd", label, fwd, nbytes=3 * nb, torch_run=t.get("fwd"),
                       note="reads x, writes y, denom" + (f"; {twin} forward" if t else ""))
            yield Case(name, "bwd", label, bwd, nbytes=5 * nb, torch_run=t.get("fwd+bwd"),
                       note="reads dy, x, y, denom, writes dx" +
                            ("; 2 launches (window means, then dx)" if op == "cnorm" else "") +
                            (f"; {twin} forward + backward via autograd (its backward alone is not "
                             "callable)" if t else ""))
            if op == "cmrnorm":
                yield Case(name, "fwd+bwd", label, both, nbytes=8 * nb, torch_run=t.get("fwd+bwd"),
                           note=f"{twin} forward + torch.autograd.grad" if t else "")


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

    saved = (norm.THREADS_PER_SM, norm.CMRNORM_BLOCK, norm.SPATIAL_BLOCK)
    print("| op | shape | threads/SM | block | fwd ms | fwd % copy | bwd ms | bwd % copy |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        for op, shapes, knob in (("cmrnorm", CMR_SHAPES, "CMRNORM_BLOCK"), ("rnorm", [SPATIAL_SHAPE], "SPATIAL_BLOCK"),
                                 ("cnorm", [SPATIAL_SHAPE], "SPATIAL_BLOCK")):
            fwd_fn, bwd_fn = getattr(norm, op + "_fwd"), getattr(norm, op + "_bwd")
            for shape in shapes:
                x = cp.random.default_rng(0).standard_normal(shape, dtype=cp.float32) * 30
                y, d = fwd_fn(x, **KW)
                dx = cp.empty_like(x)
                for tps in (256, 512, 1024, 2048):
                    for block in ((64, 128, 256) if knob == "CMRNORM_BLOCK" else (128, 256, 512)):
                        norm.THREADS_PER_SM = tps
                        setattr(norm, knob, block)
                        f = time_ms(cp, lambda: fwd_fn(x, **KW, out=(y, d)), reps=reps)
                        b = time_ms(cp, lambda: bwd_fn(x, x, y, d, **KW, out=dx), reps=reps)
                        gb = x.nbytes / 1e6
                        print(f"| {op} | {'x'.join(map(str, shape))} | {tps} | {block} | {f:.4f} | "
                              f"{100 * 3 * gb / f / COPY_GBPS:.0f}% | {b:.4f} | {100 * 5 * gb / b / COPY_GBPS:.0f}% |")
    finally:
        norm.THREADS_PER_SM, norm.CMRNORM_BLOCK, norm.SPATIAL_BLOCK = saved


if __name__ == "__main__":  # python benchmarks/bench_norm.py: the launch-knob sweep
    import cupy

    tune(cupy)
