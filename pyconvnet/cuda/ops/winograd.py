"""Winograd convolution F(2x2, 3x3) and F(2x2, 5x5) for stride 1, groups 1 (kernels/winograd.cu + cuBLAS).

Reached through ``pyconvnet.cuda.ops.conv``: ``conv_fwd`` and ``conv_bwd_data`` take this path for
float32, stride 1, groups 1, R in (3, 5), no or shared bias, when `pays` says so, or when called with
``variant="winograd"`` (which also accepts float64, for exact checks). Semantics are the reference's
(``pyconvnet.ops.conv``); backward-data is the forward correlation of dy, padded by R - 1 - padding,
with the filters flipped in both taps and C <-> K swapped, so the output is exactly H x W.

Algorithm (A = alpha = R + 1, tiles of 2 x 2 outputs, T = ceil(OH/2) * ceil(OW/2) tiles):
  U[a] = G g G^T                   (A*A, KO, CI)  winograd_filter_transform
  V[a] = B^T d B per tile and n    (A*A, CI, TC*N) winograd_input_transform, for a chunk of TC tiles
  M[a] = U[a] @ V[a]               (A*A, KO, TC*N) cupy.matmul on the stacked arrays
  y    = A^T m A (+ bias)          (KO, OH, OW, N)  winograd_output_transform, in-range outputs only
The tiles are processed in chunks so that V and M together stay under ``WORKSPACE_BYTES`` (all of
AlexNet's layers at batch 128 take one chunk). U, V and M come from CuPy's memory pool.

Transform matrices: Toom-Cook from exact fractions (`matrices`) with interpolation points 0, +-1, inf
(R = 3; Lavin and Gray's F(2x2, 3x3)) and 0, +-1, +-2, inf (R = 5; +-1/2 measured slightly worse), the
Lagrange denominators moved into G so that B^T and A^T hold small integers. kernels/winograd.cu holds
them as compile-time constants (`c_tables` generates that text; the tests check the copy).

TF32: CuPy's batched matmul calls cublasGemmStridedBatchedEx with compute type CUDA_R_32F and
CUBLAS_GEMM_DEFAULT on a handle in CUBLAS_DEFAULT_MATH, i.e. plain FP32 SGEMM; CUPY_TF32 only affects
2-D dot/tensordot, and NVIDIA_TF32_OVERRIDE=1 would force TF32 process-wide. `tf32_risk` reports either
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
INPUT = Kernel("winograd", "winograd_input_transform", "pp" + "i" * 8, template="{T}, {alpha}")
OUTPUT = Kernel("winograd", "winograd_output_transform", "ppp" + "i" * 8, template="{T}, {alpha}")
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


def input_transform_np(x, R: int, pad: int, OH: int, OW: int, t0: int = 0, TC: int | None = None):
    """V (A*A, CI, TC*N) from x (CI, H, W, N) for tiles [t0, t0 + TC) (all by default)."""
    CI, H, W, N = x.shape
    A = R + 1
    TH, TW = tiles(OH, OW)
    TC = TH * TW - t0 if TC is None else TC
    bt = float_matrices(R, x.dtype)[2]
    lo = max(pad, 0)
    hi_y, hi_x = max(0, 2 * TH + A - pad - H), max(0, 2 * TW + A - pad - W)
    xp = np.pad(x, ((0, 0), (lo, hi_y), (lo, hi_x), (0, 0)))[:, lo - pad:, lo - pad:]  # xp[:, i] = x[:, i - pad]
    t = np.arange(t0, t0 + TC)
    iy = 2 * (t // TW)[:, None] + np.arange(A)  # (TC, A)
    ix = 2 * (t % TW)[:, None] + np.arange(A)
    d = xp[:, iy[:, :, None], ix[:, None, :], :]  # (CI, TC, A, A, N)
    v = np.einsum("ai,ctijn,bj->abctn", bt, d, bt)
    return np.ascontiguousarray(v.reshape(A * A, CI, TC * N))


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
        launch(ip.kernel, dt, ip.grid, ip.block, src, v, CI, H, W, N, pad, TW, t0, tc, **ip.tvals)
        cupy.matmul(u, v, out=m)
        op = output_plan(KO, tc, N, R, dt.itemsize, vec_out, lim)
        launch(op.kernel, dt, op.grid, op.block, m, bias if has_bias else out, out, KO, OH, OW, N, TW, t0, tc,
               int(has_bias), **op.tvals)
    return out


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
