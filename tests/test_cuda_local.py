"""pyconvnet.cuda.ops.local (kernels/local.cu) against the NumPy reference pyconvnet.ops.local.

Without a GPU: the kernel code itself on the CPU through the emulator (tests/cuda_host.py) against the
reference at small shapes (several tiles in every grid dimension, partial tiles, off-image taps, stride
larger than the filter so that some pixels are in no window, groups, the 16-byte and the scalar paths
with misaligned data), plus the kernel signatures, the launch configurations, what the wrappers pass
to a launch and the argument checks. On a GPU (tests marked ``gpu``): forward, backward-data and
backward-filter, float32 and float64, through both launch paths, over batch sizes 1, 3, 127, 128, 129,
channel/filter counts 1, 3, 5, 17, 32, 34, 64, filter sizes 1, 3, 5, strides 1, 2, 4, padding 0 and
> 0 and groups 1 and 2, with outputs poisoned with NaN; ||out - ref|| / ||ref|| <= 1e-4 (float32).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pyconvnet.cuda import loader, use_launch_path
from pyconvnet.cuda.ops import local as dev
from pyconvnet.ops import local as ref
from pyconvnet.ops.conv import conv_out_size

from gpu_util import BATCHES, PATHS, check_close, poisoned, use_path, FakeDeviceArray, install_fake_cupy

KERNEL = Path(__file__).resolve().parent.parent / "kernels" / "local.cu"
TOL = {np.float32: 1e-4, np.float64: 1e-10}
CTYPE = {np.float32: "float", np.float64: "double"}


def _case_id(case):
    return "C{}H{}W{}N{}-R{}K{}-p{}s{}g{}".format(*case)


def _geometry(case):
    C, H, W, N, R, K, p, s, g = case
    return conv_out_size(H, R, p, s), conv_out_size(W, R, p, s)


def _problem(case, dtype, seed=0):
    """Random x, w, b, dy of ``case`` and the reference y, dx, dw."""
    C, H, W, N, R, K, p, s, g = case
    OH, OW = _geometry(case)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((C, H, W, N)).astype(dtype)
    w = rng.standard_normal((OH * OW, C // g, R, R, K)).astype(dtype)
    b = rng.standard_normal((K * OH * OW, 1)).astype(dtype)
    dy = rng.standard_normal((K, OH, OW, N)).astype(dtype)
    kw = dict(padding=p, stride=s, groups=g)
    want = dict(y=ref.local_fwd(x, w, b, **kw), dx=ref.local_bwd_data(dy, w, (H, W), **kw),
                dw=ref.local_bwd_filter(dy, x, R, **kw))
    return dict(x=x, w=w, b=b, dy=dy), want, kw


# --- without a GPU ------------------------------------------------------------------------------------

def test_kernel_signatures_match_the_wrappers():
    """Each entry point takes exactly the arguments its Kernel's signature letters describe."""
    text = KERNEL.read_text()
    names = [f"{k}<{t}>" for k in ("local_fwd", "local_bwd_data", "local_bwd_filter") for t in ("float", "double")]
    assert loader.entry_points(text) == names
    for k in (dev.FWD, dev.BWD_DATA, dev.BWD_FILTER):
        assert k.source == "local"
        for ctype in ("float", "double"):
            m = re.search(rf"template __global__ void {k.name}<{ctype}>\(([^)]*)\);", text)
            params = [p.strip() for p in m[1].split(",")]
            assert "".join("p" if p.endswith(f"{ctype}*") else "i" if p == "int" else "?" for p in params) == k.args
            outputs = [not p.startswith("const") for p in params if p.endswith("*")]
            assert outputs == [False] * (len(outputs) - 1) + [True]  # inputs const, the last pointer written


