"""Winograd convolution (pyconvnet/cuda/ops/winograd.py, kernels/winograd.cu) against the NumPy reference.

Without a GPU: the transform matrices reproduce 1-D correlations exactly (fractions) and 2-D ones in
float64; kernels/winograd.cu carries exactly the generated tables; the whole algorithm in NumPy float32
matches the reference within 1e-4 at AlexNet's conv2-conv5 (forward and backward-data, small N); the
launch plans, chunking, dispatch rules and argument errors; each transform kernel run through the
emulator (tests/cuda_host.py) against its NumPy twin (N 1, 3, 8; odd H/W; pad 0/1/2 and negative;
packed and scalar paths; float and double); and conv_fwd / conv_bwd_data(variant="winograd") end to end
on the emulator, with CuPy replaced by NumPy-backed stand-ins (several tile chunks included).
On a GPU (marked ``gpu``), through both launch paths: conv_fwd and conv_bwd_data with
variant="winograd" over batch 1, 3, 127, 128, 129, odd C/K, pads 0-3, R 3 and 5, shared or no bias,
misaligned views, float64; NaN-poisoned outputs; ||out - ref|| / ||ref|| <= 1e-4 (float32), 1e-10
(float64); the dispatcher picks Winograd for AlexNet conv2-conv5 and the direct kernels elsewhere.
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
    assert len(names) == 12


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
        host.launch(p.name(dtype), p.grid, p.block, (xa, v, CI, H, W, N, pad, TW, t0, TC), "pp" + "i" * 8)
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
    real = wg.run
    monkeypatch.setattr(wg, "run", lambda *a, **k: calls.append(k["bwd"]) or real(*a, **k))
    rng = np.random.default_rng(21)
    with use_path(path):
        for name, (C, H, K, R, pad) in ALEXNET.items():
            calls.clear()
            _gpu_check(cp, C, H, H, 8, K, R, pad, np.float32, rng, True, f"{path} alexnet {name}", auto=True)
            assert calls == [False, True], f"{name}: the dispatcher did not pick Winograd ({calls})"
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
