"""Convolution on the GPU (kernels/conv.cu, cuda-convnet's filterActs / imgActs / weightActs) through
either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.conv`` (layouts, output
sizes, groups and bias semantics are documented there), on C-contiguous float32/float64 CuPy arrays,
with one extra keyword ``out``: a C-contiguous CuPy array of the result's shape and dtype to write into
(it must not overlap the inputs); by default a new array is returned. ``variant`` (and ``chunk`` for
backward-filter) force a kernel variant, for tests and benchmarks: (mode, (BM, BN)) or ("smallc", None),
whose conditions (`MODES`) the caller must respect, or ``"winograd"`` for any of the three
(`pyconvnet.cuda.ops.winograd`: stride 1, groups 1, R 3 or 5, no or shared bias; float32 or float64).
With ``variant=None`` they take the Winograd path when ``winograd.pays`` (float32, C and K >= 64,
no TF32 risk, outside CUDA-graph captures), else the direct kernels. ``conv_bwd_filter`` also takes
``workspace``: a flat C-contiguous CuPy array of dw's dtype for the split-reduction partial sums, of at
least ``plan.workspace`` elements (see `bwd_filter_plan`); by default it comes from CuPy's memory pool.

Every launch is described by a `Plan` from one function per kernel (``fwd_plan``, ``bwd_data_plan``,
``bwd_filter_plan``, ``bias_bwd_plan``), used by both launch paths. The kernel variant comes from one
table, `MODES`: the first row whose condition holds picks the MODE (2: 16-byte loads and a block-uniform
walk over the reduction; 1: 16-byte loads with per-row index decoding; 0: scalar, any shape; smallc:
the few-channel backward-data kernel), then `_pick_tile` chooses the tile among that mode's `TILES` by
a cost model (blocks per wave on the device, relative tile efficiency). float64 always takes MODE 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ops import conv as ref
from ...ops._check import check_array, fail
from ...ops.conv import conv_out_size  # noqa: F401  (the same function as the reference)
from ..launch import DeviceLimits, Kernel, check_device_array, device_limits, grid_stride_config, launch
from . import winograd

_GEOM = "i" * 11  # C, H, W, N, K, R, OH, OW, pad, stride, groups
FWD = Kernel("conv", "conv_fwd", "pppp" + _GEOM + "i", template="{T}, {bm}, {bn}, {mode}")
BWD_DATA = Kernel("conv", "conv_bwd_data", "ppp" + _GEOM, template="{T}, {bm}, {bn}, {mode}")
BWD_DATA_SMALLC = Kernel("conv", "conv_bwd_data_smallc", "ppp" + _GEOM + "i", template="{T}, {cg}, {nr}")
BWD_FILTER = Kernel("conv", "conv_bwd_filter", "ppp" + _GEOM + "i", template="{T}, {bm}, {bn}, {mode}")
SUM_SPLITS = Kernel("conv", "conv_sum_splits", "ppli")
BIAS_BWD = Kernel("conv", "bias_bwd", "ppllli")

INT_MAX = 2**31 - 1
_MARGIN = 1 << 16  # tile overrun past the ends of the index ranges the kernels walk in 32-bit

# Fast tiles (BM, BN) per direction and MODE: (relative efficiency, resident blocks per SM). All fast
# tiles run 512 threads' worth of 8x8 register blocks per SM (<= 128 registers per thread).
TILES = {
    ("fwd", 2): {(128, 128): (1.0, 2), (64, 128): (0.9, 4), (32, 128): (0.75, 8)},
    ("fwd", 1): {(64, 128): (0.9, 4)},
    ("fwd", 0): {(64, 128): (1.0, 1)},
    ("bwd_data", 2): {(128, 128): (1.0, 2), (64, 128): (0.9, 4), (32, 128): (0.75, 8)},
    ("bwd_data", 0): {(64, 128): (1.0, 1)},
    ("bwd_filter", 2): {(128, 128): (1.0, 2), (128, 64): (0.9, 4), (128, 32): (0.75, 8)},
    ("bwd_filter", 0): {(64, 64): (1.0, 1)},
}
DOUBLE_TILE = (32, 32)  # float64: MODE 0, 4x4 register blocks


@dataclass(frozen=True)
class Problem:
    """What the variant choice looks at: sizes, dtype, alignment of the arrays of one launch."""
    C: int
    H: int
    W: int
    N: int
    K: int
    R: int
    OH: int
    OW: int
    pad: int
    stride: int
    groups: int
    itemsize: int = 4
    aligned: bool = True  # every array of the launch is 16-byte aligned

    @property
    def Cg(self):
        return self.C // self.groups

    @property
    def Kg(self):
        return self.K // self.groups

    @property
    def f32(self):
        return self.itemsize == 4

    @property
    def small(self):
        """Every array has < 2^31 elements: the fast paths' 32-bit offsets are safe."""
        return max(self.C * self.H * self.W * self.N, self.K * self.OH * self.OW * self.N,
                   self.Cg * self.R * self.R * self.K) < INT_MAX

    @property
    def fast(self):
        return self.f32 and self.small and self.aligned and self.N % 4 == 0

    def args(self):
        return (self.C, self.H, self.W, self.N, self.K, self.R, self.OH, self.OW, self.pad, self.stride, self.groups)


