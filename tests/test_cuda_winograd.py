"""Winograd convolution (pyconvnet/cuda/ops/winograd.py, kernels/winograd.cu) against the NumPy reference.

Without a GPU: the transform matrices reproduce 1-D correlations exactly (fractions) and 2-D ones in
float64; kernels/winograd.cu carries exactly the generated tables; the whole algorithm in NumPy float32
matches the reference within 1e-4 at AlexNet's conv2-conv5 (forward and backward-data, small N); the
launch plans, chunking, dispatch rules and argument errors; each transform kernel run through the
emulator (tests/cuda_host.py) against its NumPy twin (N 1, 3, 8; odd H/W; pad 0/1/2 and negative;
packed and scalar paths; float and double); and conv_fwd / conv_bwd_data(variant="winograd") end to end
on the emulator, with CuPy replaced by NumPy-backed stand-ins (several tile chunks included).
Backward-filter by duality, F(R x R, 2 x 2): the matrices in fractions, the NumPy algorithm exact in float64
and within 2e-5 in float32 at conv2-conv5, the split plans, the dy / dw transform kernels and the split
layout of the input transform on the emulator, the strided-batched cuBLAS call against a pointer-level
NumPy stand-in, and conv_bwd_filter(variant="winograd") end to end (several splits and chunks).
On a GPU (marked ``gpu``), through both launch paths: conv_fwd, conv_bwd_data and conv_bwd_filter with
variant="winograd" over batch 1, 3, 127, 128, 129, odd C/K, pads 0-3, R 3 and 5, shared or no bias,
misaligned views, float64; NaN-poisoned outputs; ||out - ref|| / ||ref|| <= 1e-4 (float32), 1e-10
(float64); the dispatcher picks Winograd for AlexNet conv2-conv5 (all three directions) and the direct
kernels elsewhere.
"""
from __future__ import annotations

import re
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.loader import entry_points
from pyconvnet.cuda.ops import conv as dconv
from pyconvnet.cuda.ops import winograd as wg
from pyconvnet.ops import conv as ref

from gpu_util import BATCHES, PATHS, check_close, install_fake_cupy, poisoned, use_path

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "kernels" / "winograd.cu"
LIM = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
SMALL = DeviceLimits(sm_count=2, max_block=1024, max_grid_x=2**31 - 1)  # emulator: few blocks
ALEXNET = {"conv2": (64, 27, 192, 5, 2), "conv3": (192, 13, 384, 3, 1), "conv4": (384, 13, 256, 3, 1),
           "conv5": (256, 13, 256, 3, 1)}  # (C, H, K, R, pad), stride 1


def _rand(rng, shape, dtype=np.float64, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# --- the transform matrices ------------------------------------------------------------------------

@pytest.mark.parametrize("R", [3, 5])
def test_matrices_reproduce_correlation_exactly(R):
    at, g, bt = wg.matrices(R)
    A = R + 1
    assert (len(at), len(at[0]), len(g), len(g[0]), len(bt), len(bt[0])) == (2, A, A, R, A, A)
    rng = np.random.default_rng(R)
    for _ in range(20):
        d = [Fraction(int(v)) for v in rng.integers(-50, 50, A)]
        w = [Fraction(int(v), int(q)) for v, q in zip(rng.integers(-50, 50, R), rng.integers(1, 9, R))]
        gw = [sum(g[a][k] * w[k] for k in range(R)) for a in range(A)]
        bd = [sum(bt[a][j] * d[j] for j in range(A)) for a in range(A)]
        y = [sum(at[i][a] * gw[a] * bd[a] for a in range(A)) for i in range(2)]
        assert y == [sum(w[k] * d[i + k] for k in range(R)) for i in range(2)]
    # 2-D in float64: Y = A^T [(G g G^T) * (B^T d B)] A is the 2 x 2 correlation
    atf, gf, btf = wg.float_matrices(R)
    for _ in range(10):
        d, w = rng.standard_normal((A, A)), rng.standard_normal((R, R))
        y = atf @ ((gf @ w @ gf.T) * (btf @ d @ btf.T)) @ atf.T
        want = np.array([[np.sum(w * d[i:i + R, j:j + R]) for j in range(2)] for i in range(2)])
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-12 * np.abs(d).max() * np.abs(w).max() * R * R)


def test_kernel_carries_the_generated_tables():
    assert wg.c_tables() in KERNEL.read_text()
    assert wg.POINTS == {3: (0, 1, -1), 5: (0, 1, -1, 2, -2)}
    at3, g3, bt3 = wg.matrices(3)  # Lavin and Gray's F(2x2, 3x3) up to row signs
    assert bt3 == [[1, 0, -1, 0], [0, 1, 1, 0], [0, 1, -1, 0], [0, 1, 0, -1]]
    assert at3 == [[1, 1, 1, 0], [0, 1, -1, 1]]


def test_bindings_register_exactly_the_entry_points():
    names = entry_points(KERNEL.read_text())
    text = (ROOT / "bindings" / "winograd.cu").read_text()
    assert sorted(n.replace(" ", "") for n in re.findall(r"PYCONVNET_KERNEL\((.*)\)", text)) == sorted(names)
    assert len(names) == 20


# --- the whole algorithm in NumPy ------------------------------------------------------------------

@pytest.mark.parametrize("layer", list(ALEXNET))
def test_numpy_float32_algorithm_matches_reference_at_alexnet(layer):
    C, H, K, R, pad = ALEXNET[layer]
    rng = np.random.default_rng(1)
    N = 2
    x = _rand(rng, (C, H, H, N))
    for wscale in (0.01, 0.05):
        w = _rand(rng, (C, R, R, K), scale=wscale)
        b = _rand(rng, (K, 1), scale=0.1)
        OH = ref.conv_out_size(H, R, pad, 1)
        y = wg.conv_np(x.astype(np.float32), w.astype(np.float32), pad, OH, OH, b.astype(np.float32))
        check_close(y.astype(np.float64), ref.conv_fwd(x, w, b, padding=pad), 1e-5, f"{layer} fwd w~{wscale}")
        dy = _rand(rng, (K, OH, OH, N))
        dx = wg.conv_np(dy.astype(np.float32), w.astype(np.float32), R - 1 - pad, H, H, bwd=True)
        check_close(dx.astype(np.float64), ref.conv_bwd_data(dy, w, (H, H), padding=pad), 1e-5,
                    f"{layer} bwd_data w~{wscale}")


