"""Softmax (over classes, axis 0 of (F, N)) forward and backward and the fused softmax + logistic-
regression gradient, on 1000x128 (ImageNet classes, batch 128) and 10000x1024, against torch.softmax
over dim 0 and its backward; the logistic-regression cost (one reduction and a copy to the host)."""
from __future__ import annotations

from harness import Case

SHAPES = [(1000, 128), (10000, 1024)]


def cases(cp, torch):
    from pyconvnet.cuda.ops import softmax

    for shape in SHAPES:
        F, N = shape
        rng = cp.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=cp.float32) * 3
        dy = rng.standard_normal(shape, dtype=cp.float32)
        y, dx = cp.empty_like(x), cp.empty_like(x)
        softmax.softmax_fwd(x, out=y)
        labels = cp.asarray(rng.integers(0, F, N), dtype=cp.int64)
        m = x.nbytes
        label = f"{F}x{N}"
        how = {k: softmax.softmax_plan(F, N, 4, k)[0] for k in ("fwd", "bwd")}
        waves = {k: len(softmax.softmax_plan(F, N, 4, k)[1][4]) if how[k] == "split" else 0 for k in how}
        plan = {k: "1 launch (column kernel)" if how[k] == "column" else
                f"{2 * waves[k]} launches (split: {waves[k]} wave(s) of stats + apply)" for k in how}
        t = {}
        if torch is not None:
            tx = torch.randn(shape, device="cuda") * 3
            tdy = torch.randn(shape, device="cuda")
            ty = torch.softmax(tx, dim=0)
            t = dict(fwd=lambda: torch.softmax(tx, dim=0),
                     bwd=lambda: torch._softmax_backward_data(tdy, ty, 0, torch.float32))
        yield Case("softmax", "fwd", label, lambda: softmax.softmax_fwd(x, out=y), nbytes=2 * m,
                   torch_run=t.get("fwd"), note=f"reads x, writes y; {plan['fwd']}; torch: torch.softmax(x, dim=0)")
        yield Case("softmax", "bwd", label, lambda: softmax.softmax_bwd(dy, y, out=dx), nbytes=3 * m,
                   torch_run=t.get("bwd"),
                   note=f"reads dy, y, writes dx; {plan['bwd']}; torch: aten._softmax_backward_data")
        yield Case("softmax+logreg", "bwd", label, lambda: softmax.softmax_logreg_bwd(y, labels, out=dx),
                   nbytes=2 * m + labels.nbytes, note="reads probs and labels, writes dx")
        yield Case("logreg_bwd", "bwd", label, lambda: softmax.logreg_bwd(y, labels, out=dx),
                   nbytes=m + labels.nbytes + 4 * N, note="writes dprobs, reads labels and N probs")
        yield Case("logreg_cost", "fwd", label, lambda: softmax.logreg_cost(y, labels, topk=5),
                   nbytes=m + labels.nbytes, note="top-5; includes the copy of the partials to the host (syncs)")