# The variant table: per direction, (mode, condition) rows in order of preference.
MODES = {
    "fwd": (
        (2, lambda p: p.fast and p.Cg % 8 == 0 and p.Kg % 4 == 0),
        (1, lambda p: p.fast and p.Kg % 4 == 0),
        (0, lambda p: True),
    ),
    "bwd_data": (
        ("smallc", lambda p: p.fast and 1 <= p.Cg <= 4 and -(-p.R // p.stride) <= 11),
        (2, lambda p: p.fast and p.Kg % 8 == 0),
        (0, lambda p: True),
    ),
    "bwd_filter": (
        (2, lambda p: p.fast and p.N % 8 == 0 and p.Kg % 4 == 0),
        (0, lambda p: True),
    ),
}


@dataclass(frozen=True)
class Plan:
    """One launch: the kernel, its template values, 1-D grid and block, dynamic shared memory, and the
    trailing scalar arguments (``extra``); ``splits``/``workspace`` for backward-filter's partial sums."""
    kernel: Kernel
    tvals: dict = field(hash=False)
    grid: int
    block: int
    shmem: int = 0
    extra: tuple = ()
    splits: int = 1
    workspace: int = 0

    def name(self, dtype) -> str:
        return self.kernel.instance(dtype, **self.tvals)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _mode(direction: str, p: Problem):
    return next(m for m, cond in MODES[direction] if cond(p))


def _pick_tile(tiles: dict, count, lim: DeviceLimits):
    """The tile minimising the busiest SM's time: its blocks (``count(bm, bn)`` spread over the SMs)
    times the tile area, over the tile's efficiency, slowed in proportion when the SM holds fewer than
    256 threads (too few warps to hide latency). Ties go to the larger tile."""
    def cost(t):
        eff, _ = tiles[t]
        per_sm = _cdiv(count(*t), lim.sm_count)
        threads = per_sm * t[0] * t[1] // 64
        return per_sm * t[0] * t[1] / eff / min(1.0, threads / 256), -t[0] * t[1]
    return min(tiles, key=cost)


def _tile(direction: str, mode, p: Problem, count, lim: DeviceLimits):
    if not p.f32:
        return DOUBLE_TILE
    return _pick_tile(TILES[(direction, mode)], count, lim)


def _choose(direction: str, p: Problem, variant, count, lim: DeviceLimits):
    """(mode, (bm, bn)) from the tables, or ``variant`` = (mode, (bm, bn)) / (mode, None) when forced
    (tests and benchmarks; the caller must respect the mode's conditions)."""
    if variant is not None:
        mode, tile = variant
        if mode == "smallc":
            return mode, None
        return mode, tile or _pick_tile(TILES[(direction, mode)], count, lim)
    mode = _mode(direction, p) if p.f32 else 0
    return mode, (None if mode == "smallc" else _tile(direction, mode, p, count, lim))


def _threads(bm: int, bn: int, itemsize: int) -> int:
    return bm * bn // (64 if itemsize == 4 else 16)


def _grid(op: str, blocks: int) -> int:
    if blocks > INT_MAX:
        fail(op, f"the problem needs {blocks} thread blocks, more than a 1-D grid allows ({INT_MAX})")
    return max(blocks, 1)


def fwd_plan(p: Problem, bias_mode: int = 0, limits: DeviceLimits | None = None, variant=None) -> Plan:
    """conv_fwd: mode by `MODES`, tile by cost; grid = filter tiles * groups * column tiles."""
    lim = limits or device_limits()
    ncols = p.OH * p.OW * p.N

    def count(bm, bn):
        return _cdiv(p.Kg, bm) * p.groups * _cdiv(ncols, bn)
    mode, (bm, bn) = _choose("fwd", p, variant, count, lim)
    return Plan(FWD, dict(bm=bm, bn=bn, mode=mode), _grid("conv_fwd", count(bm, bn)), _threads(bm, bn, p.itemsize),
                extra=(bias_mode,))


def bwd_data_plan(p: Problem, limits: DeviceLimits | None = None, variant=None) -> Plan:
    """conv_bwd_data: the few-channel kernel or a GEMM tile; grids cover stride^2 residue classes."""
    lim = limits or device_limits()
    ncls = p.stride * p.stride
    Hc, Wc = _cdiv(p.H, p.stride), _cdiv(p.W, p.stride)  # the largest class

    def count(bm, bn):
        return _cdiv(p.Cg, bm) * ncls * p.groups * _cdiv(Hc * Wc * p.N, bn)
    mode, tile = _choose("bwd_data", p, variant, count, lim)
    if mode == "smallc":
        nrm = _cdiv(p.R, p.stride)
        kc = max(1, min(p.Kg, 32768 // (nrm * nrm * 16)))
        blocks = ncls * p.groups * _cdiv(_cdiv(Hc, 4) * Wc * (p.N // 4), 128)
        cg = 3 if p.Cg == 3 else 4  # instances: (3, 3), (3, 11), (4, 11)
        return Plan(BWD_DATA_SMALLC, dict(cg=cg, nr=3 if cg == 3 and nrm <= 3 else 11),
                    _grid("conv_bwd_data", blocks), 128, shmem=kc * nrm * nrm * 16, extra=(kc,))
    bm, bn = tile
    return Plan(BWD_DATA, dict(bm=bm, bn=bn, mode=mode), _grid("conv_bwd_data", count(bm, bn)),
                _threads(bm, bn, p.itemsize))


def bwd_filter_plan(p: Problem, limits: DeviceLimits | None = None, variant=None, chunk: int | None = None) -> Plan:
    """conv_bwd_filter: tile by padding waste and efficiency; the reduction over OH*OW*N is split into
    chunks (multiples of 8, at least 1024 rows) so that about two waves of blocks fill the device;
    with more than one split the partial sums go to a workspace that conv_sum_splits adds up."""
    lim = limits or device_limits()
    rows, P = p.Cg * p.R * p.R, p.OH * p.OW * p.N
    mode = (variant[0] if variant else _mode("bwd_filter", p)) if p.f32 else 0
    if p.f32:
        tiles = TILES[("bwd_filter", mode)]
        bm, bn = (variant[1] if variant and variant[1] else
                  min(tiles, key=lambda t: (_cdiv(rows, t[0]) * t[0] * _cdiv(p.Kg, t[1]) * t[1] / tiles[t][0],
                                            -t[0] * t[1])))
        per_sm = tiles[(bm, bn)][1]
    else:
        (bm, bn), per_sm = DOUBLE_TILE, 4
    tiles_n = _cdiv(rows, bm) * _cdiv(p.Kg, bn) * p.groups
    if chunk is None:
        want = _cdiv(2 * lim.sm_count * per_sm, tiles_n)
        splits = max(1, min(want, _cdiv(P, 1024), 1024))
        chunk = max(8, _cdiv(_cdiv(P, splits), 8) * 8)
    splits = max(1, _cdiv(P, chunk))
    ws = splits * rows * p.K if splits > 1 else 0
    return Plan(BWD_FILTER, dict(bm=bm, bn=bn, mode=mode), _grid("conv_bwd_filter", tiles_n * splits),
                _threads(bm, bn, p.itemsize), extra=(chunk,), splits=splits, workspace=ws)


def sum_splits_plan(n: int, limits: DeviceLimits | None = None) -> Plan:
    """conv_sum_splits over n elements: a grid-stride loop of 16-byte packs."""
    grid, block = grid_stride_config(_cdiv(n, 4), block=256, limits=limits)
    return Plan(SUM_SPLITS, {}, grid, block)


def bias_bwd_plan(rows: int, L: int, limits: DeviceLimits | None = None) -> Plan:
    """bias_bwd: a warp per (row, split); rows of more than 8192 elements are split so that about
    64 warps per SM have work; the partial sums (splits > 1) go through conv_sum_splits."""
    lim = limits or device_limits()
    splits = 1
    if L > 8192:
        splits = max(1, min(_cdiv(lim.sm_count * 64, max(rows, 1)), _cdiv(L, 2048)))
    chunk = max(4, _cdiv(_cdiv(max(L, 1), splits), 4) * 4)
    splits = max(1, _cdiv(L, chunk))
    items = rows * splits
    grid = max(1, min(_cdiv(items, 8), lim.sm_count * 32, lim.max_grid_x))
    return Plan(BIAS_BWD, {}, grid, 256, extra=(chunk, splits), splits=splits,
                workspace=items if splits > 1 else 0)


# --- argument handling -------------------------------------------------------------------------------

def _aligned(*arrays) -> bool:
    return all(a.data.ptr % 16 == 0 for a in arrays)


def _out(op: str, out, shape, dtype, name: str = "out"):
    """``out`` checked (device array, shape, dtype, contiguity), or a new uninitialised array."""
    if out is None:
        import cupy
        return cupy.empty(shape, dtype)
    check_device_array(op, name, out)
    check_array(op, name, out, shape=shape)
    if out.dtype != dtype:
        fail(op, f"inputs must share one dtype, got {name}={out.dtype}, result={np.dtype(dtype)}")
    return out


def _check_sizes(op: str, p: Problem) -> None:
    """The index ranges the kernels walk in 32-bit must fit (elements of one image plane set, filter
    rows, filters, output positions times images)."""
    counts = dict(H_W_N=p.H * p.W * p.N, OH_OW_N=p.OH * p.OW * p.N, Cg_R_R=p.Cg * p.R * p.R, C=p.C, K=p.K)
    big = {k: v for k, v in counts.items() if v >= INT_MAX - _MARGIN}
    if big:
        fail(op, f"too large for the CUDA kernels (each of {', '.join(big)} must be < 2^31 - 2^16): {big}")


def _devices(op: str, **arrays) -> None:
    for name, a in arrays.items():
        if a is not None:
            check_device_array(op, name, a)


def _launch(plan: Plan, dtype, *args) -> None:
    launch(plan.kernel, dtype, plan.grid, plan.block, *args, shmem=plan.shmem, **plan.tvals)


def _use_winograd(op: str, variant, dtype, R, stride, groups, C, K, bias_ok=True) -> bool:
    """Whether conv_fwd / conv_bwd_data / conv_bwd_filter take the Winograd path: forced by
    ``variant="winograd"`` (an error when it does not apply), else chosen by ``winograd.pays`` when no
    variant is forced and cuBLAS may be called (not inside a CUDA-graph capture)."""
    if isinstance(variant, str) and variant == "winograd":
        why = winograd.applicable(R, stride, groups, bias_ok)
        if why:
            fail(op, f"variant 'winograd' does not apply to this convolution: {why}")
        return True
    from ..graph import cublas_allowed  # Winograd's GEMMs are cuBLAS calls: not inside a graph capture
    return variant is None and cublas_allowed() and winograd.pays(dtype, R, stride, groups, C, K, bias_ok)


def conv_fwd(x, w, b=None, *, padding=0, stride=1, groups=1, out=None, variant=None):
    """Convolution forward (filterActs): y (K, OH, OW, N) from x (C, H, W, N), w (C/groups, R, R, K) and
    b (None, (K, 1) shared or (K*OH*OW, 1) untied), CuPy arrays of one float dtype."""
    op = "conv_fwd"
    padding, stride, groups, R, (C, H, W, N), Cg, K, OH, OW, b = ref.check_fwd(
        op, x, w, b, padding, stride, groups, arrays=lambda: _devices(op, x=x, w=w, b=b))
    y = _out(op, out, (K, OH, OW, N), x.dtype)
    if y.size == 0:
        return y
    p = Problem(C, H, W, N, K, R, OH, OW, padding, stride, groups, x.itemsize, _aligned(x, w, y))
    _check_sizes(op, p)
    bias_mode = 0 if b is None else (1 if b.shape[0] == K else 2)
    if _use_winograd(op, variant, x.dtype, R, stride, groups, C, K, bias_mode != 2):
        return winograd.run(x, w, b, y, padding, OH, OW, bwd=False)
    plan = fwd_plan(p, bias_mode, variant=variant)
    _launch(plan, x.dtype, x, w, w if b is None else b, y, *p.args(), *plan.extra)
    return y


def conv_bwd_data(dy, w, img_size, *, padding=0, stride=1, groups=1, out=None, variant=None):
    """Convolution backward w.r.t. the images (imgActs): dx (C, H, W, N) from dy (K, OH, OW, N) and
    w (C/groups, R, R, K); img_size = (H, W)."""
    op = "conv_bwd_data"
    padding, stride, groups, R, (H, W), N, Cg, K, OH, OW = ref.check_bwd_data(
        op, dy, w, img_size, padding, stride, groups, arrays=lambda: _devices(op, dy=dy, w=w))
    C = Cg * groups
    dx = _out(op, out, (C, H, W, N), dy.dtype)
    if dx.size == 0:
        return dx
    p = Problem(C, H, W, N, K, R, OH, OW, padding, stride, groups, dy.itemsize, _aligned(dy, w, dx))
    _check_sizes(op, p)
    if _use_winograd(op, variant, dy.dtype, R, stride, groups, C, K):
        return winograd.run(dy, w, None, dx, R - 1 - padding, H, W, bwd=True)
    plan = bwd_data_plan(p, variant=variant)
    _launch(plan, dy.dtype, dy, w, dx, *p.args(), *plan.extra)
    return dx


def conv_bwd_filter(dy, x, filter_size, *, padding=0, stride=1, groups=1, out=None, workspace=None,
                    variant=None, chunk=None):
    """Convolution backward w.r.t. the filters (weightActs): dw (C/groups, R, R, K) from dy (K, OH, OW, N)
    and x (C, H, W, N), R = filter_size. Deterministic: fixed-order split sums, no atomics.

    Takes the Winograd path (`winograd.run_bwd_filter`, F(R x R, 2 x 2)) under conv_fwd's rule; there
    ``workspace`` is checked but not used (the transforms' buffers come from CuPy's memory pool) and
    ``chunk``, if given, is the number of output tiles per reduction split."""
    op = "conv_bwd_filter"
    padding, stride, groups, R, (C, H, W, N), K, OH, OW = ref.check_bwd_filter(
        op, dy, x, filter_size, padding, stride, groups, arrays=lambda: _devices(op, dy=dy, x=x))
    dw = _out(op, out, (C // groups, R, R, K), x.dtype)
    if dw.size == 0:
        return dw
    if workspace is not None:
        check_device_array(op, "workspace", workspace)
        check_array(op, "workspace", workspace, 1)
    arrays = (x, dy, dw) if workspace is None else (x, dy, dw, workspace)
    p = Problem(C, H, W, N, K, R, OH, OW, padding, stride, groups, x.itemsize, _aligned(*arrays))
    _check_sizes(op, p)
    if _use_winograd(op, variant, x.dtype, R, stride, groups, C, K):
        return winograd.run_bwd_filter(dy, x, dw, padding, TS=chunk)
    plan = bwd_filter_plan(p, variant=variant, chunk=chunk)
    dst = dw
    if plan.splits > 1:
        if workspace is None:
            import cupy
            workspace = cupy.empty(plan.workspace, x.dtype)
        elif workspace.dtype != x.dtype or workspace.size < plan.workspace:
            fail(op, f"workspace must be a flat {x.dtype} array of at least {plan.workspace} elements, got "
                     f"{workspace.dtype} {tuple(workspace.shape)}")
        dst = workspace
    _launch(plan, x.dtype, x, dy, dst, *p.args(), *plan.extra)
    if plan.splits > 1:
        n = dw.size
        s = sum_splits_plan(n)
        launch(s.kernel, x.dtype, s.grid, s.block, dst, dw, n, plan.splits)
    return dw


def bias_bwd(dy, shared, *, out=None):
    """Bias gradient: dy (K, OH, OW, N) -> (K, 1) summed over OH, OW, N when ``shared``, else
    (K*OH*OW, 1) summed over N; dy (F, N) -> (F, 1) either way. Deterministic (no atomics)."""
    op = "bias_bwd"
    _devices(op, dy=dy)
    check_array(op, "dy", dy)
    if dy.ndim not in (2, 4):
        fail(op, f"dy must be (F, N) or (K, OH, OW, N), got shape {dy.shape}")
    if not isinstance(shared, (bool, np.bool_)):
        fail(op, f"shared must be a bool, got {shared!r}")
    rows = dy.shape[0] if (shared and dy.ndim == 4) else int(np.prod(dy.shape[:-1]))
    L = dy.size // rows if rows else 0
    db = _out(op, out, (rows, 1), dy.dtype)
    if rows == 0:
        return db
    plan = bias_bwd_plan(rows, L)
    dst = db
    if plan.splits > 1:
        import cupy
        dst = cupy.empty(plan.workspace, dy.dtype)
    _launch(plan, dy.dtype, dy, dst, rows, L, *plan.extra)
    if plan.splits > 1:
        s = sum_splits_plan(rows)
        launch(s.kernel, dy.dtype, s.grid, s.block, dst, db, rows, plan.splits)
    return db
