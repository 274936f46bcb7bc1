"""Winograd convolution F(2x2, 3x3) and F(2x2, 5x5) for stride 1, groups 1 (kernels/winograd.cu + cuBLAS),
and its dual F(3x3, 2x2) / F(5x5, 2x2) for the filter gradient.

Reached through ``pyconvnet.cuda.ops.conv``: ``conv_fwd``, ``conv_bwd_data`` and ``conv_bwd_filter`` take
this path for float32, stride 1, groups 1, R in (3, 5), no or shared bias, when `pays` says so (and
cuBLAS may be called: not inside a CUDA-graph capture), or when called with ``variant="winograd"``
(which also accepts float64, for exact checks). Semantics are the reference's
(``pyconvnet.ops.conv``); backward-data is the forward correlation of dy, padded by R - 1 - padding,
with the filters flipped in both taps and C <-> K swapped, so the output is exactly H x W.

Algorithm (A = alpha = R + 1, tiles of 2 x 2 outputs, T = ceil(OH/2) * ceil(OW/2) tiles):
  U[a] = G g G^T                   (A*A, KO, CI)  winograd_filter_transform
  V[a] = B^T d B per tile and n    (A*A, CI, TC*N) winograd_input_transform, for a chunk of TC tiles
  M[a] = U[a] @ V[a]               (A*A, KO, TC*N) one strided-batched cuBLAS GEMM (`gemm_nn`)
  y    = A^T m A (+ bias)          (KO, OH, OW, N)  winograd_output_transform, in-range outputs only
The tiles are processed in chunks so that V and M together stay under ``WORKSPACE_BYTES`` (all of
AlexNet's layers at batch 128 take one chunk). U, V and M come from CuPy's memory pool.

Backward-filter (`run_bwd_filter`), by duality: for a 2 x 2 output tile, dw_tile = G^T [(A e A^T) *
(B^T d B)] G with the forward's matrices (e the tile's dy block, zero past OH/OW; d its A x A input patch),
summed over tiles and images in the transformed domain:
  V[s, a] = B^T d B                (S*A*A, C, TS*N) winograd_input_transform (split layout)
  D[s, a] = A e A^T                (S*A*A, K, TS*N) winograd_dy_transform
  MB[s, a] = V[s, a] @ D[s, a]^T   (S*A*A, C, K)    one strided-batched cuBLAS GEMM (`gemm_nt`)
  dw = G^T (sum_s MB[s]) G         (C, R, R, K)     winograd_dw_transform (fixed order: deterministic)
The reduction over the tiles is split into S parts of TS tiles (`split_tiles`: a GEMM of only C x K
outputs per a needs more batch entries to fill the device); when V and D of all splits exceed
``WORKSPACE_BYTES`` the splits go in chunks whose GEMMs accumulate into MB (beta = 1). conv_bwd_filter's
``workspace`` is not used on this path (buffers from CuPy's memory pool); its ``chunk`` forces TS.
Measured float32 error (NumPy float32 emulation, x and dy ~ N(0, 1), batch 128, against a float64
direct reference; direct float32 3-4e-7): AlexNet conv3/conv4/conv5 6.5e-7 (reduction over 6272 terms),
conv2 (5x5) 5.0e-6 (25088 terms).

Transform matrices: Toom-Cook from exact fractions (`matrices`) with interpolation points 0, +-1, inf
(R = 3; Lavin and Gray's F(2x2, 3x3)) and 0, +-1, +-2, inf (R = 5; +-1/2 measured slightly worse), the
Lagrange denominators moved into G so that B^T and A^T hold small integers. kernels/winograd.cu holds
them as compile-time constants (`c_tables` generates that text; the tests check the copy).

TF32: the GEMMs are cublasSgemmStridedBatched calls on pyconvnet's own handles (pyconvnet.cuda.blas), in
CUBLAS_DEFAULT_MATH, i.e. plain FP32 SGEMM; only NVIDIA_TF32_OVERRIDE=1 would force TF32 process-wide
(CUPY_TF32 affects CuPy's own dot/tensordot, which these are not). `tf32_risk` reports either
variable, and the automatic choice (`pays`) then keeps the direct kernels.

Measured float32 error (NumPy float32 emulation of this algorithm, x ~ N(0,1), w ~ N(0, 0.01..0.05),
relative to a float64 direct convolution; direct float32 gives ~3.6e-7): AlexNet conv3/conv4/conv5
(3x3) 4.3e-7 / 6.0e-7 / 4.9e-7; conv2 (5x5, C=64) 1.9e-6; a 5x5 layer with C=384 4.3e-6.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ...ops._check import fail
from ..launch import DeviceLimits, Kernel, device_limits, grid_stride_config, launch

POINTS = {3: (0, 1, -1), 5: (0, 1, -1, 2, -2)}  # finite interpolation points; infinity is the last
FILTER = Kernel("winograd", "winograd_filter_transform", "ppiii", template="{T}, {alpha}")
INPUT = Kernel("winograd", "winograd_input_transform", "pp" + "i" * 9, template="{T}, {alpha}")
OUTPUT = Kernel("winograd", "winograd_output_transform", "ppp" + "i" * 8, template="{T}, {alpha}")
DY = Kernel("winograd", "winograd_dy_transform", "pp" + "i" * 8, template="{T}, {alpha}")
DW = Kernel("winograd", "winograd_dw_transform", "ppiii", template="{T}, {alpha}")
WORKSPACE_BYTES = 1 << 30  # V + M of one chunk of tiles
MIN_CHANNELS = 64  # `pays`: from this many channels and filters on (smaller GEMMs are memory-bound)
_TABLES = {}


# --- transform matrices ----------------------------------------------------------------------------

def _inverse(m):
    """Inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(m)
    a = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(m)]
    for c in range(n):
        p = next(r for r in range(c, n) if a[r][c] != 0)
        a[c], a[p] = a[p], a[c]
        a[c] = [v / a[c][c] for v in a[c]]
        for r in range(n):
            if r != c and a[r][c] != 0:
                f = a[r][c]
                a[r] = [u - f * v for u, v in zip(a[r], a[c])]
    return [row[n:] for row in a]


