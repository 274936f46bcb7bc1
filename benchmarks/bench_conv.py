"""Convolution benchmarks (kernels/conv.cu): forward, backward-data, backward-filter at the issue's layers.

Layers (batch 128, fp32): AlexNet (cuda-convnet2's one-GPU ImageNet net) conv1-conv5, the
convnet-benchmarks layers L1-L5, and the layers-18pct CIFAR net's three convolutions. FLOPs are those of
a direct convolution, 2*N*K*OH*OW*(C/groups)*R*R, for every direction. The PyTorch twin runs cuDNN on
NCHW tensors of the same sizes with TF32 off (F.conv2d and aten.convolution_backward); where our output
size rule (1 + ceil((2p + H - R)/s)) gives one more output than PyTorch's floor, its input is made larger
so that both compute the same output size (noted).

    python benchmarks/bench_gpu.py --only conv        # the table, with cuDNN side by side
    python benchmarks/bench_conv.py --variants        # every applicable kernel variant per layer

The Winograd path (pyconvnet/cuda/ops/winograd.py) serves forward, backward-data and backward-filter
of the stride-1 3x3 / 5x5 layers (the dispatcher picks it for AlexNet conv2-conv5); `--variants` lists it
as the variant "winograd", with the time its model predicts (GEMM at 45 TFLOP/s plus the transforms'
bytes), and as "winograd-l2": the same in chunks of tiles whose V and M (backward-filter: V, D and the
partial sums) fit in L2 (more, smaller GEMMs). Backward-filter also gets "winograd-sS": the reduction over
tiles forced into S splits (the default S comes from `winograd.split_tiles`' model; these rows tune it).
Its TFLOP/s column counts a direct convolution's FLOPs, like every other row.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness import Case

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pyconvnet.cuda.ops import conv, winograd  # noqa: E402

N = 128
# name: (C, H, K, R, pad, stride)
LAYERS = {
    "alexnet conv1": (3, 224, 64, 11, 2, 4),
    "alexnet conv2": (64, 27, 192, 5, 2, 1),
    "alexnet conv3": (192, 13, 384, 3, 1, 1),
    "alexnet conv4": (384, 13, 256, 3, 1, 1),
    "alexnet conv5": (256, 13, 256, 3, 1, 1),
    "convnet-bench L1": (3, 128, 96, 11, 0, 1),
    "convnet-bench L2": (64, 64, 128, 9, 0, 1),
    "convnet-bench L3": (128, 32, 128, 9, 0, 1),
    "convnet-bench L4": (128, 16, 128, 7, 0, 1),
    "convnet-bench L5": (384, 13, 384, 3, 0, 1),
    "18pct conv1": (3, 32, 32, 5, 2, 1),
    "18pct conv2": (32, 16, 32, 5, 2, 1),
    "18pct conv3": (32, 8, 64, 5, 2, 1),
}
# cuda-convnet2 built for sm_90 on the H100 (fwd, bwd-data, bwd-filter ms), from the issue.
CC2_MS = {"alexnet conv1": (0.52, 0.96, 0.87), "alexnet conv2": (1.44, 1.53, 1.77),
          "alexnet conv3": (0.73, 0.83, 0.89), "alexnet conv4": (1.06, 1.00, 1.07),
          "alexnet conv5": (0.72, 0.70, 0.74)}


def _setup(cp, C, H, K, R, pad, st):
    rng = cp.random.default_rng(0)
    OH = conv.conv_out_size(H, R, pad, st)
    x = rng.standard_normal((C, H, H, N), dtype=cp.float32)
    w = rng.standard_normal((C, R, R, K), dtype=cp.float32) * 0.05
    dy = rng.standard_normal((K, OH, OH, N), dtype=cp.float32)
    y = cp.empty((K, OH, OH, N), cp.float32)
    dx = cp.empty_like(x)
    dw = cp.empty_like(w)
    p = conv.Problem(C, H, H, N, K, R, OH, OH, pad, st, 1)
    ws = cp.empty(max(conv.bwd_filter_plan(p).workspace, 1), cp.float32)
    return OH, x, w, dy, y, dx, dw, ws


def _torch(torch, C, H, K, R, pad, st, OH):
    """NCHW tensors and the three cuDNN calls; the input is enlarged when floor sizing would lose a row."""
    Ht = (OH - 1) * st + R - 2 * pad  # the smallest input giving OH outputs under floor sizing
    Ht = max(Ht, H)
    dev = "cuda"
    x = torch.randn(N, C, Ht, Ht, device=dev)
    w = torch.randn(K, C, R, R, device=dev) * 0.05
    dy = torch.randn(N, K, OH, OH, device=dev)
    F = torch.nn.functional
    conv_bwd = torch.ops.aten.convolution_backward

    def fwd():
        F.conv2d(x, w, None, st, pad)

    def bwd(mask):
        return lambda: conv_bwd(dy, x, w, None, [st, st], [pad, pad], [1, 1], False, [0, 0], 1, mask)
    note = f"torch input {Ht}x{Ht} (floor sizing)" if Ht != H else ""
    return fwd, bwd([True, False, False]), bwd([False, True, False]), note


def cases(cp, torch):
    for name, (C, H, K, R, pad, st) in LAYERS.items():
        OH, x, w, dy, y, dx, dw, ws = _setup(cp, C, H, K, R, pad, st)
        flops = 2.0 * N * K * OH * OH * C * R * R
        shape = f"{C}x{H}x{H}x{N} -> {K}x{OH}x{OH} R{R} s{st} p{pad}"
        tf, tbd, tbf, note = _torch(torch, C, H, K, R, pad, st, OH) if torch is not None else (None,) * 3 + ("",)
        cc2 = CC2_MS.get(name)
        runs = (
            ("fwd", lambda x=x, w=w, y=y, pad=pad, st=st: conv.conv_fwd(x, w, padding=pad, stride=st, out=y), tf),
            ("bwd-data", lambda dy=dy, w=w, dx=dx, H=H, pad=pad, st=st:
             conv.conv_bwd_data(dy, w, (H, H), padding=pad, stride=st, out=dx), tbd),
            ("bwd-filter", lambda dy=dy, x=x, dw=dw, R=R, pad=pad, st=st, ws=ws:
             conv.conv_bwd_filter(dy, x, R, padding=pad, stride=st, out=dw, workspace=ws), tbf),
        )
        for i, (direction, run, trun) in enumerate(runs):
            extra = {"cc2 ms": cc2[i]} if cc2 else {}
            yield Case(op=f"conv {name}", direction=direction, shape=shape, run=run, flops=flops, torch_run=trun,
                       note=note, extra=extra)


def _variants(p: conv.Problem):
    """Every fast (direction, variant) whose conditions hold for p (the GEMM tiles are skipped where
    the few-channel kernel applies: they would waste most of their rows)."""
    out = []
    for direction, table in conv.MODES.items():
        for mode, cond in table:
            if not cond(p) or mode == 0 or (out and out[-1][1][0] == "smallc" and out[-1][0] == direction):
                continue
            if mode == "smallc":
                out.append((direction, (mode, None)))
            else:
                out += [(direction, (mode, t)) for t in conv.TILES[(direction, mode)]]
    if not winograd.applicable(p.R, p.stride, p.groups):
        out += [(d, v) for d in ("fwd", "bwd_data", "bwd_filter") for v in ("winograd", "winograd-l2")]
        out += [("bwd_filter", f"winograd-s{S}") for S in BWD_FILTER_SPLITS]
    return out


BWD_FILTER_SPLITS = (1, 2, 4, 8, 16)


L2_CHUNK_BYTES = 32 << 20  # "winograd-l2": tile chunks whose V and M fit in the H100's 50 MB L2


def variants_main(reps: int = 20) -> None:
    import cupy as cp
    from harness import time_ms

    print("| layer | direction | variant | ms | TFLOP/s | chosen | model ms |")
    print("| --- | --- | --- | ---: | ---: | --- | ---: |")
    for name, (C, H, K, R, pad, st) in LAYERS.items():
        OH, x, w, dy, y, dx, dw, ws = _setup(cp, C, H, K, R, pad, st)
        p = conv.Problem(C, H, H, N, K, R, OH, OH, pad, st, 1)
        flops = 2.0 * N * K * OH * OH * C * R * R
        chosen = {"fwd": conv.fwd_plan(p).tvals, "bwd_data": conv.bwd_data_plan(p).tvals,
                  "bwd_filter": conv.bwd_filter_plan(p).tvals}
        for direction, v in _variants(p):
            if isinstance(v, str):
                budget = L2_CHUNK_BYTES if v == "winograd-l2" else winograd.WORKSPACE_BYTES
                ts = None
                if v.startswith("winograd-s"):
                    T = winograd.tiles(OH, OH)[0] * winograd.tiles(OH, OH)[1]
                    ts = -(-T // int(v[len("winograd-s"):]))

                def run(direction=direction, budget=budget, ts=ts):
                    saved, winograd.WORKSPACE_BYTES = winograd.WORKSPACE_BYTES, budget
                    try:
                        if direction == "fwd":
                            conv.conv_fwd(x, w, padding=pad, stride=st, out=y, variant="winograd")
                        elif direction == "bwd_data":
                            conv.conv_bwd_data(dy, w, (H, H), padding=pad, stride=st, out=dx, variant="winograd")
                        else:
                            conv.conv_bwd_filter(dy, x, R, padding=pad, stride=st, out=dw, variant="winograd",
                                                 chunk=ts)
                    finally:
                        winograd.WORKSPACE_BYTES = saved
            elif direction == "fwd":
                def run(v=v):
                    conv.conv_fwd(x, w, padding=pad, stride=st, out=y, variant=v)
            elif direction == "bwd_data":
                def run(v=v):
                    conv.conv_bwd_data(dy, w, (H, H), padding=pad, stride=st, out=dx, variant=v)
            else:
                def run(v=v):
                    conv.conv_bwd_filter(dy, x, R, padding=pad, stride=st, out=dw, workspace=ws, variant=v)
            ms = time_ms(cp, run, warmup=3, reps=reps)
            t = chosen[direction]
            wino = winograd.pays(cp.float32, R, st, 1, C, K)
            model = ""
            if isinstance(v, str):
                pick = wino and v == "winograd"
                if direction == "bwd_filter":
                    e = winograd.expected_bwd_filter_ms(C, K, H, H, N, R, pad)
                    model = f"{e['total_ms']:.3f} (S={e['splits']})"
                else:
                    model = f"{winograd.expected_ms(C, K, H, H, N, R, pad, bwd=direction == 'bwd_data')['total_ms']:.3f}"
            else:
                pick = not wino and ((v[0] == "smallc" and "cg" in t) or
                                     (v[0] == t.get("mode") and v[1] == (t.get("bm"), t.get("bn"))))
            print(f"| {name} | {direction} | {v} | {ms:.4f} | {flops / ms / 1e9:.1f} | {'*' if pick else ''} | "
                  f"{model} |", flush=True)


if __name__ == "__main__":
    if "--variants" in sys.argv:
        variants_main()
    else:
        print(__doc__)