@pytest.mark.parametrize("R", [3, 5])
@pytest.mark.parametrize("pad", [0, 1, 2, 3, 5])
def test_numpy_algorithm_odd_shapes_float64(R, pad):
    rng = np.random.default_rng(pad)
    C, K, H, W, N = 3, 5, 7 + R, 6 + pad, 2
    if H + 2 * pad < R or W + 2 * pad < R:
        return
    x, w, b = _rand(rng, (C, H, W, N)), _rand(rng, (C, R, R, K)), _rand(rng, (K, 1))
    OH, OW = ref.conv_out_size(H, R, pad, 1), ref.conv_out_size(W, R, pad, 1)
    check_close(wg.conv_np(x, w, pad, OH, OW, b), ref.conv_fwd(x, w, b, padding=pad), 1e-12, "fwd")
    dy = _rand(rng, (K, OH, OW, N))
    check_close(wg.conv_np(dy, w, R - 1 - pad, H, W, bwd=True), ref.conv_bwd_data(dy, w, (H, W), padding=pad),
                1e-12, "bwd_data")


# --- plans and dispatch --------------------------------------------------------------------------------

def test_plans():
    names = set(entry_points(KERNEL.read_text()))
    for R in (3, 5):
        for dt in (np.float32, np.float64):
            it = np.dtype(dt).itemsize
            f = wg.filter_plan(64, 192, R)
            assert f.grid == (6, 4) and f.block == 512 and f.name(dt) in names
            i = wg.input_plan(64, 196, 128, R, it, True, LIM)
            L = wg.input_lanes(R, it)
            assert i.name(dt) in names and i.block == 256
            assert i.grid == min(-(-64 * 196 * (128 // L) // 256), 132 * 32)
            assert wg.input_plan(3, 5, 7, R, it, True, LIM).grid == 1  # N % L != 0: scalar items
            o = wg.output_plan(5, 3, 8, R, it, False, LIM)
            assert o.name(dt) in names and o.grid == 1 and o.block == 256
    assert wg.input_lanes(3, 4) == 4 and wg.input_lanes(5, 4) == 2 and wg.input_lanes(5, 8) == 1
    assert wg.output_lanes(4) == 4 and wg.output_lanes(8) == 2
    assert wg.filter_plan(1, 1, 3).grid == (1, 1)
    with pytest.raises(ValueError, match="winograd: too many channels"):
        wg.filter_plan(65536 * 16, 4, 3)


def test_chunking():
    # AlexNet at batch 128: one chunk each
    for C, H, K, R, pad in ALEXNET.values():
        OH = H + 2 * pad - R + 1
        T = wg.tiles(OH, OH)[0] ** 2
        assert wg.chunk_tiles(T, 128, C, K, R) == T
    # a large layer is split into balanced chunks under the budget
    tc = wg.chunk_tiles(112 * 112, 128, 64, 64, 3)
    assert tc < 112 * 112 and 16 * 128 * 128 * 4 * tc <= wg.WORKSPACE_BYTES
    n = -(-112 * 112 // tc)
    assert (n - 1) * tc < 112 * 112 <= n * tc
    assert wg.chunk_tiles(10, 4, 3, 3, 3, budget=1) == 1
    assert wg.chunk_tiles(10, 4, 3, 3, 3, budget=4 * 16 * 6 * 4 * 4) == 4  # 3 chunks of <= 4 -> 4, 4, 2
    assert wg.tiles(13, 13) == (7, 7) and wg.tiles(1, 2) == (1, 1)


def test_dispatch_rules(monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    for C, H, K, R, pad in ALEXNET.values():
        assert wg.pays(np.float32, R, 1, 1, C, K) and wg.pays(np.float32, R, 1, 1, K, C)
    assert not wg.pays(np.float32, 11, 4, 1, 3, 64)          # conv1
    assert not wg.pays(np.float32, 3, 1, 1, 3, 64)           # few channels
    assert not wg.pays(np.float32, 3, 2, 1, 64, 64)          # stride 2
    assert not wg.pays(np.float32, 3, 1, 2, 64, 64)          # groups
    assert not wg.pays(np.float64, 3, 1, 1, 64, 64)          # float64: direct kernels
    assert not wg.pays(np.float32, 3, 1, 1, 64, 64, bias_shared_or_none=False)
    assert not wg.pays(np.float32, 7, 1, 1, 64, 64)
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")
    assert wg.tf32_risk() and not wg.pays(np.float32, 3, 1, 1, 64, 64)
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    monkeypatch.setenv("CUPY_TF32", "1")
    assert wg.tf32_risk() and not wg.pays(np.float32, 3, 1, 1, 64, 64)
    assert wg.applicable(3, 1, 1) == "" and "stride 2" in wg.applicable(3, 2, 1)
    assert dconv._use_winograd("conv_fwd", "winograd", np.float64, 5, 1, 1, 3, 3)
    assert not dconv._use_winograd("conv_fwd", (2, (128, 128)), np.float32, 3, 1, 1, 64, 64)


def test_expected_time_model():
    t = wg.expected_ms(192, 384, 13, 13, 128, 3, 1)
    assert t["flops"] == 2.0 * 16 * 384 * 192 * 49 * 128
    assert t["total_ms"] == pytest.approx(t["gemm_ms"] + t["mem_ms"])
    tb = wg.expected_ms(192, 384, 13, 13, 128, 3, 1, bwd=True)
    assert tb["flops"] == t["flops"]


# --- NumPy-backed stand-in for CuPy: the wrappers end to end on the emulator ------------------------

class _Dev(np.ndarray):
    """A NumPy array that the wrappers take for a CuPy array (module name, .data.ptr)."""

    @property
    def data(self):
        return SimpleNamespace(ptr=self.ctypes.data)

    def get(self):
        return np.asarray(self).copy()


_Dev.__module__ = "cupy._emulated"


def _dev(a, offset=0):
    """A _Dev copy of ``a`` placed ``offset`` elements past a 64-byte boundary."""
    a = np.asarray(a)
    buf = np.empty(a.size + 16, a.dtype)
    base = (-(buf.ctypes.data // a.itemsize)) % (64 // a.itemsize) + offset
    out = buf[base:base + a.size].reshape(a.shape)
    out[...] = a
    return out.view(_Dev)


def _host_matrix(ptr, dtype, rows, cols, ld):
    """The column-major rows x cols matrix (leading dimension ld) at host address ptr, as a NumPy view."""
    import ctypes
    it = np.dtype(dtype).itemsize
    n = (cols - 1) * ld + rows
    buf = np.frombuffer((ctypes.c_char * (n * it)).from_address(ptr), dtype)
    return np.lib.stride_tricks.as_strided(buf, (rows, cols), (it, ld * it))


def _fake_gemm_strided_batched(dtype):
    """cublas<t>gemmStridedBatched with host pointers, column-major, computed by NumPy (CPU tests)."""
    it = np.dtype(dtype).itemsize

    def gemm(handle, transa, transb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch):
        al = _host_matrix(alpha, dtype, 1, 1, 1)[0, 0]
        be = _host_matrix(beta, dtype, 1, 1, 1)[0, 0]
        for b in range(batch):
            a = _host_matrix(A + b * sA * it, dtype, *((k, m) if transa else (m, k)), lda)
            bb = _host_matrix(B + b * sB * it, dtype, *((n, k) if transb else (k, n)), ldb)
            c = _host_matrix(C + b * sC * it, dtype, m, n, ldc)
            prod = al * ((a.T if transa else a) @ (bb.T if transb else bb))
            np.copyto(c, prod if be == 0 else prod + be * c)  # beta = 0: C is not read (may hold NaN)
    return gemm


_FAKE_CUBLAS = SimpleNamespace(CUBLAS_OP_N=0, CUBLAS_OP_T=1, sgemmStridedBatched=_fake_gemm_strided_batched(np.float32),
                               dgemmStridedBatched=_fake_gemm_strided_batched(np.float64))


@pytest.fixture(scope="module")
def host():
    from cuda_host import HostModule
    return HostModule(KERNEL)


@pytest.fixture
def emulated(monkeypatch, host):
    """``import cupy`` gives NumPy-backed stand-ins, and winograd's launches run on the emulator."""
    calls = []

    def empty(shape, dtype=np.float32):
        return np.full(shape, np.nan, dtype).view(_Dev)

    def matmul(a, b, out=None):
        np.matmul(np.asarray(a), np.asarray(b), out=np.asarray(out))
        return out
    install_fake_cupy(monkeypatch, empty=empty, matmul=matmul)

    def launch(kernel, dtype, grid, block, *args, shmem=0, **tvals):
        name = kernel.instance(dtype, **tvals)
        calls.append((name, grid, block, args[2:]))
        host.launch(name, grid, block, tuple(np.asarray(a) if c == "p" else a for c, a in zip(kernel.args, args)),
                    kernel.args, shmem=shmem)
    monkeypatch.setattr(wg, "launch", launch)
    monkeypatch.setattr(wg, "_blas", lambda: (_FAKE_CUBLAS, 0))
    return calls


@pytest.mark.parametrize("R", [3, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_filter_transform_kernel_on_the_host(host, R, dtype):
    rng = np.random.default_rng(2)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for C, K in ((3, 5), (17, 33)):
        w = _rand(rng, (C, R, R, K), dtype)
        for bwd in (0, 1):
            A = R + 1
            KO, CI = (C, K) if bwd else (K, C)
            u = np.full((A * A, KO, CI), np.nan, dtype)
            p = wg.filter_plan(C, K, R)
            host.launch(p.name(dtype), p.grid, p.block, (w, u, C, K, bwd), "ppiii")
            check_close(u, wg.filter_transform_np(w, bool(bwd)), tol, f"filter R{R} C{C} K{K} bwd{bwd}")


# (CI, H, W, N, R, pad, t0, TC or None) for the input transform
INPUT_CASES = [
    (3, 5, 7, 1, 3, 1, 0, None), (2, 7, 5, 3, 3, 0, 0, None), (2, 6, 7, 8, 3, 2, 0, None),
    (3, 9, 7, 8, 5, 2, 0, None), (2, 7, 8, 3, 5, 0, 0, None), (1, 5, 5, 8, 5, 4, 0, None),
    (2, 9, 9, 4, 3, -1, 0, None), (2, 11, 9, 2, 5, -1, 0, None), (3, 7, 7, 8, 3, 1, 5, 6),
]


@pytest.mark.parametrize("case", INPUT_CASES, ids=lambda c: "C{}H{}W{}N{}R{}p{}t{}+{}".format(*c))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_input_transform_kernel_on_the_host(host, case, dtype):
    CI, H, W, N, R, pad, t0, TC = case
    A = R + 1
    OH, OW = H + 2 * pad - R + 1, W + 2 * pad - R + 1
    TH, TW = wg.tiles(OH, OW)
    TC = TH * TW - t0 if TC is None else TC
    rng = np.random.default_rng(3)
    x = _rand(rng, (CI, H, W, N), dtype)
    want = wg.input_transform_np(x, R, pad, OH, OW, t0, TC)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for offset in (0, 1):  # aligned (packed path where N allows) and misaligned (scalar path)
        xa = np.asarray(_dev(x, offset))
        v = np.asarray(_dev(np.full((A * A, CI, TC * N), np.nan, dtype)))
        p = wg.input_plan(CI, TC, N, R, x.itemsize, offset == 0, SMALL)
        host.launch(p.name(dtype), p.grid, p.block, (xa, v, CI, H, W, N, pad, TW, t0, TC, TC), "pp" + "i" * 9)
        check_close(v, want, tol, f"input {case} offset {offset}")


# (KO, OH, OW, N, R, bias, t0, TC or None) for the output transform
OUTPUT_CASES = [
    (3, 5, 7, 1, 3, True, 0, None), (2, 6, 6, 3, 3, False, 0, None), (4, 7, 5, 8, 5, True, 0, None),
    (2, 1, 2, 4, 5, False, 0, None), (3, 9, 7, 8, 3, True, 7, 9), (2, 3, 3, 5, 5, True, 1, 3),
]


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=lambda c: "K{}OH{}OW{}N{}R{}b{}t{}+{}".format(*c))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_output_transform_kernel_on_the_host(host, case, dtype):
    KO, OH, OW, N, R, has_bias, t0, TC = case
    A = R + 1
    TH, TW = wg.tiles(OH, OW)
    TC = TH * TW - t0 if TC is None else TC
    rng = np.random.default_rng(4)
    m = _rand(rng, (A * A, KO, TC * N), dtype)
    b = _rand(rng, (KO, 1), dtype) if has_bias else None
    want = wg.output_transform_np(m, R, OH, OW, N, b, t0)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for offset in (0, 1):
        y = np.asarray(_dev(np.full((KO, OH, OW, N), np.nan, dtype), offset))
        p = wg.output_plan(KO, TC, N, R, m.itemsize, offset == 0, SMALL)
        host.launch(p.name(dtype), p.grid, p.block,
                    (np.asarray(_dev(m)), b if has_bias else y, y, KO, OH, OW, N, TW, t0, TC, int(has_bias)),
                    "ppp" + "i" * 8)
        # tiles outside [t0, t0 + TC) stay NaN in both
        assert np.array_equal(np.isnan(y), np.isnan(want)), f"output {case}: written set differs"
        ok = ~np.isnan(want)
        check_close(y[ok], want[ok], tol, f"output {case} offset {offset}")


# (C, H, W, N, K, R, pad, bias) end to end through conv_fwd / conv_bwd_data on the emulator
E2E_CASES = [
    (3, 5, 6, 3, 4, 3, 1, True), (4, 7, 7, 8, 3, 3, 0, False), (2, 6, 5, 4, 5, 5, 2, True),
    (3, 5, 5, 1, 2, 5, 3, False), (2, 6, 6, 2, 3, 3, 3, True),
]


@pytest.mark.parametrize("case", E2E_CASES, ids=lambda c: "C{}H{}W{}N{}K{}R{}p{}b{}".format(*c))
def test_conv_winograd_end_to_end_on_the_host(emulated, case):
    C, H, W, N, K, R, pad, has_bias = case
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (C, H, W, N)), _rand(rng, (C, R, R, K))
    b = _rand(rng, (K, 1)) if has_bias else None
    OH, OW = ref.conv_out_size(H, R, pad, 1), ref.conv_out_size(W, R, pad, 1)
    dy = _rand(rng, (K, OH, OW, N))
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        for offset in (0, 1):
            xs, ws, dys = (_dev(a.astype(dt), offset) for a in (x, w, dy))
            bs = None if b is None else _dev(b.astype(dt), offset)
            y = dconv.conv_fwd(xs, ws, bs, padding=pad, variant="winograd",
                               out=_dev(np.full((K, OH, OW, N), np.nan, dt), offset))
            check_close(np.asarray(y), ref.conv_fwd(x, w, b, padding=pad).astype(dt), tol, f"fwd {case} {dt}")
            dx = dconv.conv_bwd_data(dys, ws, (H, W), padding=pad, variant="winograd")
            check_close(np.asarray(dx), ref.conv_bwd_data(dy, w, (H, W), padding=pad).astype(dt), tol,
                        f"bwd_data {case} {dt}")
    names = [c[0] for c in emulated]
    assert names[:3] == [f"winograd_{k}_transform<double,{R + 1}>" for k in ("filter", "input", "output")]


def test_conv_winograd_in_chunks_on_the_host(emulated, monkeypatch):
    rng = np.random.default_rng(6)
    C, H, N, K, R, pad = 3, 9, 4, 5, 3, 1
    x, w, b = _rand(rng, (C, H, H, N)), _rand(rng, (C, R, R, K)), _rand(rng, (K, 1))
    monkeypatch.setattr(wg, "WORKSPACE_BYTES", 16 * (C + K) * N * 8 * 7)  # 7 of the 25 tiles per chunk
    y = dconv.conv_fwd(_dev(x), _dev(w), _dev(b), padding=pad, variant="winograd")
    check_close(np.asarray(y), ref.conv_fwd(x, w, b, padding=pad), 1e-12, "chunked fwd")
    inputs = [c for c in emulated if c[0].startswith("winograd_input")]
    assert [(c[3][6], c[3][7]) for c in inputs] == [(0, 7), (7, 7), (14, 7), (21, 4)]  # (t0, TC)
    dy = _rand(rng, y.shape)
    dx = dconv.conv_bwd_data(_dev(dy), _dev(w), (H, H), padding=pad, variant="winograd")
    check_close(np.asarray(dx), ref.conv_bwd_data(dy, w, (H, H), padding=pad), 1e-12, "chunked bwd_data")


def test_forced_variant_errors(emulated):
    x, w = _dev(np.zeros((4, 6, 6, 2))), _dev(np.zeros((4, 3, 3, 4)))
    with pytest.raises(ValueError, match="conv_fwd: variant 'winograd' does not apply to this convolution: "
                                         "stride 2"):
        dconv.conv_fwd(x, w, stride=2, variant="winograd")
    with pytest.raises(ValueError, match="conv_fwd: variant 'winograd' does not apply .*untied bias"):
        dconv.conv_fwd(x, w, _dev(np.zeros((4 * 16, 1))), variant="winograd")
    with pytest.raises(ValueError, match="conv_bwd_data: variant 'winograd' does not apply .*filter size 1"):
        dconv.conv_bwd_data(x, _dev(np.zeros((4, 1, 1, 4))), (6, 6), variant="winograd")
    with pytest.raises(ValueError, match="conv_fwd: variant 'winograd' does not apply .*groups 2"):
        dconv.conv_fwd(x, _dev(np.zeros((2, 3, 3, 4))), groups=2, variant="winograd")
    assert emulated == []


def test_argument_checks_without_a_gpu():
    x, w = np.zeros((4, 6, 6, 2), np.float32), np.zeros((4, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="conv_fwd: x must be a CuPy array"):
        dconv.conv_fwd(x, w, variant="winograd")
    with pytest.raises(ValueError, match="conv_bwd_data: dy must be a CuPy array"):
        dconv.conv_bwd_data(x, w, (6, 6), variant="winograd")


def test_import_does_not_import_cupy():
    import subprocess
    code = "import sys, pyconvnet.cuda.ops.winograd, pyconvnet.cuda.ops.conv; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- backward-filter: F(R x R, 2 x 2) by duality --------------------------------------------------------

@pytest.mark.parametrize("R", [3, 5])
def test_bwd_filter_duality_exact(R):
    """dw_k = sum_i e_i d_{i+k} (k < R, i < 2) is G^T [(A e) * (B^T d)] with the forward's matrices."""
    at, g, bt = wg.matrices(R)
    A = R + 1
    rng = np.random.default_rng(10 + R)
    for _ in range(20):
        d = [Fraction(int(v)) for v in rng.integers(-50, 50, A)]
        e = [Fraction(int(v), int(q)) for v, q in zip(rng.integers(-50, 50, 2), rng.integers(1, 9, 2))]
        ae = [sum(at[i][a] * e[i] for i in range(2)) for a in range(A)]
        bd = [sum(bt[a][j] * d[j] for j in range(A)) for a in range(A)]
        dw = [sum(g[a][k] * ae[a] * bd[a] for a in range(A)) for k in range(R)]
        assert dw == [sum(e[i] * d[i + k] for i in range(2)) for k in range(R)]
    atf, gf, btf = wg.float_matrices(R)
    for _ in range(10):  # 2-D in float64: G^T [(A e A^T) * (B^T d B)] G
        d, e = rng.standard_normal((A, A)), rng.standard_normal((2, 2))
        dw = gf.T @ ((atf.T @ e @ atf) * (btf @ d @ btf.T)) @ gf
        want = np.array([[np.sum(e * d[i:i + 2, j:j + 2]) for j in range(R)] for i in range(R)])
        np.testing.assert_allclose(dw, want, rtol=0, atol=1e-12 * np.abs(d).max() * np.abs(e).max() * 4)


@pytest.mark.parametrize("R", [3, 5])
@pytest.mark.parametrize("pad", [0, 1, 2, 3])
def test_numpy_bwd_filter_float64_exact(R, pad):
    rng = np.random.default_rng(11 + pad)
    for H, W, N in ((7, 9, 2), (6, 6, 1), (5, 8, 3), (R - 2 * pad if R > 2 * pad else 1, 4, 2)):
        if H + 2 * pad < R or W + 2 * pad < R:
            continue
        C, K = 3, 5
        x = _rand(rng, (C, H, W, N))
        OH, OW = ref.conv_out_size(H, R, pad, 1), ref.conv_out_size(W, R, pad, 1)
        dy = _rand(rng, (K, OH, OW, N))
        want = ref.conv_bwd_filter(dy, x, R, padding=pad)
        TH, TW = wg.tiles(OH, OW)
        for TS in (None, 1, 2, 3):
            check_close(wg.bwd_filter_np(dy, x, R, pad, TS), want, 1e-12, f"R{R} p{pad} {H}x{W} TS{TS}")


@pytest.mark.parametrize("layer", list(ALEXNET))
def test_numpy_float32_bwd_filter_at_alexnet(layer):
    """Measured at N = 128 (x, dy ~ N(0, 1), reduction over 6272 / 25088 terms): conv2 5.0e-6,
    conv3-conv5 6.5e-7 (direct float32 3-4e-7); here N = 2, and x >= 0 (post-ReLU) once."""
    C, H, K, R, pad = ALEXNET[layer]
    rng = np.random.default_rng(12)
    N = 2
    OH = ref.conv_out_size(H, R, pad, 1)
    TS = wg.split_tiles(wg.tiles(OH, OH)[0] ** 2, 128, C, K, R, 4, LIM)
    for relu in (False, True):
        x = _rand(rng, (C, H, H, N))
        x = np.maximum(x, 0) if relu else x
        dy = _rand(rng, (K, OH, OH, N))
        got = wg.bwd_filter_np(dy.astype(np.float32), x.astype(np.float32), R, pad, TS)
        check_close(got.astype(np.float64), ref.conv_bwd_filter(dy, x, R, padding=pad), 2e-5,
                    f"{layer} bwd_filter relu={relu}")


def test_bwd_filter_plans():
    names = set(entry_points(KERNEL.read_text()))
    for R in (3, 5):
        for dt in (np.float32, np.float64):
            it = np.dtype(dt).itemsize
            d = wg.dy_plan(192, 49, 128, R, it, True, LIM)
            assert d.name(dt) in names and d.block == 256
            assert d.grid == min(-(-192 * 49 * (128 // wg.output_lanes(it)) // 256), 132 * 32)
            assert wg.dy_plan(3, 5, 7, R, it, True, LIM).grid == 1
            w = wg.dw_plan(64, 192, R, LIM)
            assert w.name(dt) in names and w.block == 256 and w.grid == 64 * 192 // 256
    # AlexNet at batch 128 on 132 SMs: (S, TS), one chunk each, under the workspace budget
    want = {"conv2": (11, 18), "conv3": (5, 10), "conv4": (5, 10), "conv5": (4, 13)}
    for name, (C, H, K, R, pad) in ALEXNET.items():
        OH = H + 2 * pad - R + 1
        T = wg.tiles(OH, OH)[0] ** 2
        TS = wg.split_tiles(T, 128, C, K, R, 4, LIM)
        S = -(-T // TS)
        assert (S, TS) == want[name], name
        assert wg.splits_per_chunk(S, TS, 128, C, K, R) == S
        assert (R + 1) ** 2 * S * ((C + K) * TS * 128 + C * K) * 4 <= wg.WORKSPACE_BYTES
    assert wg.split_tiles(1, 1, 1, 1, 3, 4, LIM) == 1
    # a huge layer: one split's V and D fit the budget; chunks are balanced
    TS = wg.split_tiles(112 * 112, 128, 64, 64, 3, 4, LIM)
    assert 16 * 128 * TS * 128 * 4 <= wg.WORKSPACE_BYTES
    S = -(-112 * 112 // TS)
    P = wg.splits_per_chunk(S, TS, 128, 64, 64, 3)
    assert P < S and 16 * P * (128 * TS * 128 + 64 * 64) * 4 <= wg.WORKSPACE_BYTES
    n = -(-S // P)
    assert (n - 1) * P < S <= n * P
    assert wg.splits_per_chunk(7, 3, 4, 3, 3, 3, budget=1) == 1
    assert wg.splits_per_chunk(7, 3, 4, 3, 3, 3, budget=16 * (6 * 3 * 4 + 9) * 4 * 3) == 3  # 3, 3, 1 -> 3


def test_bwd_filter_expected_time_model():
    t = wg.expected_bwd_filter_ms(192, 384, 13, 13, 128, 3, 1)
    assert (t["splits"], t["tiles_per_split"]) == (5, 10)
    assert t["flops"] == 2.0 * 16 * 192 * 384 * 50 * 128
    assert t["total_ms"] == pytest.approx(t["gemm_ms"] + t["mem_ms"])


# (CI, H, W, N, R, pad, t0, TC, TS): the split layout, tiles past the end included
SPLIT_CASES = [
    (3, 5, 7, 3, 3, 1, 0, 12, 4), (2, 7, 6, 8, 3, 0, 0, 9, 3), (2, 6, 7, 1, 5, 2, 2, 10, 5),
    (3, 9, 7, 8, 5, 2, 4, 12, 2), (2, 5, 5, 4, 3, 2, 5, 8, 1),
]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda c: "C{}H{}W{}N{}R{}p{}t{}+{}/{}".format(*c))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_split_transforms_on_the_host(host, case, dtype):
    """winograd_input_transform and winograd_dy_transform in the split layout against their NumPy twins."""
    CI, H, W, N, R, pad, t0, TC, TS = case
    A = R + 1
    OH, OW = H + 2 * pad - R + 1, W + 2 * pad - R + 1
    TH, TW = wg.tiles(OH, OW)
    rng = np.random.default_rng(13)
    x = _rand(rng, (CI, H, W, N), dtype)
    dy = _rand(rng, (CI + 1, OH, OW, N), dtype)
    want_v = wg.input_transform_np(x, R, pad, OH, OW, t0, TC, TS)
    want_d = wg.dy_transform_np(dy, R, t0, TC, TS)
    assert want_v.shape == (TC // TS * A * A, CI, TS * N) and want_d.shape == (TC // TS * A * A, CI + 1, TS * N)
    if t0 + TC > TH * TW:  # tiles past the end: zeros in D
        last = (t0 + TC - TH * TW)
        tail = want_d.reshape(TC // TS, A * A, CI + 1, TS, N)[-1, :, :, TS - min(last, TS):]
        assert not tail.any()
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for offset in (0, 1):
        xa, dya = np.asarray(_dev(x, offset)), np.asarray(_dev(dy, offset))
        v = np.asarray(_dev(np.full(want_v.shape, np.nan, dtype)))
        d = np.asarray(_dev(np.full(want_d.shape, np.nan, dtype)))
        p = wg.input_plan(CI, TC, N, R, x.itemsize, offset == 0, SMALL)
        host.launch(p.name(dtype), p.grid, p.block, (xa, v, CI, H, W, N, pad, TW, t0, TC, TS), "pp" + "i" * 9)
        check_close(v, want_v, tol, f"input split {case} offset {offset}")
        p = wg.dy_plan(CI + 1, TC, N, R, x.itemsize, offset == 0, SMALL)
        host.launch(p.name(dtype), p.grid, p.block, (dya, d, CI + 1, OH, OW, N, TW, t0, TC, TS), "pp" + "i" * 8)
        check_close(d, want_d, tol, f"dy {case} offset {offset}")


@pytest.mark.parametrize("R", [3, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_dw_transform_kernel_on_the_host(host, R, dtype):
    rng = np.random.default_rng(14)
    A = R + 1
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for C, K, S in ((1, 1, 1), (3, 5, 3), (17, 33, 2)):
        mb = _rand(rng, (S * A * A, C, K), dtype)
        for offset in (0, 1):
            dw = np.asarray(_dev(np.full((C, R, R, K), np.nan, dtype), offset))
            p = wg.dw_plan(C, K, R, SMALL)
            host.launch(p.name(dtype), p.grid, p.block, (np.asarray(_dev(mb)), dw, C, K, S), "ppiii")
            check_close(dw, wg.dw_transform_np(mb, R), tol, f"dw R{R} C{C} K{K} S{S}")


def test_gemm_nt_call(emulated):
    """The cuBLAS arguments of gemm_nt (through the pointer-level stand-in): MB[b] = V[b] D[b]^T + beta MB[b]."""
    rng = np.random.default_rng(15)
    for dt in (np.float32, np.float64):
        B, C, K, depth = 3, 5, 7, 11
        v, d = _rand(rng, (B, C, depth), dt), _rand(rng, (B, K, depth), dt)
        mb = _dev(np.full((B, C, K), np.nan, dt))
        wg.gemm_nt(_dev(v).ravel(), _dev(d).ravel(), mb.reshape(-1), B, C, K, depth, 0.0)
        want = np.matmul(v, d.transpose(0, 2, 1))
        check_close(np.asarray(mb), want, 1e-6, f"gemm_nt beta 0 {dt}")
        wg.gemm_nt(_dev(v).ravel(), _dev(d).ravel(), mb.reshape(-1), B - 1, C, K, depth, 1.0)
        want[:B - 1] *= 2
        check_close(np.asarray(mb), want, 1e-6, f"gemm_nt beta 1 {dt}")


# (C, H, W, N, K, R, pad, TS) end to end through conv_bwd_filter on the emulator
BWF_CASES = [
    (3, 5, 6, 3, 4, 3, 1, None), (4, 7, 7, 8, 3, 3, 0, 2), (2, 6, 5, 4, 5, 5, 2, None),
    (3, 5, 5, 1, 2, 5, 3, 3), (2, 6, 6, 2, 3, 3, 3, 4), (2, 3, 4, 5, 3, 3, 1, 1),
]


@pytest.mark.parametrize("case", BWF_CASES, ids=lambda c: "C{}H{}W{}N{}K{}R{}p{}TS{}".format(*c))
def test_conv_bwd_filter_winograd_end_to_end_on_the_host(emulated, case):
    C, H, W, N, K, R, pad, TS = case
    rng = np.random.default_rng(16)
    x = _rand(rng, (C, H, W, N))
    OH, OW = ref.conv_out_size(H, R, pad, 1), ref.conv_out_size(W, R, pad, 1)
    dy = _rand(rng, (K, OH, OW, N))
    want = ref.conv_bwd_filter(dy, x, R, padding=pad)
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        for offset in (0, 1):
            emulated.clear()
            dw = dconv.conv_bwd_filter(_dev(dy.astype(dt), offset), _dev(x.astype(dt), offset), R, padding=pad,
                                       variant="winograd", chunk=TS,
                                       out=_dev(np.full((C, R, R, K), np.nan, dt), offset))
            check_close(np.asarray(dw), want.astype(dt), tol, f"bwd_filter {case} {np.dtype(dt)} offset {offset}")
            names = [c[0] for c in emulated]
            T = "float" if dt == np.float32 else "double"
            assert names == [f"winograd_{k}_transform<{T},{R + 1}>" for k in ("input", "dy", "dw")]


def test_conv_bwd_filter_winograd_in_chunks_on_the_host(emulated, monkeypatch):
    """Several chunks of splits: the GEMM accumulates (beta 1) into the partial sums after the first."""
    rng = np.random.default_rng(17)
    C, H, N, K, R, pad = 3, 9, 4, 5, 3, 1  # 25 tiles
    x, dy = _rand(rng, (C, H, H, N)), _rand(rng, (K, H, H, N))
    TS = 3  # 9 splits of 3 tiles (27 >= 25: the last split has 2 tiles past the end)
    per_split = 16 * ((C + K) * TS * N + C * K) * 8
    monkeypatch.setattr(wg, "WORKSPACE_BYTES", per_split * 4)  # 4 splits per chunk: 4, 4, 1 -> balanced 3, 3, 3
    dw = dconv.conv_bwd_filter(_dev(dy), _dev(x), R, padding=pad, variant="winograd", chunk=TS)
    check_close(np.asarray(dw), ref.conv_bwd_filter(dy, x, R, padding=pad), 1e-12, "chunked bwd_filter")
    inputs = [c for c in emulated if c[0].startswith("winograd_input")]
    assert [(c[3][6], c[3][7], c[3][8]) for c in inputs] == [(0, 9, 3), (9, 9, 3), (18, 9, 3)]  # (t0, TC, TS)
    assert [c[3][2] for c in emulated if c[0].startswith("winograd_dw")] == [3]  # S = P = 3 partial sums


def test_conv_bwd_filter_dispatch_on_the_host(emulated, monkeypatch):
    """variant=None: Winograd for a float32 stride-1 3x3 layer with C, K >= 64, not inside a graph capture."""
    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    rng = np.random.default_rng(18)
    C, K, H, N = 64, 65, 2, 1
    x, dy = _rand(rng, (C, H, H, N), np.float32), _rand(rng, (K, H, H, N), np.float32)
    dw = dconv.conv_bwd_filter(_dev(dy), _dev(x), 3, padding=1)
    check_close(np.asarray(dw), ref.conv_bwd_filter(dy, x, 3, padding=1), 1e-5, "auto bwd_filter")
    assert [c[0] for c in emulated] == [f"winograd_{k}_transform<float,4>" for k in ("input", "dy", "dw")]
    from pyconvnet.cuda import graph
    monkeypatch.setattr(graph, "cublas_allowed", lambda: False)
    assert not dconv._use_winograd("conv_bwd_filter", None, np.float32, 3, 1, 1, 64, 65)
    assert dconv._use_winograd("conv_bwd_filter", "winograd", np.float32, 3, 1, 1, 64, 65)


def test_conv_bwd_filter_forced_variant_errors(emulated):
    x, dy = _dev(np.zeros((4, 6, 6, 2))), _dev(np.zeros((4, 6, 6, 2)))
    with pytest.raises(ValueError, match="conv_bwd_filter: variant 'winograd' does not apply .*stride 2"):
        dconv.conv_bwd_filter(_dev(np.zeros((4, 4, 4, 2))), x, 3, padding=1, stride=2, variant="winograd")
    with pytest.raises(ValueError, match="conv_bwd_filter: variant 'winograd' does not apply .*groups 2"):
        dconv.conv_bwd_filter(dy, x, 3, padding=1, groups=2, variant="winograd")
    with pytest.raises(ValueError, match="conv_bwd_filter: variant 'winograd' does not apply .*filter size 1"):
        dconv.conv_bwd_filter(dy, x, 1, variant="winograd")
    assert emulated == []
    with pytest.raises(ValueError, match="conv_bwd_filter: x must be a CuPy array"):
        dconv.conv_bwd_filter(dy, np.zeros((4, 6, 6, 2)), 3, padding=1, variant="winograd")


# --- on the GPU --------------------------------------------------------------------------------------

# (C, H, W, K, R, pad) for the GPU grid: odd C/K, pads 0..3 (3 > R - 1 for R = 3), odd sizes, R 3 and 5
GPU_GRID = [(3, 7, 9, 5, 3, 1), (17, 13, 13, 33, 3, 1), (33, 9, 8, 17, 3, 0), (5, 6, 7, 7, 3, 3),
            (19, 11, 11, 21, 5, 2), (7, 9, 10, 9, 5, 0), (16, 8, 8, 16, 5, 4)]


def _gpu_check(cp, C, H, W, N, K, R, pad, dtype, rng, bias, what, auto=False):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    x, w = _rand(rng, (C, H, W, N), dtype), _rand(rng, (C, R, R, K), dtype, 0.05)
    b = _rand(rng, (K, 1), dtype) if bias else None
    OH, OW = ref.conv_out_size(H, R, pad, 1), ref.conv_out_size(W, R, pad, 1)
    dy = _rand(rng, (K, OH, OW, N), dtype)
    v = None if auto else "winograd"
    y = dconv.conv_fwd(cp.asarray(x), cp.asarray(w), None if b is None else cp.asarray(b), padding=pad,
                       out=poisoned((K, OH, OW, N), dtype), variant=v)
    check_close(y.get(), ref.conv_fwd(x, w, b, padding=pad), tol, f"{what} fwd")
    dx = dconv.conv_bwd_data(cp.asarray(dy), cp.asarray(w), (H, W), padding=pad, out=poisoned((C, H, W, N), dtype),
                             variant=v)
    check_close(dx.get(), ref.conv_bwd_data(dy, w, (H, W), padding=pad), tol, f"{what} bwd_data")
    dw = dconv.conv_bwd_filter(cp.asarray(dy), cp.asarray(x), R, padding=pad, out=poisoned((C, R, R, K), dtype),
                               variant=v)
    check_close(dw.get(), ref.conv_bwd_filter(dy, x, R, padding=pad), tol, f"{what} bwd_filter")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_winograd_matches_reference(path):
    import cupy as cp

    rng = np.random.default_rng(20)
    with use_path(path):
        for C, H, W, K, R, pad in GPU_GRID:
            for i, N in enumerate(BATCHES):
                _gpu_check(cp, C, H, W, N, K, R, pad, np.float32, rng, i % 2 == 0,
                           f"{path} C{C} H{H} W{W} K{K} R{R} p{pad} N{N}")
        for C, H, W, K, R, pad in GPU_GRID[:3] + GPU_GRID[4:5]:
            _gpu_check(cp, C, H, W, 3, K, R, pad, np.float64, rng, True, f"{path} float64 C{C} R{R} p{pad}")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_winograd_alexnet_layers_and_dispatch(path, monkeypatch):
    import cupy as cp

    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    calls = []
    real, real_bwf = wg.run, wg.run_bwd_filter
    monkeypatch.setattr(wg, "run", lambda *a, **k: calls.append(k["bwd"]) or real(*a, **k))
    monkeypatch.setattr(wg, "run_bwd_filter", lambda *a, **k: calls.append("bwd_filter") or real_bwf(*a, **k))
    rng = np.random.default_rng(21)
    with use_path(path):
        for name, (C, H, K, R, pad) in ALEXNET.items():
            calls.clear()
            _gpu_check(cp, C, H, H, 8, K, R, pad, np.float32, rng, True, f"{path} alexnet {name}", auto=True)
            assert calls == [False, True, "bwd_filter"], f"{name}: the dispatcher did not pick Winograd ({calls})"
        calls.clear()  # the direct kernels elsewhere: conv1 (stride 4), few channels, float64
        _gpu_check(cp, 3, 13, 13, 4, 16, 3, 1, np.float32, rng, True, f"{path} C3", auto=True)
        _gpu_check(cp, 32, 9, 9, 4, 32, 3, 1, np.float64, rng, True, f"{path} f64", auto=True)
        assert calls == []


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_winograd_misaligned_and_large_batch(path):
    import cupy as cp

    rng = np.random.default_rng(22)
    C, H, K, R, pad, N = 20, 9, 24, 3, 1, 128
    x, w, b = _rand(rng, (C, H, H, N), np.float32), _rand(rng, (C, R, R, K), np.float32, 0.05), None
    dy = _rand(rng, (K, H, H, N), np.float32)
    with use_path(path):
        buf = cp.empty(x.size + 1, cp.float32)
        gx = buf[1:].reshape(x.shape)  # 4 bytes past an aligned address: the scalar paths
        gx[...] = cp.asarray(x)
        obuf = cp.full(K * H * H * N + 1, cp.nan, cp.float32)
        y = dconv.conv_fwd(gx, cp.asarray(w), padding=pad, out=obuf[1:].reshape(K, H, H, N), variant="winograd")
        check_close(y.get(), ref.conv_fwd(x, w, b, padding=pad), 1e-4, f"{path} misaligned fwd")
        dx = dconv.conv_bwd_data(cp.asarray(dy), cp.asarray(w), (H, H), padding=pad, variant="winograd")
        check_close(dx.get(), ref.conv_bwd_data(dy, w, (H, H), padding=pad), 1e-4, f"{path} bwd_data new out")
        with pytest.raises(ValueError, match="conv_fwd: variant 'winograd' does not apply .*stride 2"):
            dconv.conv_fwd(gx, cp.asarray(w), stride=2, variant="winograd")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_winograd_bwd_filter_splits_chunks_misaligned(path, monkeypatch):
    """Backward-filter with forced tiles per split, several chunks (cuBLAS beta = 1), misaligned views."""
    import cupy as cp

    rng = np.random.default_rng(23)
    with use_path(path):
        for C, H, K, R, pad, N in ((65, 11, 67, 3, 1, 129), (64, 10, 72, 5, 2, 128), (70, 7, 66, 3, 0, 3)):
            x = _rand(rng, (C, H, H, N), np.float32)
            OH = ref.conv_out_size(H, R, pad, 1)
            dy = _rand(rng, (K, OH, OH, N), np.float32)
            want = ref.conv_bwd_filter(dy, x, R, padding=pad)
            T = wg.tiles(OH, OH)[0] ** 2
            for TS in (None, 1, 4, T):
                dw = dconv.conv_bwd_filter(cp.asarray(dy), cp.asarray(x), R, padding=pad, chunk=TS,
                                           out=poisoned((C, R, R, K), np.float32), variant="winograd")
                check_close(dw.get(), want, 1e-4, f"{path} C{C} K{K} R{R} N{N} TS{TS}")
            AA = (R + 1) ** 2
            with monkeypatch.context() as m:  # two splits per chunk
                m.setattr(wg, "WORKSPACE_BYTES", 2 * AA * ((C + K) * 2 * N + C * K) * 4)
                dw = dconv.conv_bwd_filter(cp.asarray(dy), cp.asarray(x), R, padding=pad, chunk=2,
                                           out=poisoned((C, R, R, K), np.float32), variant="winograd")
                check_close(dw.get(), want, 1e-4, f"{path} chunked C{C} K{K} R{R} N{N}")
            xb, yb = cp.empty(x.size + 1, cp.float32), cp.empty(dy.size + 1, cp.float32)
            gx, gy = xb[1:].reshape(x.shape), yb[1:].reshape(dy.shape)  # 4 bytes past aligned: scalar paths
            gx[...], gy[...] = cp.asarray(x), cp.asarray(dy)
            ob = cp.full(C * R * R * K + 1, cp.nan, cp.float32)
            dw = dconv.conv_bwd_filter(gy, gx, R, padding=pad, out=ob[1:].reshape(C, R, R, K), variant="winograd")
            check_close(dw.get(), want, 1e-4, f"{path} misaligned C{C} K{K} R{R} N{N}")
        with pytest.raises(ValueError, match="conv_bwd_filter: variant 'winograd' does not apply .*groups 2"):
            dconv.conv_bwd_filter(cp.asarray(dy), cp.asarray(x), R, padding=pad, groups=2, variant="winograd")
