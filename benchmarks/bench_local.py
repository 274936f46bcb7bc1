"""Locally connected (unshared) layer kernels: forward, backward-data and backward-filter at the sizes of
cuda-convnet's layers-conv-local nets (3x3 filters, padding 1, batch 128).

FLOPs are those of the direct computation, 2*N*K*OH*OW*C*R*R/groups, for each direction; bytes are
each input read once and each output written once (the weights, one bank per position, dominate).
These layers are small (a few MB to 25 MB), so part of each input may stay in the 50 MB L2 across
repetitions. PyTorch has no locally connected layer: its twin here is F.unfold + torch.bmm over the
positions (the unfolded windows made contiguous position-major first; bwd-data: bmm + F.fold;
bwd-filter: unfold + bmm), fp32 with TF32 off.
"""
from __future__ import annotations

from harness import Case

# C, H, W, N, R, K, padding, stride
SHAPES = [(32, 8, 8, 128, 3, 32, 1, 1), (64, 8, 8, 128, 3, 32, 1, 1), (64, 13, 13, 128, 3, 64, 1, 1)]


def _torch_twin(torch, C, H, W, N, R, K, p, s, OH, OW):
    """(fwd, bwd_data, bwd_filter) callables: the same work with unfold/fold and batched matmuls."""
    F = torch.nn.functional
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    P, CRR = OH * OW, C * R * R
    tx = torch.randn(N, C, H, W, device="cuda")
    tw = torch.randn(P, K, CRR, device="cuda")       # W_q^T for the forward
    tw2 = torch.randn(P, CRR, K, device="cuda")      # W_q for the backward
    tdy = torch.randn(P, K, N, device="cuda")

    def cols():  # the windows as (P, CRR, N), contiguous
        return F.unfold(tx, R, padding=p, stride=s).permute(2, 1, 0).contiguous()

    def fwd():
        return torch.bmm(tw, cols())                 # (P, K, N)

    def bwd_data():
        dcols = torch.bmm(tw2, tdy)                  # (P, CRR, N)
        return F.fold(dcols.permute(2, 1, 0), (H, W), R, padding=p, stride=s)

    def bwd_filter():
        return torch.bmm(cols(), tdy.transpose(1, 2))  # (P, CRR, K)
    return fwd, bwd_data, bwd_filter


def cases(cp, torch):
    from pyconvnet.cuda.ops import local
    from pyconvnet.ops.conv import conv_out_size

    for C, H, W, N, R, K, p, s in SHAPES:
        OH, OW = conv_out_size(H, R, p, s), conv_out_size(W, R, p, s)
        rng = cp.random.default_rng(0)
        x = rng.standard_normal((C, H, W, N), dtype=cp.float32)
        w = rng.standard_normal((OH * OW, C, R, R, K), dtype=cp.float32)
        b = rng.standard_normal((K * OH * OW, 1), dtype=cp.float32)
        dy = rng.standard_normal((K, OH, OW, N), dtype=cp.float32)
        y, dx, dw = cp.empty_like(dy), cp.empty_like(x), cp.empty_like(w)
        kw = dict(padding=p, stride=s)
        flops = 2.0 * N * K * OH * OW * C * R * R
        nx, nw, ny, nb = (4.0 * a.size for a in (x, w, dy, b))
        label = f"{C}x{H}x{W}x{N} -> {K}x{OH}x{OW}, {R}x{R} p{p} s{s}"
        twin = _torch_twin(torch, C, H, W, N, R, K, p, s, OH, OW) if torch is not None else (None,) * 3
        note = "torch: unfold+bmm (no native layer)" if torch is not None else ""
        yield Case("local", "fwd", label, lambda x=x, w=w, b=b, y=y, kw=kw: local.local_fwd(x, w, b, **kw, out=y),
                   nbytes=nx + nw + nb + ny, flops=flops, torch_run=twin[0], note=note)
        yield Case("local", "bwd-data", label,
                   lambda dy=dy, w=w, dx=dx, hw=(H, W), kw=kw: local.local_bwd_data(dy, w, hw, **kw, out=dx),
                   nbytes=ny + nw + nx, flops=flops, torch_run=twin[1],
                   note="torch: bmm+fold" if torch is not None else "")
        yield Case("local", "bwd-filter", label,
                   lambda dy=dy, x=x, dw=dw, R=R, kw=kw: local.local_bwd_filter(dy, x, R, **kw, out=dw),
                   nbytes=ny + nx + nw, flops=flops, torch_run=twin[2], note=note)