def test_launch_configs():
    # 32->32 3x3 p1 on 8x8, batch 128: 64 positions x 2 image tiles x 1 filter tile
    assert dev.local_fwd_config(64, 128, 32, 1) == ((64, 2, 1), 128)
    assert dev.local_fwd_config(169, 129, 64, 2) == ((169, 3, 2), 128)   # Kg = 32: one tile per group
    assert dev.local_fwd_config(1, 1, 66, 2) == ((1, 1, 4), 128)         # Kg = 33: two tiles per group
    assert dev.local_bwd_data_config(8, 8, 128, 64, 1) == ((64, 2, 2), 128)
    assert dev.local_bwd_data_config(5, 3, 3, 34, 2) == ((15, 1, 2), 128)
    assert dev.local_bwd_filter_config(64, 576, 32, 1) == ((64, 9, 1), 128)
    assert dev.local_bwd_filter_config(9, 65, 34, 2) == ((9, 2, 2), 128)
    with pytest.raises(ValueError, match=r"local_fwd: problem too large for one launch: grid 1x1x65536"):
        dev.local_fwd_config(1, 1, 65536, 65536)


@pytest.fixture
def fake_cupy(monkeypatch):
    """``import cupy`` gives a stand-in whose arrays are FakeDeviceArray; launch caches start empty."""
    fake = install_fake_cupy(monkeypatch, empty=lambda shape, dtype: FakeDeviceArray(shape, dtype, 0x7000))
    return fake


