"""pyconvnet.cuda.ops.conv (kernels/conv.cu) against the NumPy reference pyconvnet.ops.conv.

Without a GPU: the variant table and launch plans, the argument checks, and every kernel instance run
on the CPU through tests/cuda_host.py at small shapes (partial tiles, stride > 1, padding, overhanging
windows, groups, residue classes without taps, split reductions) against the reference.
On a GPU (marked ``gpu``), through both launch paths: forward (no, shared and untied bias), backward-
data, backward-filter and bias_bwd over batch 1, 3, 127, 128, 129, odd channel and filter counts,
strides 1/2/4, padding, groups 1/2/4, filter sizes 1/3/5/11, the benchmark layers' geometries (at a
smaller batch that keeps their fast paths), every variant forced once, misaligned views, float64;
outputs NaN-poisoned; ||out - ref|| / ||ref|| <= 1e-4 (float32), 1e-10 (float64).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.loader import entry_points
from pyconvnet.cuda.ops import conv as dev
from pyconvnet.ops import conv as ref

from gpu_util import BATCHES, PATHS, check_close, poisoned, use_path

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "kernels" / "conv.cu"
LIM = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
SMALL = DeviceLimits(sm_count=2, max_block=1024, max_grid_x=2**31 - 1)  # emulator: few blocks
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def _problem(C, H, N, K, R, pad, stride, groups=1, W=None, itemsize=4, aligned=True):
    W = H if W is None else W
    OH, OW = ref.conv_out_size(H, R, pad, stride), ref.conv_out_size(W, R, pad, stride)
    return dev.Problem(C, H, W, N, K, R, OH, OW, pad, stride, groups, itemsize, aligned)


# --- tables, plans, bindings ---------------------------------------------------------------------------

def test_bindings_register_exactly_the_entry_points():
    names = entry_points(KERNEL.read_text())
    text = (ROOT / "bindings" / "conv.cu").read_text()
    assert sorted(n.replace(" ", "") for n in __import__("re").findall(r"PYCONVNET_KERNEL\((.*)\)", text)) == \
        sorted(names)


def test_every_plan_names_an_entry_point():
    names = set(entry_points(KERNEL.read_text()))
    probs = [_problem(3, 224, 128, 64, 11, 2, 4), _problem(64, 27, 128, 192, 5, 2, 1),
             _problem(192, 13, 128, 384, 3, 1, 1), _problem(5, 9, 3, 7, 3, 1, 2),
             _problem(3, 32, 128, 32, 5, 2, 1), _problem(2, 9, 4, 6, 5, 2, 1, groups=2),
             _problem(6, 9, 3, 8, 3, 1, 2, itemsize=8)]
    for p in probs:
        dt = np.float32 if p.itemsize == 4 else np.float64
        for plan in (dev.fwd_plan(p, 0, LIM), dev.bwd_data_plan(p, LIM), dev.bwd_filter_plan(p, LIM)):
            assert plan.name(dt) in names, (p, plan)
            assert 1 <= plan.block <= 1024 and plan.grid >= 1
    for mode_tiles in dev.TILES.items():
        (direction, mode), tiles = mode_tiles
        kern = {"fwd": dev.FWD, "bwd_data": dev.BWD_DATA, "bwd_filter": dev.BWD_FILTER}[direction]
        for bm, bn in tiles:
            assert kern.instance(np.float32, bm=bm, bn=bn, mode=mode) in names
    for cg, nr in ((3, 3), (3, 11), (4, 11)):
        assert dev.BWD_DATA_SMALLC.instance(np.float32, cg=cg, nr=nr) in names


def test_variant_table_choices():
    conv1 = _problem(3, 224, 128, 64, 11, 2, 4)
    assert dev.fwd_plan(conv1, 0, LIM).tvals == dict(bm=64, bn=128, mode=1)
    assert dev.bwd_data_plan(conv1, LIM).name(np.float32) == "conv_bwd_data_smallc<float,3,3>"
    assert dev.bwd_filter_plan(conv1, LIM).tvals["mode"] == 2
    conv3 = _problem(192, 13, 128, 384, 3, 1, 1)
    assert dev.fwd_plan(conv3, 0, LIM).tvals["mode"] == 2
    assert dev.bwd_data_plan(conv3, LIM).tvals["mode"] == 2
    L1 = _problem(3, 128, 128, 96, 11, 0, 1)
    assert dev.bwd_data_plan(L1, LIM).name(np.float32) == "conv_bwd_data_smallc<float,3,11>"
    # the general path: odd batch, misaligned, float64, few filters per group
    assert dev.fwd_plan(_problem(64, 13, 127, 64, 3, 1, 1), 0, LIM).tvals["mode"] == 0
    assert dev.fwd_plan(_problem(64, 13, 128, 64, 3, 1, 1, aligned=False), 0, LIM).tvals["mode"] == 0
    assert dev.bwd_data_plan(_problem(64, 13, 128, 12, 3, 1, 1), LIM).tvals["mode"] == 0
    assert dev.bwd_filter_plan(_problem(64, 13, 4, 64, 3, 1, 1), LIM).tvals["mode"] == 0  # N % 8 != 0
    d = dev.fwd_plan(_problem(64, 13, 128, 64, 3, 1, 1, itemsize=8), 0, LIM)
    assert d.name(np.float64) == "conv_fwd<double,32,32,0>" and d.block == 64
    # few filters: the 32-row tile, not a mostly empty 128-row one
    assert dev.fwd_plan(_problem(32, 16, 128, 32, 5, 2, 1), 0, LIM).tvals["bm"] < 128


def test_plans_cover_the_outputs():
    p = _problem(64, 27, 128, 192, 5, 2, 1)
    f = dev.fwd_plan(p, 0, LIM)
    bm, bn = f.tvals["bm"], f.tvals["bn"]
    assert f.grid == -(-p.Kg // bm) * p.groups * -(-(p.OH * p.OW * p.N) // bn) and f.block == bm * bn // 64
    b = dev.bwd_filter_plan(p, LIM)
    chunk = b.extra[0]
    assert chunk % 8 == 0 and b.splits == -(-(p.OH * p.OW * p.N) // chunk) > 1
    assert b.workspace == b.splits * p.Cg * p.R * p.R * p.K
    s = dev.bwd_data_plan(_problem(3, 224, 128, 64, 11, 2, 4), LIM)
    assert s.shmem == s.extra[0] * 3 * 3 * 16 and s.block == 128
    assert dev.bias_bwd_plan(64, 56 * 56 * 128, LIM).splits > 1
    assert dev.bias_bwd_plan(64 * 56 * 56, 128, LIM).splits == 1


def test_argument_checks_without_a_gpu():
    x, w = np.zeros((4, 6, 6, 2), np.float32), np.zeros((2, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="conv_fwd: x must be a CuPy array .* got numpy.ndarray"):
        dev.conv_fwd(x, w, groups=2)
    with pytest.raises(ValueError, match="conv_fwd: stride must be >= 1, got 0"):
        dev.conv_fwd(x, w, stride=0)
    with pytest.raises(ValueError, match="conv_bwd_data: dy must be a CuPy array"):
        dev.conv_bwd_data(x, w, (6, 6))
    with pytest.raises(ValueError, match=r"conv_bwd_data: img_size must be a pair \(H, W\), got 6"):
        dev.conv_bwd_data(x, w, 6)
    with pytest.raises(ValueError, match="conv_bwd_filter: dy must be a CuPy array"):
        dev.conv_bwd_filter(x, x, 3)
    with pytest.raises(ValueError, match="bias_bwd: dy must be a CuPy array"):
        dev.bias_bwd(x, True)
    huge = dev.Problem(1, 2**16, 2**16, 1, 1, 1, 2**16, 2**16, 0, 1, 1)
    with pytest.raises(ValueError, match="conv_fwd: too large for the CUDA kernels"):
        dev._check_sizes("conv_fwd", huge)


# --- the kernel code on the host ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def host():
    from cuda_host import HostModule
    return HostModule(KERNEL)


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _emu_fwd(host, x, w, b, pad, stride, groups, variant=None):
    C, H, W, N = x.shape
    Cg, R, _, K = w.shape
    p = _problem(C, H, N, K, R, pad, stride, groups, W=W, itemsize=x.itemsize)
    bias_mode = 0 if b is None else (1 if b.shape[0] == K else 2)
    plan = dev.fwd_plan(p, bias_mode, SMALL, variant)
    y = np.full((K, p.OH, p.OW, N), np.nan, x.dtype)
    host.launch(plan.name(x.dtype), plan.grid, plan.block, (x, w, w if b is None else b, y, *p.args(), *plan.extra),
                plan.kernel.args.replace("f", "f" if x.dtype == np.float32 else "d"))
    return y, plan


def _emu_bwd_data(host, dy, w, H, W, pad, stride, groups, variant=None, kc=None):
    K, OH, OW, N = dy.shape
    Cg, R = w.shape[0], w.shape[1]
    p = _problem(Cg * groups, H, N, K, R, pad, stride, groups, W=W, itemsize=dy.itemsize)
    plan = dev.bwd_data_plan(p, SMALL, variant)
    if kc is not None:
        nrm = -(-R // stride)
        plan = dataclasses.replace(plan, extra=(kc,), shmem=kc * nrm * nrm * 16)
    dx = np.full((Cg * groups, H, W, N), np.nan, dy.dtype)
    host.launch(plan.name(dy.dtype), plan.grid, plan.block, (dy, w, dx, *p.args(), *plan.extra), plan.kernel.args,
                shmem=plan.shmem)
    return dx, plan


def _emu_bwd_filter(host, dy, x, R, pad, stride, groups, variant=None, chunk=None):
    C, H, W, N = x.shape
    K = dy.shape[0]
    p = _problem(C, H, N, K, R, pad, stride, groups, W=W, itemsize=x.itemsize)
    plan = dev.bwd_filter_plan(p, SMALL, variant, chunk)
    dw = np.full((C // groups, R, R, K), np.nan, x.dtype)
    dst = dw if plan.splits == 1 else np.full(plan.workspace, np.nan, x.dtype)
    host.launch(plan.name(x.dtype), plan.grid, plan.block, (x, dy, dst, *p.args(), *plan.extra), plan.kernel.args)
    if plan.splits > 1:
        s = dev.sum_splits_plan(dw.size, SMALL)
        host.launch(s.name(x.dtype), s.grid, s.block, (dst, dw, dw.size, plan.splits), s.kernel.args)
    return dw, plan


# (C, H, W, N, K, R, pad, stride, groups, variant, bias) for the forward
FWD_EMU = [
    (16, 5, 5, 8, 40, 3, 1, 2, 2, (2, (128, 128)), "shared"),   # Cg 8, Kg 20: partial filter tile
    (16, 5, 6, 8, 40, 3, 1, 2, 2, (2, (64, 128)), "untied"),
    (8, 4, 4, 8, 12, 3, 2, 1, 1, (2, (32, 128)), None),          # padding > filter - 1
    (3, 9, 9, 4, 8, 5, 2, 3, 1, (1, (64, 128)), "untied"),       # conv1-like: MODE 1, overhanging window
    (5, 6, 7, 3, 7, 3, 1, 2, 1, (0, (64, 128)), "shared"),       # odd everything: MODE 0
    (6, 5, 5, 1, 9, 2, 0, 1, 3, (0, (64, 128)), "untied"),       # batch 1, groups 3, even filter
    (1, 3, 3, 2, 2, 5, 0, 3, 1, None, None),                     # filter larger than the image
]


@pytest.mark.parametrize("case", FWD_EMU, ids=lambda c: f"C{c[0]}N{c[3]}K{c[4]}R{c[5]}s{c[7]}g{c[8]}v{c[9]}")
def test_fwd_kernel_on_the_host(host, case):
    C, H, W, N, K, R, pad, st, g, variant, bias = case
    rng = np.random.default_rng(1)
    x, w = _rand(rng, (C, H, W, N), np.float32), _rand(rng, (C // g, R, R, K), np.float32)
    OH, OW = ref.conv_out_size(H, R, pad, st), ref.conv_out_size(W, R, pad, st)
    b = None if bias is None else _rand(rng, (K, 1) if bias == "shared" else (K * OH * OW, 1), np.float32)
    y, plan = _emu_fwd(host, x, w, b, pad, st, g, variant)
    if variant is not None:
        assert (plan.tvals["mode"], (plan.tvals["bm"], plan.tvals["bn"])) == variant
    check_close(y, ref.conv_fwd(x, w, b, padding=pad, stride=st, groups=g), 1e-5, f"host fwd {case}")


def test_fwd_kernel_on_the_host_float64(host):
    rng = np.random.default_rng(2)
    x, w = _rand(rng, (4, 5, 5, 3), np.float64), _rand(rng, (2, 3, 3, 6), np.float64)
    b = _rand(rng, (6, 1), np.float64)
    y, plan = _emu_fwd(host, x, w, b, 1, 2, 2)
    assert plan.name(np.float64) == "conv_fwd<double,32,32,0>"
    check_close(y, ref.conv_fwd(x, w, b, padding=1, stride=2, groups=2), 1e-12, "host fwd float64")


# (C, H, W, N, K, R, pad, stride, groups, variant, kc) for backward-data
BWD_DATA_EMU = [
    (24, 7, 7, 8, 32, 3, 1, 2, 2, (2, (128, 128)), None),   # residue classes, partial channel tile
    (24, 6, 5, 8, 16, 3, 1, 1, 1, (2, (64, 128)), None),
    (12, 5, 5, 4, 16, 2, 0, 1, 2, (2, (32, 128)), None),
    (3, 13, 13, 8, 10, 11, 2, 4, 1, ("smallc", None), 3),  # conv1-like, filters staged in rounds of 3
    (2, 7, 6, 4, 6, 5, 2, 1, 2, ("smallc", None), None),    # Cg 1 in the 4-channel kernel, nr = 5
    (4, 9, 9, 8, 5, 3, 1, 2, 1, ("smallc", None), 2),
    (5, 7, 6, 3, 7, 3, 1, 2, 1, (0, (64, 128)), None),      # MODE 0
    (3, 6, 6, 3, 5, 1, 0, 2, 1, (0, (64, 128)), None),      # R < stride: pixels no tap covers get 0
    (6, 5, 5, 1, 9, 3, 2, 2, 3, (0, (64, 128)), None),
]


@pytest.mark.parametrize("case", BWD_DATA_EMU, ids=lambda c: f"C{c[0]}N{c[3]}K{c[4]}R{c[5]}s{c[7]}g{c[8]}v{c[9]}")
def test_bwd_data_kernel_on_the_host(host, case):
    C, H, W, N, K, R, pad, st, g, variant, kc = case
    rng = np.random.default_rng(3)
    OH, OW = ref.conv_out_size(H, R, pad, st), ref.conv_out_size(W, R, pad, st)
    dy, w = _rand(rng, (K, OH, OW, N), np.float32), _rand(rng, (C // g, R, R, K), np.float32)
    dx, plan = _emu_bwd_data(host, dy, w, H, W, pad, st, g, variant, kc)
    want = ref.conv_bwd_data(dy, w, (H, W), padding=pad, stride=st, groups=g)
    check_close(dx, want, 1e-5, f"host bwd_data {case}")


def test_bwd_data_kernel_on_the_host_float64(host):
    rng = np.random.default_rng(4)
    dy, w = _rand(rng, (6, 3, 3, 3), np.float64), _rand(rng, (2, 3, 3, 6), np.float64)
    dx, plan = _emu_bwd_data(host, dy, w, 5, 5, 1, 2, 2)
    assert plan.name(np.float64) == "conv_bwd_data<double,32,32,0>"
    check_close(dx, ref.conv_bwd_data(dy, w, (5, 5), padding=1, stride=2, groups=2), 1e-12, "host bwd_data f64")


# (C, H, W, N, K, R, pad, stride, groups, variant, chunk) for backward-filter
BWD_FILTER_EMU = [
    (8, 5, 5, 8, 40, 3, 1, 2, 2, (2, (128, 128)), 48),   # 3 splits of 48 rows (6 pixels x 8 images)
    (8, 5, 6, 8, 40, 3, 1, 2, 2, (2, (128, 64)), None),
    (16, 6, 6, 8, 12, 3, 1, 1, 1, (2, (128, 32)), 64),   # Cg*R*R = 144: two row tiles
    (3, 9, 9, 8, 8, 5, 2, 3, 1, (2, (128, 32)), None),   # conv1-like
    (5, 7, 6, 3, 7, 3, 1, 2, 1, (0, (64, 64)), 16),      # MODE 0, splits inside pixels
    (6, 5, 5, 1, 9, 2, 0, 1, 3, (0, (64, 64)), None),
]


@pytest.mark.parametrize("case", BWD_FILTER_EMU, ids=lambda c: f"C{c[0]}N{c[3]}K{c[4]}R{c[5]}s{c[7]}g{c[8]}v{c[9]}")
def test_bwd_filter_kernel_on_the_host(host, case):
    C, H, W, N, K, R, pad, st, g, variant, chunk = case
    rng = np.random.default_rng(5)
    OH, OW = ref.conv_out_size(H, R, pad, st), ref.conv_out_size(W, R, pad, st)
    x, dy = _rand(rng, (C, H, W, N), np.float32), _rand(rng, (K, OH, OW, N), np.float32)
    dw, plan = _emu_bwd_filter(host, dy, x, R, pad, st, g, variant, chunk)
    if chunk is not None:
        assert plan.splits == -(-(OH * OW * N) // chunk) > 1
    want = ref.conv_bwd_filter(dy, x, R, padding=pad, stride=st, groups=g)
    check_close(dw, want, 1e-5, f"host bwd_filter {case}")


def test_bwd_filter_kernel_on_the_host_float64(host):
    rng = np.random.default_rng(6)
    x, dy = _rand(rng, (4, 5, 5, 3), np.float64), _rand(rng, (6, 3, 3, 3), np.float64)
    dw, plan = _emu_bwd_filter(host, dy, x, 3, 1, 2, 2, chunk=8)
    assert plan.name(np.float64) == "conv_bwd_filter<double,32,32,0>" and plan.splits > 1
    check_close(dw, ref.conv_bwd_filter(dy, x, 3, padding=1, stride=2, groups=2), 1e-12, "host bwd_filter f64")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,shared", [((3, 10, 10, 100), True), ((3, 4, 5, 7), False), ((5, 3), True),
                                          ((4, 2, 2, 12), True)])
def test_bias_bwd_kernel_on_the_host(host, shape, shared, dtype):
    rng = np.random.default_rng(7)
    dy = _rand(rng, shape, dtype)
    rows = shape[0] if (shared and len(shape) == 4) else int(np.prod(shape[:-1]))
    L = dy.size // rows
    plan = dev.bias_bwd_plan(rows, L, SMALL)
    if shape == (3, 10, 10, 100):
        assert plan.splits > 1
    db = np.full((rows, 1), np.nan, dtype)
    dst = db if plan.splits == 1 else np.full(plan.workspace, np.nan, dtype)
    host.launch(plan.name(dtype), plan.grid, plan.block, (dy, dst, rows, L, *plan.extra), plan.kernel.args)
    if plan.splits > 1:
        s = dev.sum_splits_plan(rows, SMALL)
        host.launch(s.name(dtype), s.grid, s.block, (dst, db, rows, plan.splits), s.kernel.args)
    check_close(db, ref.bias_bwd(dy, shared), 1e-5 if dtype == np.float32 else 1e-12, f"host bias {shape}")


# --- on the GPU --------------------------------------------------------------------------------------

# (C, H, W, K, R, pad, stride, groups): odd counts, strides 1/2/4, padding, overhang, groups 1/2/4,
# filter sizes 1/3/5/11; every one runs at each of DESIGN.md's batch sizes.
GRID = [
    (3, 11, 11, 5, 3, 1, 1, 1),
    (17, 9, 8, 17, 3, 1, 2, 1),
    (5, 12, 12, 64, 5, 2, 4, 1),
    (64, 7, 7, 64, 3, 1, 1, 1),
    (1, 15, 15, 3, 11, 2, 4, 1),
    (64, 6, 6, 128, 1, 0, 1, 2),
    (68, 5, 5, 64, 3, 1, 2, 4),
    (3, 13, 13, 64, 5, 0, 2, 1),
    (32, 8, 8, 40, 5, 2, 1, 2),
]
# The benchmark layers (C, H, K, R, pad, stride), at batch 16 (N % 8 == 0 keeps their fast paths).
LAYERS = {
    "alexnet conv1": (3, 224, 64, 11, 2, 4), "alexnet conv2": (64, 27, 192, 5, 2, 1),
    "alexnet conv3": (192, 13, 384, 3, 1, 1), "alexnet conv4": (384, 13, 256, 3, 1, 1),
    "alexnet conv5": (256, 13, 256, 3, 1, 1), "L1": (3, 128, 96, 11, 0, 1), "L2": (64, 64, 128, 9, 0, 1),
    "L3": (128, 32, 128, 9, 0, 1), "L4": (128, 16, 128, 7, 0, 1), "L5": (384, 13, 384, 3, 0, 1),
    "18pct conv1": (3, 32, 32, 5, 2, 1), "18pct conv2": (32, 16, 32, 5, 2, 1), "18pct conv3": (32, 8, 64, 5, 2, 1),
}


def _check_all(cp, C, H, W, N, K, R, pad, st, g, dtype, what, rng, bias="shared"):
    """Every op of one geometry against the reference, outputs poisoned."""
    tol = TOL[np.dtype(dtype)]
    x, w = _rand(rng, (C, H, W, N), dtype), _rand(rng, (C // g, R, R, K), dtype)
    OH, OW = ref.conv_out_size(H, R, pad, st), ref.conv_out_size(W, R, pad, st)
    b = {"shared": _rand(rng, (K, 1), dtype), "untied": _rand(rng, (K * OH * OW, 1), dtype), None: None}[bias]
    dy = _rand(rng, (K, OH, OW, N), dtype)
    gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    kw = dict(padding=pad, stride=st, groups=g)
    y = dev.conv_fwd(gx, gw, None if b is None else cp.asarray(b), out=poisoned((K, OH, OW, N), dtype), **kw)
    check_close(y.get(), ref.conv_fwd(x, w, b, **kw), tol, f"{what} fwd")
    dx = dev.conv_bwd_data(gdy, gw, (H, W), out=poisoned((C, H, W, N), dtype), **kw)
    check_close(dx.get(), ref.conv_bwd_data(dy, w, (H, W), **kw), tol, f"{what} bwd_data")
    dw = dev.conv_bwd_filter(gdy, gx, R, out=poisoned(w.shape, dtype), **kw)
    check_close(dw.get(), ref.conv_bwd_filter(dy, x, R, **kw), tol, f"{what} bwd_filter")
    for shared in (True, False):
        rows = K if shared else K * OH * OW
        db = dev.bias_bwd(gdy, shared, out=poisoned((rows, 1), dtype))
        check_close(db.get(), ref.bias_bwd(dy, shared), tol, f"{what} bias_bwd shared={shared}")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", GRID, ids=lambda c: "C{}H{}W{}K{}R{}p{}s{}g{}".format(*c))
def test_conv_matches_reference(path, case):
    import cupy as cp

    C, H, W, K, R, pad, st, g = case
    rng = np.random.default_rng(10)
    with use_path(path):
        for i, N in enumerate(BATCHES):
            _check_all(cp, C, H, W, N, K, R, pad, st, g, np.float32, f"{path} {case} N={N}", rng,
                       bias=("shared", "untied", None)[i % 3])


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_conv_benchmark_layers(path):
    import cupy as cp

    rng = np.random.default_rng(11)
    with use_path(path):
        for name, (C, H, K, R, pad, st) in LAYERS.items():
            _check_all(cp, C, H, H, 16, K, R, pad, st, 1, np.float32, f"{path} {name}", rng)


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_conv_every_variant(path):
    """Each kernel instance forced once on a geometry that meets its conditions."""
    import cupy as cp

    rng = np.random.default_rng(12)
    C, H, N, K, R, pad, st, g = 16, 9, 8, 48, 3, 1, 2, 2
    x, w = _rand(rng, (C, H, H, N), np.float32), _rand(rng, (C // g, R, R, K), np.float32)
    OH = ref.conv_out_size(H, R, pad, st)
    dy = _rand(rng, (K, OH, OH, N), np.float32)
    kw = dict(padding=pad, stride=st, groups=g)
    gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    y_ref, dx_ref, dw_ref = (ref.conv_fwd(x, w, **kw), ref.conv_bwd_data(dy, w, (H, H), **kw),
                             ref.conv_bwd_filter(dy, x, R, **kw))
    with use_path(path):
        for (direction, mode), tiles in dev.TILES.items():
            for tile in tiles:
                v = (mode, tile)
                if direction == "fwd":
                    got, want = dev.conv_fwd(gx, gw, out=poisoned(y_ref.shape), variant=v, **kw), y_ref
                elif direction == "bwd_data":
                    got, want = dev.conv_bwd_data(gdy, gw, (H, H), out=poisoned(dx_ref.shape), variant=v, **kw), dx_ref
                else:
                    got, want = dev.conv_bwd_filter(gdy, gx, R, out=poisoned(dw_ref.shape), variant=v, chunk=64,
                                                    **kw), dw_ref
                check_close(got.get(), want, 1e-4, f"{path} {direction} {v}")
        for Cs in (1, 2, 3, 4):  # the few-channel kernel, both NRMAX instances
            for R2, st2, pad2 in ((11, 4, 2), (5, 1, 2)):
                ws = _rand(rng, (Cs, R2, R2, 24), np.float32)
                OH2 = ref.conv_out_size(17, R2, pad2, st2)
                dys = _rand(rng, (24, OH2, OH2, 8), np.float32)
                got = dev.conv_bwd_data(cp.asarray(dys), cp.asarray(ws), (17, 17), padding=pad2, stride=st2,
                                        out=poisoned((Cs, 17, 17, 8)), variant=("smallc", None))
                check_close(got.get(), ref.conv_bwd_data(dys, ws, (17, 17), padding=pad2, stride=st2), 1e-4,
                            f"{path} smallc C={Cs} R={R2}")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_conv_float64_and_misaligned(path):
    import cupy as cp

    rng = np.random.default_rng(13)
    with use_path(path):
        _check_all(cp, 6, 7, 7, 5, 8, 3, 1, 2, 2, np.float64, f"{path} float64", rng)
        C, H, N, K, R = 16, 6, 8, 32, 3
        x, w = _rand(rng, (C, H, H, N), np.float32), _rand(rng, (C, R, R, K), np.float32)
        buf = cp.empty(x.size + 1, cp.float32)
        gx = buf[1:].reshape(x.shape)  # 4 bytes past an aligned address: the general path
        gx[...] = cp.asarray(x)
        assert gx.data.ptr % 16 == 4
        check_close(dev.conv_fwd(gx, cp.asarray(w), padding=1).get(), ref.conv_fwd(x, w, padding=1), 1e-4,
                    f"{path} misaligned fwd")
        dy = _rand(rng, (K, H, H, N), np.float32)
        check_close(dev.conv_bwd_filter(cp.asarray(dy), gx, R, padding=1).get(),
                    ref.conv_bwd_filter(dy, x, R, padding=1), 1e-4, f"{path} misaligned bwd_filter")
        ws = cp.empty(10**6 + 1, cp.float32)[1:]  # a misaligned caller workspace
        check_close(dev.conv_bwd_filter(cp.asarray(dy), cp.asarray(x), R, padding=1, workspace=ws).get(),
                    ref.conv_bwd_filter(dy, x, R, padding=1), 1e-4, f"{path} misaligned workspace")
        y = dev.conv_fwd(cp.asarray(x), cp.asarray(w), padding=1)  # a new array without out=
        assert y.dtype == cp.float32 and y.shape == (K, H, H, N)


@pytest.mark.gpu
def test_conv_argument_checks_on_the_gpu():
    import cupy as cp

    x, w = cp.zeros((4, 6, 6, 2), cp.float32), cp.zeros((2, 3, 3, 4), cp.float32)
    with pytest.raises(ValueError, match=r"conv_fwd: channels 3 of x \(3, 6, 6, 2\) are not divisible by groups=2"):
        dev.conv_fwd(x[:3].copy(), w, groups=2)
    with pytest.raises(ValueError, match="conv_fwd: inputs must share one dtype, got x=float32, w=float64"):
        dev.conv_fwd(x, w.astype(cp.float64), groups=2)
    with pytest.raises(ValueError, match="conv_fwd: x must be C-contiguous"):
        dev.conv_fwd(x[:, :, ::2], w, groups=2)
    with pytest.raises(ValueError, match=r"conv_fwd: b must have shape \(4, 1\) or \(64, 1\)"):
        dev.conv_fwd(x, w, cp.zeros((5, 1), cp.float32), groups=2)
    with pytest.raises(ValueError, match=r"conv_fwd: out must have shape \(4, 4, 4, 2\)"):
        dev.conv_fwd(x, w, groups=2, out=cp.zeros((4, 4, 4, 3), cp.float32))
    with pytest.raises(ValueError, match="conv_fwd: out must be a CuPy array"):
        dev.conv_fwd(x, w, groups=2, out=np.zeros((4, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="conv_fwd: inputs must share one dtype, got out=float64"):
        dev.conv_fwd(x, w, groups=2, out=cp.zeros((4, 4, 4, 2), cp.float64))
    dy = cp.zeros((4, 4, 4, 2), cp.float32)
    with pytest.raises(ValueError, match=r"conv_bwd_data: dy must have shape \(4, 6, 6, 2\)"):
        dev.conv_bwd_data(dy, w, (6, 6), padding=1, groups=2)
    with pytest.raises(ValueError, match=r"conv_bwd_filter: dy must have shape \(4, 3, 3, 2\) for x \(4, 6, 6, 2\)"):
        dev.conv_bwd_filter(dy, x, 3, stride=2, groups=2)
    big = cp.zeros((64, 40, 40, 128), cp.float32)
    with pytest.raises(ValueError, match="conv_bwd_filter: workspace must be a flat float32 array of at least"):
        dev.conv_bwd_filter(cp.zeros((64, 40, 40, 128), cp.float32), big, 1, workspace=cp.zeros(8, cp.float32))
    with pytest.raises(ValueError, match=r"bias_bwd: dy must be \(F, N\) or \(K, OH, OW, N\)"):
        dev.bias_bwd(cp.zeros((2, 3, 4), cp.float32), True)
    with pytest.raises(ValueError, match="bias_bwd: shared must be a bool, got 1"):
        dev.bias_bwd(dy, 1)