def matrices(R: int):
    """(A^T (2 x A), G (A x R), B^T (A x A)) for F(2, R) as lists of Fractions, A = R + 1.

    Toom-Cook over POINTS[R] and infinity: A^T = E_2^T, G = E_R, B^T = (E_A^-1)^T, E_n the evaluation
    matrix of polynomials of degree < n; row j of B^T is scaled by prod_{l != j} (p_j - p_l) (G's row
    divided by it) and both rows' signs are chosen so that B^T's row starts positive. Then
    y = A^T [(G g) * (B^T d)] is the correlation y_i = sum_k g_k d_{i+k}, and in 2-D
    Y = A^T [(G g G^T) * (B^T d B)] A.
    """
    if R not in POINTS:
        raise ValueError(f"winograd: filter size must be 3 or 5, got {R}")
    m, A = 2, R + 1
    pts = [Fraction(p) for p in POINTS[R]]

    def evaluation(n):
        return [[p ** i for i in range(n)] for p in pts] + [[Fraction(int(i == n - 1)) for i in range(n)]]
    e2, er, ea = evaluation(m), evaluation(R), evaluation(A)
    at = [[e2[j][i] for j in range(A)] for i in range(m)]
    g = [row[:] for row in er]
    inv = _inverse(ea)
    bt = [[inv[j][i] for j in range(A)] for i in range(A)]
    for j in range(A):
        s = Fraction(1)
        if j < len(pts):
            for l, q in enumerate(pts):
                if l != j:
                    s *= pts[j] - q
        if next(v for v in bt[j] if v != 0) * s < 0:
            s = -s
        bt[j] = [v * s for v in bt[j]]
        g[j] = [v / s for v in g[j]]
    return at, g, bt


def float_matrices(R: int, dtype=np.float64):
    """`matrices` as arrays of ``dtype`` (each entry rounded once from its exact value)."""
    return tuple(np.array([[float(v) for v in row] for row in mat], dtype=dtype) for mat in matrices(R))


def _c_value(v: Fraction) -> str:
    if v.denominator == 1:
        return f"{float(v.numerator)}"
    return f"{'-' if v < 0 else ''}{float(abs(v.numerator))}/{v.denominator}"