def test_argument_checks_without_a_gpu(fake_cupy):
    x, w = np.zeros((4, 5, 5, 2), np.float32), np.zeros((9, 2, 3, 3, 4), np.float32)
    dy = np.zeros((4, 3, 3, 2), np.float32)
    with pytest.raises(ValueError, match="local_fwd: x must be a CuPy array .* got numpy.ndarray"):
        dev.local_fwd(x, w, groups=2)
    with pytest.raises(ValueError, match="local_bwd_data: dy must be a CuPy array"):
        dev.local_bwd_data(dy, w, (5, 5), groups=2)
    with pytest.raises(ValueError, match="local_bwd_filter: x must be a CuPy array"):
        dev.local_bwd_filter(FakeDeviceArray(dy.shape), x, 3, groups=2)
    with pytest.raises(ValueError, match="local_fwd: stride must be >= 1, got 0"):
        dev.local_fwd(x, w, stride=0, groups=2)

    # The reference's messages, with (fake) device arrays.
    fx, fw, fdy = (FakeDeviceArray(a.shape) for a in (x, w, dy))
    with pytest.raises(ValueError, match=r"local_fwd: w \(9, 2, 3, 3, 4\) must have OH\*OW = 5\*5 = 25 filter "
                                         r"banks"):
        dev.local_fwd(fx, fw, padding=1, groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: b must have shape \(36, 1\) \(K=4, OH=3, OW=3\), got "
                                         r"\(4, 1\)"):
        dev.local_fwd(fx, fw, FakeDeviceArray((4, 1)), groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: w \(9, 2, 3, 3, 4\) has 2 channels per group, but "
                                         r"x \(4, 5, 5, 2\) with groups=1 has 4"):
        dev.local_fwd(fx, fw)
    with pytest.raises(ValueError, match="local_fwd: inputs must share one dtype"):
        dev.local_fwd(fx, FakeDeviceArray(w.shape, np.float64), groups=2)
    with pytest.raises(ValueError, match="local_fwd: x must be C-contiguous"):
        dev.local_fwd(FakeDeviceArray(x.shape, c_contiguous=False), fw, groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: out must have shape \(4, 3, 3, 2\), got \(4, 3, 3, 3\)"):
        dev.local_fwd(fx, fw, groups=2, out=FakeDeviceArray((4, 3, 3, 3)))
    with pytest.raises(ValueError, match="local_fwd: out must be a CuPy array"):
        dev.local_fwd(fx, fw, groups=2, out=np.zeros((4, 3, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"local_bwd_data: dy must have shape \(4, 3, 3, 2\)"):
        dev.local_bwd_data(FakeDeviceArray((4, 2, 3, 2)), fw, (5, 5), groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_data: w \(9, 2, 3, 3, 4\) must have OH\*OW"):
        dev.local_bwd_data(fdy, fw, (6, 6), groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_data: img_size must be a pair"):
        dev.local_bwd_data(fdy, fw, (5, 5, 1), groups=2)
    with pytest.raises(ValueError, match="local_bwd_data: inputs must share one dtype, got out=float64"):
        dev.local_bwd_data(fdy, fw, (5, 5), groups=2, out=FakeDeviceArray(x.shape, np.float64))
    with pytest.raises(ValueError, match=r"local_bwd_filter: dy must have shape \(4, 5, 5, 2\)"):
        dev.local_bwd_filter(fdy, fx, 3, padding=1, groups=2)
    with pytest.raises(ValueError, match="local_bwd_filter: padding must be >= 0, got -2"):
        dev.local_bwd_filter(fdy, fx, 3, padding=-2, groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_filter: filters K=4 of dy \(4, 3, 3, 2\) are not "
                                         r"divisible by groups=3"):
        dev.local_bwd_filter(fdy, FakeDeviceArray((3, 5, 5, 2)), 3, groups=3)
    with pytest.raises(ValueError, match=r"local_bwd_filter: out must have shape \(9, 2, 3, 3, 4\)"):
        dev.local_bwd_filter(fdy, fx, 3, groups=2, out=FakeDeviceArray((9, 4, 3, 3, 4)))


def test_rawmodule_launches(fake_cupy, monkeypatch):
    """What each wrapper hands to a launch: name, grid, block and exactly typed arguments."""
    calls = []

    class Module:
        def get_function(self, name):
            return lambda grid, block, args, shared_mem=0: calls.append((name, grid, block, args, shared_mem))

    monkeypatch.setattr(loader, "rawmodule", lambda source: Module())
    # C=6, 7x7, N=129, R=3, K=10, padding 1, stride 2, groups 2: OH = OW = 4
    x, w = FakeDeviceArray((6, 7, 7, 129), ptr=0x1000), FakeDeviceArray((16, 3, 3, 3, 10), ptr=0x2000)
    b, dy = FakeDeviceArray((160, 1), ptr=0x3000), FakeDeviceArray((10, 4, 4, 129), ptr=0x4000)
    geo = (6, 7, 7, 129, 3, 10, 4, 4, 1, 2, 2)
    with use_launch_path("rawmodule"):
        y = dev.local_fwd(x, w, b, padding=1, stride=2, groups=2)
        y2 = dev.local_fwd(x, w, padding=1, stride=2, groups=2, out=dy)
        dx = dev.local_bwd_data(dy, w, (7, 7), padding=1, stride=2, groups=2)
        dw = dev.local_bwd_filter(dy, x, 3, padding=1, stride=2, groups=2)
    assert y.shape == (10, 4, 4, 129) and y2 is dy and dx.shape == x.shape and dw.shape == w.shape
    (n1, g1, b1, a1, s1), (n2, _, _, a2, _), (n3, g3, b3, a3, _), (n4, g4, b4, a4, _) = calls
    assert (n1, g1, b1, s1) == ("local_fwd<float>", (16, 3, 2), (128, 1, 1), 0)
    assert a1[:4] == (x, w, b, y) and a1[4:] == geo + (1,)
    assert all(type(v) is np.int32 for v in a1[4:])
    assert n2 == "local_fwd<float>" and a2[:4] == (x, w, dy, dy) and a2[-1] == 0  # b absent: not read
    assert (n3, g3, b3) == ("local_bwd_data<float>", (49, 3, 2), (128, 1, 1))
    assert a3[:3] == (dy, w, dx) and a3[3:] == geo and all(type(v) is np.int32 for v in a3[3:])
    assert (n4, g4, b4) == ("local_bwd_filter<float>", (16, 1, 2), (128, 1, 1))
    assert a4[:3] == (dy, x, dw) and a4[3:] == geo
    calls.clear()
    with use_launch_path("rawmodule"):  # empty outputs launch nothing; N = 0 still zeroes dw
        assert dev.local_fwd(FakeDeviceArray((6, 7, 7, 0)), w, padding=1, stride=2, groups=2).shape == \
            (10, 4, 4, 0)
        dev.local_bwd_filter(FakeDeviceArray((10, 4, 4, 0), np.float64), FakeDeviceArray((6, 7, 7, 0), np.float64),
                             3, padding=1, stride=2, groups=2)
    assert [c[0] for c in calls] == ["local_bwd_filter<double>"]


# --- the kernel code on the host (tests/cuda_host.py) ----------------------------------------------

# Small enough for the emulator, large enough for several tiles where it matters.
HOST_CASES = [  # C, H, W, N, R, K, padding, stride, groups
    (3, 5, 5, 5, 3, 5, 1, 1, 1),      # off-image taps on every side
    (4, 6, 5, 8, 3, 6, 0, 2, 2),      # groups 2, stride 2, the last window overhangs; N % 4 == 0
    (2, 4, 4, 4, 2, 8, 1, 1, 1),      # Kg % 4 == 0 and N % 4 == 0: every 16-byte path when aligned
    (8, 3, 3, 67, 3, 33, 0, 1, 1),    # 2 image tiles, 2 filter tiles, CRR = 72: 2 row tiles, 5 chunks
    (33, 2, 2, 3, 1, 17, 0, 1, 1),    # 2 channel tiles in bwd_data, Kg = 17: 2 chunks
    (3, 10, 10, 2, 3, 4, 1, 4, 1),    # stride 4 > R: pixels in no window get 0
    (6, 5, 5, 2, 3, 9, 2, 2, 3),      # groups 3, padding 2
    (1, 3, 3, 1, 1, 1, 0, 1, 1),      # everything 1
]


@pytest.fixture(scope="module")
def host():
    cuda_host = pytest.importorskip("cuda_host")
    return cuda_host.HostModule(KERNEL)


def _aligned(values, offset):
    """A copy of ``values`` (same shape, C-contiguous) ``offset`` elements past a 16-byte boundary."""
    buf = np.empty(values.size + 8, values.dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % (16 // buf.itemsize) + offset
    out = buf[base:base + values.size].reshape(values.shape)
    out[...] = values
    return out


def _host_run(host, case, dtype, ins, offset, schedule=None):
    """y, dx, dw computed by the three kernels on the host from copies of ``ins`` at ``offset``, the
    threads (and blocks) run in the emulator's ``schedule`` order."""
    C, H, W, N, R, K, p, s, g = case
    OH, OW = _geometry(case)
    ct = CTYPE[dtype]
    x, w, b, dy = (_aligned(ins[k], offset) for k in ("x", "w", "b", "dy"))
    y, dx, dw = (_aligned(np.full(shape, np.nan, dtype), offset)
                 for shape in ((K, OH, OW, N), x.shape, w.shape))
    geo = [C, H, W, N, R, K, OH, OW, p, s, g]
    grid, block = dev.local_fwd_config(OH * OW, N, K, g)
    host.launch(f"local_fwd<{ct}>", grid, block, [x, w, b, y] + geo + [1], dev.FWD.args, schedule=schedule)
    grid, block = dev.local_bwd_data_config(H, W, N, C, g)
    host.launch(f"local_bwd_data<{ct}>", grid, block, [dy, w, dx] + geo, dev.BWD_DATA.args, schedule=schedule)
    grid, block = dev.local_bwd_filter_config(OH * OW, C // g * R * R, K, g)
    host.launch(f"local_bwd_filter<{ct}>", grid, block, [dy, x, dw] + geo, dev.BWD_FILTER.args, schedule=schedule)
    return dict(y=y, dx=dx, dw=dw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", HOST_CASES, ids=_case_id)
def test_kernel_code_on_the_host(host, case, dtype):
    ins, want, _ = _problem(case, dtype)
    for offset in (0, 1):  # 16-byte aligned (vector paths where the sizes allow), then misaligned
        got = _host_run(host, case, dtype, ins, offset)
        for k in ("y", "dx", "dw"):
            check_close(got[k], want[k], TOL[dtype], f"host {k} {_case_id(case)} offset {offset}")


@pytest.mark.parametrize("schedule", ["reverse", "random"])
def test_kernel_thread_orders_on_the_host(host, schedule):
    """Other thread and block orders: a missing barrier around the shared tiles would show here."""
    for case in (HOST_CASES[0], HOST_CASES[3]):
        ins, want, _ = _problem(case, np.float32, seed=2)
        got = _host_run(host, case, np.float32, ins, 0, schedule)
        for k in ("y", "dx", "dw"):
            check_close(got[k], want[k], TOL[np.float32], f"host {k} {_case_id(case)} {schedule}")


def test_kernel_without_bias_on_the_host(host):
    """has_bias = 0: b is never read (a NaN-filled stand-in must not leak into y)."""
    case = HOST_CASES[1]
    C, H, W, N, R, K, p, s, g = case
    OH, OW = _geometry(case)
    ins, _, kw = _problem(case, np.float32)
    y = np.full((K, OH, OW, N), np.nan, np.float32)
    grid, block = dev.local_fwd_config(OH * OW, N, K, g)
    host.launch("local_fwd<float>", grid, block,
                [ins["x"], ins["w"], np.full(K * OH * OW, np.nan, np.float32), y, C, H, W, N, R, K, OH, OW,
                 p, s, g, 0], dev.FWD.args)
    check_close(y, ref.local_fwd(ins["x"], ins["w"], **kw), TOL[np.float32], "host fwd without bias")


# --- on the GPU --------------------------------------------------------------------------------------

GPU_CASES = [  # C, H, W, N, R, K, padding, stride, groups
    (3, 8, 8, 1, 3, 5, 1, 1, 1),
    (1, 7, 7, 3, 5, 1, 2, 2, 1),          # one channel, one filter, 5x5, stride 2
    (5, 9, 8, 127, 3, 17, 0, 2, 1),       # the last column window overhangs
    (32, 8, 8, 128, 3, 32, 1, 1, 1),      # cuda-convnet's local layer: every 16-byte path
    (34, 6, 6, 129, 3, 34, 1, 1, 2),      # groups 2 with 17 channels and filters each
    (17, 5, 5, 129, 1, 3, 0, 1, 1),       # 1x1 filters
    (6, 10, 10, 128, 5, 10, 2, 2, 2),     # groups 2, 5x5, stride 2, padding 2
    (64, 4, 4, 3, 3, 66, 1, 1, 1),        # 2 channel tiles, 3 filter tiles, CRR = 576 (9 row tiles)
    (3, 12, 11, 128, 3, 4, 0, 4, 1),      # stride 4 > R: pixels in no window
]
assert {c[3] for c in GPU_CASES} == set(BATCHES)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", GPU_CASES, ids=_case_id)
@pytest.mark.parametrize("path", PATHS)
def test_local_matches_reference(path, case, dtype):
    import cupy as cp

    C, H, W, N, R, K, p, s, g = case
    ins, want, kw = _problem(case, dtype)
    x, w, b, dy = (cp.asarray(ins[k]) for k in ("x", "w", "b", "dy"))
    with use_path(path):
        y = dev.local_fwd(x, w, b, **kw, out=poisoned(want["y"].shape, dtype))
        check_close(y.get(), want["y"], TOL[dtype], f"{path} fwd {_case_id(case)}")
        y = dev.local_fwd(x, w, **kw, out=poisoned(want["y"].shape, dtype))
        check_close(y.get(), ref.local_fwd(ins["x"], ins["w"], **kw), TOL[dtype], f"{path} fwd no bias")
        dx = dev.local_bwd_data(dy, w, (H, W), **kw, out=poisoned(want["dx"].shape, dtype))
        check_close(dx.get(), want["dx"], TOL[dtype], f"{path} bwd_data {_case_id(case)}")
        dw = dev.local_bwd_filter(dy, x, R, **kw, out=poisoned(want["dw"].shape, dtype))
        check_close(dw.get(), want["dw"], TOL[dtype], f"{path} bwd_filter {_case_id(case)}")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_local_misaligned_and_new_outputs(path):
    """Inputs and outputs 4 bytes past 16-byte boundaries (scalar paths) at a shape whose aligned run
    takes every 16-byte path; results without ``out`` are new arrays."""
    import cupy as cp

    case = (32, 8, 8, 128, 3, 32, 1, 1, 1)
    C, H, W, N, R, K, p, s, g = case
    ins, want, kw = _problem(case, np.float32, seed=1)

    def shifted(a):
        buf = cp.full(a.size + 1, cp.nan, a.dtype)
        out = buf[1:].reshape(a.shape)
        out[...] = cp.asarray(a)
        assert out.flags.c_contiguous and out.data.ptr % 16 == 4
        return out

    x, w, b, dy = (shifted(ins[k]) for k in ("x", "w", "b", "dy"))
    with use_path(path):
        outs = dict(y=shifted(np.full(want["y"].shape, np.nan, np.float32)),
                    dx=shifted(np.full(want["dx"].shape, np.nan, np.float32)),
                    dw=shifted(np.full(want["dw"].shape, np.nan, np.float32)))
        assert dev.local_fwd(x, w, b, **kw, out=outs["y"]) is outs["y"]
        assert dev.local_bwd_data(dy, w, (H, W), **kw, out=outs["dx"]) is outs["dx"]
        assert dev.local_bwd_filter(dy, x, R, **kw, out=outs["dw"]) is outs["dw"]
        for k, v in outs.items():
            check_close(v.get(), want[k], 1e-4, f"{path} misaligned {k}")
        new = dict(y=dev.local_fwd(x, w, b, **kw), dx=dev.local_bwd_data(dy, w, (H, W), **kw),
                   dw=dev.local_bwd_filter(dy, x, R, **kw))
        for k, v in new.items():
            assert isinstance(v, cp.ndarray) and v.dtype == np.float32 and v.flags.c_contiguous
            check_close(v.get(), want[k], 1e-4, f"{path} new {k}")


@pytest.mark.gpu
def test_local_argument_checks_on_the_gpu():
    import cupy as cp

    x, w = cp.zeros((4, 5, 5, 2), cp.float32), cp.zeros((9, 2, 3, 3, 4), cp.float32)
    dy = cp.zeros((4, 3, 3, 2), cp.float32)
    with pytest.raises(ValueError, match="local_fwd: x must be float32 or float64, got int32"):
        dev.local_fwd(x.astype(cp.int32), w, groups=2)
    with pytest.raises(ValueError, match="local_fwd: x must be C-contiguous"):
        dev.local_fwd(cp.zeros((4, 5, 5, 4), cp.float32)[..., ::2], w, groups=2)
    with pytest.raises(ValueError, match=r"local_fwd: w \(9, 2, 3, 3, 4\) must have OH\*OW"):
        dev.local_fwd(x, w, padding=1, groups=2)
    with pytest.raises(ValueError, match="local_bwd_data: inputs must share one dtype"):
        dev.local_bwd_data(dy, w.astype(cp.float64), (5, 5), groups=2)
    with pytest.raises(ValueError, match=r"local_bwd_filter: out must have shape \(9, 2, 3, 3, 4\)"):
        dev.local_bwd_filter(dy, x, 3, groups=2, out=cp.zeros((9, 2, 3, 3, 3), cp.float32))
    with pytest.raises(ValueError, match="local_bwd_filter: inputs must share one dtype, got out=float64"):
        dev.local_bwd_filter(dy, x, 3, groups=2, out=cp.zeros((9, 2, 3, 3, 4), cp.float64))
