"""pyconvnet.cuda.ops.neuron (kernels/neuron.cu) against the NumPy reference pyconvnet.ops.neuron.

On a GPU (tests marked ``gpu``): every neuron, forward and backward, float32 and float64, through both
launch paths, over batch sizes 1, 3, 127, 128, 129 and odd channel counts, with outputs poisoned with
NaN before the kernel runs; ||out - ref|| / ||ref|| <= 1e-5 (float32). Without a GPU: the kernel's
own code, compiled for the host with a small shim (one C++ "thread" at a time), against the same
reference, plus the launch table, the launch configuration and the argument checks.
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pyconvnet.cuda import extension_status, loader, use_launch_path
from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import neuron as dev
from pyconvnet.ops import neuron as ref

from gpu_util import check_close, use_path, FakeDeviceArray, install_fake_cupy

KERNEL = Path(__file__).resolve().parent.parent / "kernels" / "neuron.cu"
PARAMS = {"ident": (), "relu": (), "logistic": (), "tanh": (1.7159, 0.6667), "brelu": (1.5,), "softrelu": (),
          "abs": (), "square": (), "sqrt": (), "linear": (2.0, -0.5)}
SHAPES = [(3, 5, 5, n) for n in (1, 3, 127, 128, 129)] + [(7, n) for n in (1, 3, 127, 128, 129)] + [(1, 1)]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _inputs(rng, shape, dtype, name):
    """x (positive for sqrt, spread over the interesting range otherwise) and dy."""
    x = rng.standard_normal(shape) * 3
    if name == "sqrt":
        x = np.abs(x) + 0.1
    return x.astype(dtype), rng.standard_normal(shape).astype(dtype)


def test_kinds_match_the_kernel_enum_and_the_reference():
    enum = {m[1].lower(): int(m[2]) for m in re.finditer(r"NEURON_(\w+)\s*=\s*(\d+)", KERNEL.read_text())}
    assert enum == dev.KINDS
    assert list(dev.KINDS) == list(ref.NEURONS) and dev.NEURONS is ref.NEURONS
    assert set(PARAMS) == set(ref.NEURONS)


def test_launch_config():
    lim = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
    assert dev.neuron_launch_config(1, 4, lim) == (1, 256)
    assert dev.neuron_launch_config(4 * 256 + 1, 4, lim) == (2, 256)     # 16-byte packs of 4 floats
    assert dev.neuron_launch_config(2 * 256 + 1, 8, lim) == (2, 256)     # ... or of 2 doubles
    assert dev.neuron_launch_config(10**9, 4, lim) == (132 * 32, 256)


def test_argument_checks_without_a_gpu():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="neuron_fwd: x must be a CuPy array .* got numpy.ndarray"):
        dev.neuron_fwd(x, "relu")
    with pytest.raises(ValueError, match="neuron_bwd: dy must be a CuPy array"):
        dev.neuron_bwd(x, x, x, "relu")
    with pytest.raises(ValueError, match="neuron_fwd: unknown neuron 'rectify'"):
        dev.neuron_fwd(x, "rectify")
    with pytest.raises(ValueError, match=r"neuron_bwd: neuron tanh takes 2 parameter\(s\), got 1"):
        dev.neuron_bwd(x, x, x, "tanh", (1.0,))


@pytest.fixture
def fake_cupy(monkeypatch):
    """``import cupy`` gives a stand-in with one 132-SM device; launch caches start empty."""
    fake = install_fake_cupy(monkeypatch, empty_like=lambda a: FakeDeviceArray(a.shape, a.dtype, 0x7000))
    return fake


def test_rawmodule_launch_passes_typed_scalars(fake_cupy, monkeypatch):
    calls = []

    class Module:
        def get_function(self, name):
            return lambda grid, block, args, shared_mem=0: calls.append((name, grid, block, args))

    monkeypatch.setattr(loader, "rawmodule", lambda source: Module())
    x = FakeDeviceArray((3, 5, 5, 129), np.float32, 0x1000)
    with use_launch_path("rawmodule"):
        y = dev.neuron_fwd(x, "tanh", (1.5, 2))
        dev.neuron_bwd(x, x, y, "linear", (2, -1), out=x)
    (name, grid, block, args), (name2, _, _, args2) = calls
    assert (name, grid, block) == ("neuron_fwd<float>", (10, 1, 1), (256, 1, 1))  # 9675 floats = 2419 packs
    assert args[:2] == (x, y) and [type(a) for a in args[2:]] == [np.int64, np.int32, np.float32, np.float32]
    assert args[2:] == (9675, dev.KINDS["tanh"], 1.5, 2.0)
    assert name2 == "neuron_bwd<float>" and args2[:4] == (x, x, y, x)
    assert args2[4:] == (9675, dev.KINDS["linear"], 2.0, -1.0) and type(args2[7]) is np.float32
    x64 = FakeDeviceArray((7, 3), np.float64, 0x1000)
    calls.clear()
    with use_launch_path("rawmodule"):
        dev.neuron_fwd(x64, "brelu", (6,))
    assert calls[0][0] == "neuron_fwd<double>" and [type(a) for a in calls[0][3][4:]] == [np.float64] * 2


def test_extension_launch_without_a_device_raises(fake_cupy):
    ext, why = extension_status()
    if ext is None:
        pytest.skip(f"pyconvnet._cuda not importable: {why}")
    if ext.runtime_info()["device_count"] > 0:
        pytest.skip("a device is present: the gpu tests launch for real (fake pointers would fault)")
    x = FakeDeviceArray((3, 5, 5, 129), np.float32, 0x1000)
    with use_launch_path("extension"):
        with pytest.raises(RuntimeError, match="neuron_fwd<float>: kernel launch failed: cuda"):
            dev.neuron_fwd(x, "tanh", (1.5, 2))
        with pytest.raises(RuntimeError, match="neuron_bwd<float>: kernel launch failed: cuda"):
            dev.neuron_bwd(x, x, x, "softrelu", out=FakeDeviceArray(x.shape, np.float32, 0x2000))


# --- the kernel code on the host -------------------------------------------------------------------

_SHIM = r"""
#include <math.h>
struct pcn_dim3 { unsigned x, y, z; };
static pcn_dim3 gridDim, blockDim, blockIdx, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define __align__(n) alignas(n)
"""
_DRIVER = r"""
template <typename T> static void set_thread(unsigned grid, unsigned block, unsigned b, unsigned t) {
    gridDim = {grid, 1, 1}; blockDim = {block, 1, 1}; blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0};
}
#define EMULATE(SUFFIX, T)                                                                          \
extern "C" void fwd_##SUFFIX(const T* x, T* y, long long n, int kind, T a, T b, unsigned g, unsigned k) { \
    for (unsigned bi = 0; bi < g; ++bi) for (unsigned t = 0; t < k; ++t) {                          \
        set_thread<T>(g, k, bi, t); neuron_fwd<T>(x, y, n, kind, a, b); } }                           \