def c_tables() -> str:
    """The text of kernels/winograd.cu between ``// BEGIN TABLES`` and ``// END TABLES`` (inclusive)."""
    lines = ["// BEGIN TABLES (generated by pyconvnet.cuda.ops.winograd.c_tables(); do not edit by hand)",
             "template <int A> struct WgTables;"]
    for R in (3, 5):
        A = R + 1
        at, g, bt = matrices(R)
        lines += [f"template <> struct WgTables<{A}> {{", f"    static constexpr int R = {R};"]
        for name, mat in (("bt", bt), ("g", g), ("at", at)):
            lines.append(f"    __device__ __forceinline__ static double {name}(int i, int j) {{")
            lines.append(f"        constexpr double v[{len(mat)}][{len(mat[0])}] = {{")
            lines += ["            {" + ", ".join(_c_value(v) for v in row) + "}," for row in mat]
            lines += ["        };", "        return v[i][j];", "    }"]
        lines.append("};")
    lines.append("// END TABLES")
    return "\n".join(lines) + "\n"


# --- the algorithm in NumPy (the kernels' math, for the CPU tests) -----------------------------------

def tiles(OH: int, OW: int) -> tuple[int, int]:
    """(TH, TW): tiles of 2 x 2 outputs covering OH x OW."""
    return -(-OH // 2), -(-OW // 2)


def filter_transform_np(w, bwd: bool = False):
    """U (A*A, KO, CI) from w (C, R, R, K) in w's dtype: forward U[a, k, c] = (G w[c,:,:,k] G^T)[a];
    backward-data U[a, c, k] = (G w[c,::-1,::-1,k] G^T)[a]."""
    C, R, _, K = w.shape
    A = R + 1
    g = float_matrices(R, w.dtype)[1]
    taps = w[:, ::-1, ::-1, :] if bwd else w
    u = np.einsum("pi,cijk,qj->pqkc", g, taps, g).reshape(A * A, K, C)
    return np.ascontiguousarray(u.transpose(0, 2, 1) if bwd else u)


def input_transform_np(x, R: int, pad: int, OH: int, OW: int, t0: int = 0, TC: int | None = None,
                       TS: int | None = None):
    """V from x (CI, H, W, N) for tiles [t0, t0 + TC) (all by default): (A*A, CI, TC*N), or with ``TS``
    (tiles per split, TC a multiple of it) the split layout (TC/TS * A*A, CI, TS*N) of the kernel.
    Tiles past the last one (t >= TH*TW) read the patch formula too, as the kernel does."""
    CI, H, W, N = x.shape
    A = R + 1
    TH, TW = tiles(OH, OW)
    TC = TH * TW - t0 if TC is None else TC
    bt = float_matrices(R, x.dtype)[2]
    rows = max(TH, (t0 + TC - 1) // TW + 1)
    lo = max(pad, 0)
    hi_y, hi_x = max(0, 2 * rows + A - pad - H), max(0, 2 * TW + A - pad - W)
    xp = np.pad(x, ((0, 0), (lo, hi_y), (lo, hi_x), (0, 0)))[:, lo - pad:, lo - pad:]  # xp[:, i] = x[:, i - pad]
    t = np.arange(t0, t0 + TC)
    iy = 2 * (t // TW)[:, None] + np.arange(A)  # (TC, A)
    ix = 2 * (t % TW)[:, None] + np.arange(A)
    d = xp[:, iy[:, :, None], ix[:, None, :], :]  # (CI, TC, A, A, N)
    v = np.einsum("ai,ctijn,bj->abctn", bt, d, bt)
    return _split_layout(v.reshape(A * A, CI, TC, N), TC if TS is None else TS)


def _split_layout(v, TS: int):
    """(A*A, rows, TC, N) -> (TC/TS * A*A, rows, TS*N): split s of TS tiles after split s - 1."""
    AA, rows, TC, N = v.shape
    S = TC // TS
    v = v.reshape(AA, rows, S, TS * N).transpose(2, 0, 1, 3)
    return np.ascontiguousarray(v.reshape(S * AA, rows, TS * N))


def output_transform_np(m, R: int, OH: int, OW: int, N: int, bias=None, t0: int = 0, y=None):
    """y (KO, OH, OW, N) from M (A*A, KO, TC*N) of tiles [t0, t0 + TC): writes the in-range outputs of
    those tiles into ``y`` (a new NaN-filled array by default) and returns it."""
    A = R + 1
    KO = m.shape[1]
    TC = m.shape[2] // N
    TH, TW = tiles(OH, OW)
    at = float_matrices(R, m.dtype)[0]
    out = np.einsum("pa,abktn,qb->ktpqn", at, m.reshape(A, A, KO, TC, N), at)  # (KO, TC, 2, 2, N)
    if bias is not None:
        out = out + bias.reshape(KO, 1, 1, 1, 1)
    if y is None:
        y = np.full((KO, OH, OW, N), np.nan, m.dtype)
    for tl in range(TC):
        oy, ox = 2 * ((t0 + tl) // TW), 2 * ((t0 + tl) % TW)
        ny, nx = min(2, OH - oy), min(2, OW - ox)
        y[:, oy:oy + ny, ox:ox + nx] = out[:, tl, :ny, :nx]
    return y


def conv_np(src, w, pad: int, OH: int, OW: int, bias=None, bwd: bool = False):
    """The whole algorithm in NumPy, in the inputs' dtype: forward (src = x) or backward-data (src = dy,
    bwd=True, pad = R - 1 - padding, OH x OW = H x W)."""
    R, N = w.shape[1], src.shape[3]
    u = filter_transform_np(w, bwd)
    v = input_transform_np(src, R, pad, OH, OW)
    return output_transform_np(np.matmul(u, v), R, OH, OW, N, bias)


def dy_transform_np(dy, R: int, t0: int = 0, TC: int | None = None, TS: int | None = None):
    """D (TC/TS * A*A, K, TS*N) from dy (K, OH, OW, N) for tiles [t0, t0 + TC) in splits of TS tiles
    (default: all tiles, one split): D[s, a] = A dy_t A^T, dy_t the tile's 2 x 2 block (zero past
    OH/OW, so tiles t >= TH*TW give zeros)."""
    K, OH, OW, N = dy.shape
    A = R + 1
    TH, TW = tiles(OH, OW)
    TC = TH * TW - t0 if TC is None else TC
    at = float_matrices(R, dy.dtype)[0]  # A^T (2, A)
    t = np.arange(t0, t0 + TC)
    rows = max(TH, (t0 + TC - 1) // TW + 1)
    dp = np.zeros((K, 2 * rows, 2 * TW, N), dy.dtype)
    dp[:, :OH, :OW] = dy
    oy = 2 * (t // TW)[:, None] + np.arange(2)  # (TC, 2)
    ox = 2 * (t % TW)[:, None] + np.arange(2)
    d = dp[:, oy[:, :, None], ox[:, None, :], :]  # (K, TC, 2, 2, N)
    v = np.einsum("pa,ktpqn,qb->abktn", at, d, at)
    return _split_layout(v.reshape(A * A, K, TC, N), TC if TS is None else TS)


def dw_transform_np(mb, R: int):
    """dw (C, R, R, K) from MB (S * A*A, C, K): G^T (sum over s of MB[s, :, c, k]) G, in MB's dtype."""
    A = R + 1
    g = float_matrices(R, mb.dtype)[1]  # G (A, R)
    S, C, K = mb.shape[0] // (A * A), mb.shape[1], mb.shape[2]
    m = mb.reshape(S, A, A, C, K)
    acc = m[0].copy()
    for s in range(1, S):
        acc += m[s]
    return np.ascontiguousarray(np.einsum("ai,abck,bj->cijk", g, acc, g))


def bwd_filter_np(dy, x, R: int, pad: int, TS: int | None = None):
    """The backward-filter algorithm in NumPy, in the inputs' dtype: dw (C, R, R, K) from dy (K, OH, OW, N)
    and x (C, H, W, N), tiles in splits of ``TS`` (default: one split)."""
    OH, OW = dy.shape[1], dy.shape[2]
    TH, TW = tiles(OH, OW)
    TS = TH * TW if TS is None else TS
    TC = -(-TH * TW // TS) * TS
    v = input_transform_np(x, R, pad, OH, OW, 0, TC, TS)
    d = dy_transform_np(dy, R, 0, TC, TS)
    return dw_transform_np(np.matmul(v, d.transpose(0, 2, 1)), R)


# --- launch plans -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """One launch: kernel, template values, grid (int or 2-tuple), block."""
    kernel: Kernel
    tvals: dict = field(hash=False)
    grid: object
    block: int

    def name(self, dtype) -> str:
        return self.kernel.instance(dtype, **self.tvals)


def input_lanes(R: int, itemsize: int) -> int:
    """Images per thread of winograd_input_transform's packed path (16 bytes; 8 for R = 5)."""
    return max(1, (16 if R == 3 else 8) // itemsize)


def output_lanes(itemsize: int) -> int:
    """Images per thread of winograd_output_transform's packed path (16 bytes)."""
    return 16 // itemsize


def filter_plan(C: int, K: int, R: int) -> Plan:
    """winograd_filter_transform over w (C, R, R, K): 32 filters x 16 channels per 512-thread block."""
    gy = -(-C // 16)
    if gy > 65535:
        fail("winograd", f"too many channels for the filter transform's grid: C={C} (at most {65535 * 16})")
    return Plan(FILTER, dict(alpha=R + 1), (-(-K // 32), gy), 512)


def _stream_plan(kernel: Kernel, R: int, rows: int, TC: int, N: int, lanes: int, vec: bool,
                 limits: DeviceLimits | None) -> Plan:
    per = -(-N // lanes) if vec else N
    grid, block = grid_stride_config(rows * TC * per, block=256, limits=limits)
    return Plan(kernel, dict(alpha=R + 1), grid, block)


def input_plan(CI: int, TC: int, N: int, R: int, itemsize: int = 4, vec: bool = True,
               limits: DeviceLimits | None = None) -> Plan:
    """winograd_input_transform: a grid-stride loop over CI * TC * (N / lanes) items (packed path,
    ``vec``) or CI * TC * N (scalar path), block 256."""
    L = input_lanes(R, itemsize)
    return _stream_plan(INPUT, R, CI, TC, N, L, vec and L > 1 and N % L == 0, limits)


def output_plan(KO: int, TC: int, N: int, R: int, itemsize: int = 4, vec: bool = True,
                limits: DeviceLimits | None = None) -> Plan:
    """winograd_output_transform: as `input_plan` over KO * TC * (N / lanes) items."""
    L = output_lanes(itemsize)
    return _stream_plan(OUTPUT, R, KO, TC, N, L, vec and N % L == 0, limits)


def chunk_tiles(ntiles: int, N: int, CI: int, KO: int, R: int, itemsize: int = 4,
                budget: int = WORKSPACE_BYTES) -> int:
    """Tiles per chunk: all of them when V and M fit in ``budget`` bytes, else as many as fit (at least
    one), balanced over the chunks; also keeps TC * N below 2^31 (cuBLAS's int dimensions)."""
    per_tile = (R + 1) ** 2 * (CI + KO) * N * itemsize
    tc = max(1, min(ntiles, budget // per_tile, (2**31 - 1) // N))
    nchunks = -(-ntiles // tc)
    return -(-ntiles // nchunks)


def dy_plan(K: int, TC: int, N: int, R: int, itemsize: int = 4, vec: bool = True,
            limits: DeviceLimits | None = None) -> Plan:
    """winograd_dy_transform: as `output_plan` over K * TC * (N / lanes) items (16-byte packs)."""
    L = output_lanes(itemsize)
    return _stream_plan(DY, R, K, TC, N, L, vec and N % L == 0, limits)


def dw_plan(C: int, K: int, R: int, limits: DeviceLimits | None = None) -> Plan:
    """winograd_dw_transform: a grid-stride loop over the C * K (c, k) pairs, block 256."""
    grid, block = grid_stride_config(C * K, block=256, limits=limits)
    return Plan(DW, dict(alpha=R + 1), grid, block)


GEMM_TILE = 128  # `split_tiles`' model of a cuBLAS SGEMM block: 128 x 128 outputs, 2 resident per SM
MAX_SPLITS = 16


def split_tiles(ntiles: int, N: int, C: int, K: int, R: int, itemsize: int = 4, limits: DeviceLimits | None = None,
                budget: int | None = None) -> int:
    """Backward-filter: tiles per split (TS). The GEMM MB[s, a] = V[s, a] @ D[s, a]^T has only C x K
    outputs per a, so the reduction over tiles is split into S = ceil(ntiles / TS) parts, one more batch
    entry each. S <= MAX_SPLITS minimises a model: GEMM waves (blocks of GEMM_TILE^2 outputs, two per SM,
    each busy for TS * N reduction steps) plus the partial sums' traffic (2 * S * A^2 * C * K elements);
    ties go to fewer splits. TS is then capped so that one split's V and D fit in ``budget`` bytes and
    TS * N < 2^31 (cuBLAS's int dimensions)."""
    lim = limits or device_limits()
    budget = WORKSPACE_BYTES if budget is None else budget
    AA = (R + 1) ** 2
    slots = 2 * lim.sm_count
    blocks = AA * -(-C // GEMM_TILE) * -(-K // GEMM_TILE)
    best = None
    for S in range(1, min(ntiles, MAX_SPLITS) + 1):
        TS = -(-ntiles // S)
        if -(-ntiles // TS) != S:
            continue
        waves = -(-(blocks * S) // slots)
        gemm = waves * 2.0 * GEMM_TILE * GEMM_TILE * TS * N * slots / 45e12
        partial = 2.0 * S * AA * C * K * itemsize / 3e12
        cost = gemm + partial
        if best is None or cost < best[0] * (1 - 1e-9):
            best = (cost, TS)
    TS = best[1]
    per_tile = AA * (C + K) * N * itemsize
    return max(1, min(TS, budget // per_tile, (2**31 - 1) // N))


def splits_per_chunk(S: int, TS: int, N: int, C: int, K: int, R: int, itemsize: int = 4,
                     budget: int | None = None) -> int:
    """Backward-filter: splits per chunk (P): all S when their V and D and the partial sums MB fit in
    ``budget`` bytes, else as many as fit (at least one), balanced over the chunks."""
    budget = WORKSPACE_BYTES if budget is None else budget
    AA = (R + 1) ** 2
    per_split = AA * ((C + K) * TS * N + C * K) * itemsize
    p = max(1, min(S, budget // per_split))
    return -(-S // -(-S // p))


def _blas():
    """(cuBLAS functions with CuPy's names, handle bound to the current stream) from
    `pyconvnet.cuda.blas`, which also work inside a CUDA-graph capture; the CPU tests replace this."""
    from .. import blas
    if blas.available():
        return blas.capi(), blas.prepare()
    import cupy  # CuPy's bindings, with CuPy's handle: fine, but not inside a CUDA-graph capture
    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:  # CuPy releases before cupy_backends
        from cupy.cuda import cublas
    return cublas, cupy.cuda.device.get_cublas_handle()


def gemm_nt(v, d, mb, batch: int, C: int, K: int, depth: int, beta: float) -> None:
    """MB[b] = V[b] @ D[b]^T + beta * MB[b] for b < batch, one strided-batched cuBLAS call (S/DGEMM, the
    handle's default math: no TF32), on the current stream. V (batch, C, depth), D (batch, K, depth),
    MB (batch, C, K): C-contiguous device buffers (flat is fine) of one float dtype. In cuBLAS's
    column-major terms MB[b] is K x C (ld K) = op_T(D[b] as depth x K, ld depth) @ V[b] (depth x C, ld
    depth). CuPy's matmul would copy a transposed operand, hence the direct call."""
    cublas, handle = _blas()
    f = cublas.sgemmStridedBatched if np.dtype(v.dtype) == np.float32 else cublas.dgemmStridedBatched
    one, b = np.ones((), v.dtype), np.array(beta, v.dtype)
    f(handle, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N, K, C, depth, one.ctypes.data, d.data.ptr, depth, K * depth,
      v.data.ptr, depth, C * depth, b.ctypes.data, mb.data.ptr, K, C * K, batch)


def gemm_nn(u, v, m, batch: int, KO: int, CI: int, P: int) -> None:
    """M[b] = U[b] @ V[b] for b < batch, one strided-batched cuBLAS call on the current stream (no TF32).
    U (batch, KO, CI), V (batch, CI, P), M (batch, KO, P): C-contiguous device buffers of one float dtype.
    In cuBLAS's column-major terms M[b] is P x KO (ld P) = V[b] (P x CI, ld P) @ U[b] (CI x KO, ld CI).
    (CuPy's matmul cannot be part of a CUDA graph: see pyconvnet.cuda.blas.)"""
    cublas, handle = _blas()
    f = cublas.sgemmStridedBatched if np.dtype(v.dtype) == np.float32 else cublas.dgemmStridedBatched
    one, zero = np.ones((), v.dtype), np.zeros((), v.dtype)
    f(handle, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N, P, KO, CI, one.ctypes.data, v.data.ptr, P, CI * P,
      u.data.ptr, CI, KO * CI, zero.ctypes.data, m.data.ptr, P, KO * P, batch)


# --- dispatch -------------------------------------------------------------------------------------

def tf32_risk() -> bool:
    """True when CUPY_TF32=1 or NVIDIA_TF32_OVERRIDE=1 is set (either may let fp32 GEMMs use TF32)."""
    return os.environ.get("CUPY_TF32", "0") == "1" or os.environ.get("NVIDIA_TF32_OVERRIDE", "") == "1"


def applicable(R: int, stride: int, groups: int, bias_shared_or_none: bool = True) -> str:
    """'' when the Winograd path can compute this convolution, else why not."""
    if R not in POINTS:
        return f"filter size {R} (Winograd needs 3 or 5)"
    if stride != 1:
        return f"stride {stride} (Winograd needs 1)"
    if groups != 1:
        return f"groups {groups} (Winograd needs 1)"
    if not bias_shared_or_none:
        return "untied bias (Winograd takes none or shared)"
    return ""


def pays(dtype, R: int, stride: int, groups: int, C: int, K: int, bias_shared_or_none: bool = True) -> bool:
    """The automatic choice: float32, applicable, C and K >= MIN_CHANNELS, and no TF32 risk."""
    return (np.dtype(dtype) == np.float32 and not applicable(R, stride, groups, bias_shared_or_none)
            and C >= MIN_CHANNELS and K >= MIN_CHANNELS and not tf32_risk())


def _aligned(a, nbytes: int) -> bool:
    return a.data.ptr % nbytes == 0


def run(src, w, bias, out, pad: int, OH: int, OW: int, bwd: bool, limits: DeviceLimits | None = None):
    """Winograd convolution on CuPy arrays, writing ``out`` (KO, OH, OW, N): forward (src = x (C, H, W, N),
    KO = K) or backward-data (src = dy (K, OH', OW', N), bwd=True, KO = C, pad = R - 1 - padding,
    OH x OW = H x W). Arguments are checked by the caller (pyconvnet.cuda.ops.conv)."""
    import cupy

    C, R, _, K = w.shape
    A = R + 1
    CI, KO = (K, C) if bwd else (C, K)
    H, W, N = src.shape[1], src.shape[2], src.shape[3]
    dt = src.dtype
    lim = limits or device_limits()
    TH, TW = tiles(OH, OW)
    ntiles = TH * TW
    TC = chunk_tiles(ntiles, N, CI, KO, R, dt.itemsize, WORKSPACE_BYTES)
    u = cupy.empty((A * A, KO, CI), dt)
    fp = filter_plan(C, K, R)
    launch(fp.kernel, dt, fp.grid, fp.block, w, u, C, K, int(bwd), **fp.tvals)
    vbuf = cupy.empty(A * A * CI * TC * N, dt)
    mbuf = cupy.empty(A * A * KO * TC * N, dt)
    Li, Lo = input_lanes(R, dt.itemsize), output_lanes(dt.itemsize)
    vec_in = _aligned(src, Li * dt.itemsize)
    vec_out = _aligned(out, Lo * dt.itemsize)
    has_bias = bias is not None
    for t0 in range(0, ntiles, TC):
        tc = min(TC, ntiles - t0)
        v = vbuf[:A * A * CI * tc * N].reshape(A * A, CI, tc * N)
        m = mbuf[:A * A * KO * tc * N].reshape(A * A, KO, tc * N)
        ip = input_plan(CI, tc, N, R, dt.itemsize, vec_in, lim)
        launch(ip.kernel, dt, ip.grid, ip.block, src, v, CI, H, W, N, pad, TW, t0, tc, tc, **ip.tvals)
        gemm_nn(u, v, m, A * A, KO, CI, tc * N)
        op = output_plan(KO, tc, N, R, dt.itemsize, vec_out, lim)
        launch(op.kernel, dt, op.grid, op.block, m, bias if has_bias else out, out, KO, OH, OW, N, TW, t0, tc,
               int(has_bias), **op.tvals)
    return out


def run_bwd_filter(dy, x, dw, pad: int, TS: int | None = None, limits: DeviceLimits | None = None):
    """Winograd backward-filter on CuPy arrays, writing ``dw`` (C, R, R, K) from dy (K, OH, OW, N) and
    x (C, H, W, N) (stride 1, groups 1, R 3 or 5; arguments checked by pyconvnet.cuda.ops.conv).
    ``TS`` forces the tiles per split (default `split_tiles`). Per chunk of P splits (`splits_per_chunk`):
    V by winograd_input_transform, D by winograd_dy_transform, then MB (P, A*A, C, K) += V @ D^T in one
    strided-batched GEMM (beta 0 for the first chunk); finally winograd_dw_transform sums the P partial
    sums in order and applies G^T . G. Deterministic; V, D and MB come from CuPy's memory pool."""
    import cupy

    C, H, W, N = x.shape
    K, OH, OW = dy.shape[0], dy.shape[1], dy.shape[2]
    R = dw.shape[1]
    A = R + 1
    AA = A * A
    dt = x.dtype
    lim = limits or device_limits()
    TH, TW = tiles(OH, OW)
    ntiles = TH * TW
    TS = split_tiles(ntiles, N, C, K, R, dt.itemsize, lim) if TS is None else max(1, min(int(TS), ntiles))
    S = -(-ntiles // TS)
    P = splits_per_chunk(S, TS, N, C, K, R, dt.itemsize)
    depth = TS * N
    vbuf = cupy.empty(P * AA * C * depth, dt)
    dbuf = cupy.empty(P * AA * K * depth, dt)
    mb = cupy.empty(P * AA * C * K, dt)
    vec_x = _aligned(x, input_lanes(R, dt.itemsize) * dt.itemsize)
    vec_dy = _aligned(dy, output_lanes(dt.itemsize) * dt.itemsize)
    for s0 in range(0, S, P):
        p = min(P, S - s0)
        t0, tc = s0 * TS, p * TS
        ip = input_plan(C, tc, N, R, dt.itemsize, vec_x, lim)
        launch(ip.kernel, dt, ip.grid, ip.block, x, vbuf, C, H, W, N, pad, TW, t0, tc, TS, **ip.tvals)
        yp = dy_plan(K, tc, N, R, dt.itemsize, vec_dy, lim)
        launch(yp.kernel, dt, yp.grid, yp.block, dy, dbuf, K, OH, OW, N, TW, t0, tc, TS, **yp.tvals)
        gemm_nt(vbuf, dbuf, mb, p * AA, C, K, depth, 0.0 if s0 == 0 else 1.0)
    wp = dw_plan(C, K, R, lim)
    launch(wp.kernel, dt, wp.grid, wp.block, mb, dw, C, K, P, **wp.tvals)
    return dw


def expected_bwd_filter_ms(C: int, K: int, H: int, W: int, N: int, R: int, pad: int, tflops: float = 45.0,
                           gbps: float = 2990.0, limits: DeviceLimits | None = None) -> dict:
    """`expected_ms` for `run_bwd_filter`: GEMM FLOPs A^2 * C * K * S*TS * N * 2 at ``tflops`` plus the bytes
    (x and dy read once, V and D written and read, the S partial sums written and read, dw written) at
    ``gbps``; S and TS as `split_tiles` picks them (for an H100's 132 SMs unless ``limits``)."""
    A = R + 1
    OH, OW = H + 2 * pad - R + 1, W + 2 * pad - R + 1
    TH, TW = tiles(OH, OW)
    lim = limits or DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
    TS = split_tiles(TH * TW, N, C, K, R, 4, lim)
    S = -(-TH * TW // TS)
    T = S * TS
    flops = 2.0 * A * A * C * K * T * N
    nbytes = 4.0 * (C * H * W * N + K * OH * OW * N + 2 * A * A * (C + K) * T * N + 2 * S * A * A * C * K
                    + C * R * R * K)
    gemm, mem = flops / tflops / 1e9, nbytes / gbps / 1e6
    return dict(gemm_ms=gemm, mem_ms=mem, total_ms=gemm + mem, flops=flops, bytes=nbytes, splits=S, tiles_per_split=TS)


def expected_ms(C: int, K: int, H: int, W: int, N: int, R: int, pad: int, bwd: bool = False,
                tflops: float = 45.0, gbps: float = 2990.0) -> dict:
    """A model of one call's time: GEMM FLOPs A^2 * KO * CI * tiles * N * 2 at ``tflops`` plus the bytes
    the transforms and the GEMM move (src read once, V written and read, M written and read, y written,
    U written and read) at ``gbps``. Returns ms for each part and the total."""
    A = R + 1
    OH, OW = (H, W) if bwd else (H + 2 * pad - R + 1, W + 2 * pad - R + 1)
    CI, KO = (K, C) if bwd else (C, K)
    Hs, Ws = (H + 2 * pad - R + 1, W + 2 * pad - R + 1) if bwd else (H, W)
    TH, TW = tiles(OH, OW)
    T = TH * TW
    flops = 2.0 * A * A * KO * CI * T * N
    nbytes = 4.0 * (CI * Hs * Ws * N + 2 * A * A * CI * T * N + 2 * A * A * KO * T * N + KO * OH * OW * N
                    + 2 * A * A * KO * CI)
    gemm, mem = flops / tflops / 1e9, nbytes / gbps / 1e6
    return dict(gemm_ms=gemm, mem_ms=mem, total_ms=gemm + mem, flops=flops, bytes=nbytes)