extern "C" void bwd_##SUFFIX(const T* dy, const T* x, const T* y, T* dx, long long n, int kind, T a, T b, \
                             unsigned g, unsigned k) {                                              \
    for (unsigned bi = 0; bi < g; ++bi) for (unsigned t = 0; t < k; ++t) {                          \
        set_thread<T>(g, k, bi, t); neuron_bwd<T>(dy, x, y, dx, n, kind, a, b); } }
EMULATE(f32, float)
EMULATE(f64, double)
"""


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    """kernels/neuron.cu compiled by the host C++ compiler, every CUDA thread run one after another."""
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no host C++ compiler to run the kernel code on the CPU")
    d = tmp_path_factory.mktemp("neuron_host")
    (d / "emu.cpp").write_text(_SHIM + KERNEL.read_text() + _DRIVER)
    cmd = [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-o", str(d / "emu.so"), str(d / "emu.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(d / "emu.so"))
    for dt, ct in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        p = ctypes.c_void_p
        getattr(lib, f"fwd_{dt}").argtypes = [p, p, ctypes.c_longlong, ctypes.c_int, ct, ct, ctypes.c_uint,
                                              ctypes.c_uint]
        getattr(lib, f"bwd_{dt}").argtypes = [p, p, p, p, ctypes.c_longlong, ctypes.c_int, ct, ct, ctypes.c_uint,
                                              ctypes.c_uint]
    return lib


def _host_run(lib, direction, arrays, name, grid=3, block=32):
    """Run neuron_<direction> on NumPy arrays (the last one is written) with a tiny grid."""
    dt = "f32" if arrays[0].dtype == np.float32 else "f64"
    a, b = (tuple(PARAMS[name]) + (0.0, 0.0))[:2]
    ptrs = [arr.ctypes.data for arr in arrays]
    getattr(lib, f"{direction}_{dt}")(*ptrs, arrays[0].size, dev.KINDS[name], a, b, grid, block)


def _at(values, offset):
    """A flat copy of ``values`` placed ``offset`` elements past a 16-byte boundary."""
    buf = np.empty(values.size + 8, values.dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % (16 // buf.itemsize) + offset
    out = buf[base:base + values.size]
    out[:] = values.ravel()
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(PARAMS))
def test_kernel_code_on_the_host(host_kernel, name, dtype):
    rng = np.random.default_rng(7)
    for shape in SHAPES[::2] + [(5, 3, 3, 67)]:  # 3015 elements: several grid-stride sweeps
        x, dy = _inputs(rng, shape, dtype, name)
        y_ref = ref.neuron_fwd(x, name, PARAMS[name])
        dx_ref = ref.neuron_bwd(dy, x, y_ref, name, PARAMS[name])
        poison = np.full(shape, np.nan, dtype)
        for offset in (0, 1):  # 16-byte aligned (packs + tail) and misaligned (scalar loop)
            y = _at(poison, offset)
            _host_run(host_kernel, "fwd", [_at(x, offset), y], name)
            check_close(y.reshape(shape), y_ref, TOL[dtype], f"host fwd {name} {shape} offset {offset}")
            dx = _at(poison, offset)
            _host_run(host_kernel, "bwd", [_at(dy, offset), _at(x, offset), _at(y_ref, offset), dx], name)
            check_close(dx.reshape(shape), dx_ref, TOL[dtype], f"host bwd {name} {shape} offset {offset}")


# --- on the GPU --------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(PARAMS))
@pytest.mark.parametrize("path", ["extension", "rawmodule"])
def test_neuron_matches_reference(path, name, dtype):
    import cupy as cp

    rng = np.random.default_rng(0)
    with use_path(path):
        for shape in SHAPES:
            x, dy = _inputs(rng, shape, dtype, name)
            y_ref = ref.neuron_fwd(x, name, PARAMS[name])
            dx_ref = ref.neuron_bwd(dy, x, y_ref, name, PARAMS[name])
            gx = cp.asarray(x)
            out = cp.full(shape, cp.nan, dtype)
            y = dev.neuron_fwd(gx, name, PARAMS[name], out=out)
            assert y is out
            check_close(y.get(), y_ref, TOL[dtype], f"{path} fwd {name} {shape}")
            out = cp.full(shape, cp.nan, dtype)
            dx = dev.neuron_bwd(cp.asarray(dy), gx, cp.asarray(y_ref), name, PARAMS[name], out=out)
            assert dx is out
            check_close(dx.get(), dx_ref, TOL[dtype], f"{path} bwd {name} {shape}")
        y2 = dev.neuron_fwd(gx, name, PARAMS[name])  # a new array when out is not given
        assert y2 is not gx and y2.dtype == gx.dtype
        check_close(y2.get(), y_ref, TOL[dtype], f"{path} fwd {name} without out")


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["extension", "rawmodule"])
def test_neuron_unaligned_in_place_and_large(path):
    import cupy as cp

    rng = np.random.default_rng(3)
    with use_path(path):
        buf = cp.asarray(rng.standard_normal(1 + 1001).astype(np.float32))
        x = buf[1:]  # 4 bytes past a 256-byte boundary: the scalar loop
        assert x.flags.c_contiguous and x.data.ptr % 16 == 4
        check_close(dev.neuron_fwd(x, "tanh", (1.7, 0.6)).get(), ref.neuron_fwd(x.get(), "tanh", (1.7, 0.6)),
                     1e-5, f"{path} unaligned fwd")
        y = dev.neuron_fwd(x, "relu")
        dx = dev.neuron_bwd(x, x, y, "relu")
        check_close(dx.get(), ref.neuron_bwd(x.get(), x.get(), y.get(), "relu"), 1e-5, f"{path} unaligned bwd")
        z = x.copy()
        want = ref.neuron_fwd(z.get(), "softrelu")
        assert dev.neuron_fwd(z, "softrelu", out=z) is z  # in place
        check_close(z.get(), want, 1e-5, f"{path} in place")
        big = cp.asarray(rng.standard_normal(2**23 + 3).astype(np.float32))  # several grid-stride sweeps
        check_close(dev.neuron_fwd(big, "brelu", (1.0,)).get(), ref.neuron_fwd(big.get(), "brelu", (1.0,)),
                     1e-5, f"{path} large")
        empty = cp.empty((0, 5), np.float32)
        assert dev.neuron_fwd(empty, "relu").shape == (0, 5)


@pytest.mark.gpu
def test_neuron_argument_checks_on_the_gpu():
    import cupy as cp

    x = cp.zeros((4, 6), cp.float32)
    with pytest.raises(ValueError, match="neuron_fwd: x must be float32 or float64, got int32"):
        dev.neuron_fwd(cp.zeros((4, 6), cp.int32), "relu")
    with pytest.raises(ValueError, match="neuron_fwd: x must be C-contiguous"):
        dev.neuron_fwd(x[:, ::2], "relu")
    with pytest.raises(ValueError, match=r"neuron_bwd: y must have shape \(4, 6\), got \(4, 5\)"):
        dev.neuron_bwd(x, x, x[:, :5].copy(), "relu")
    with pytest.raises(ValueError, match="neuron_bwd: inputs must share one dtype"):
        dev.neuron_bwd(x, x.astype(cp.float64), x, "relu")
    with pytest.raises(ValueError, match="neuron_fwd: inputs must share one dtype, got out=float64, x=float32"):
        dev.neuron_fwd(x, "relu", out=cp.zeros((4, 6), cp.float64))
    with pytest.raises(ValueError, match=r"neuron_fwd: out must have shape \(4, 6\)"):
        dev.neuron_fwd(x, "relu", out=cp.zeros((6, 4), cp.float32))
    with pytest.raises(ValueError, match="neuron_fwd: out must be a CuPy array"):
        dev.neuron_fwd(x, "relu", out=np.zeros((4, 6), np.float32))
