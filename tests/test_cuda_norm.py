"""pyconvnet.cuda.ops.norm (kernels/norm.cu) against the NumPy reference pyconvnet.ops.norm.

Without a GPU: the kernel table and signatures against kernels/norm.cu, the launch configurations,
the argument checks, the typed RawModule launch, and the kernel code itself run on the CPU through the
emulator tests/cuda_host.py: the real wrappers (launch configuration included) drive HostModule on
NumPy arrays, forward and backward of every op, float32 and float64, window sizes with a register
instance (3, 5, 9) and general ones (1, 2, 4), odd batches (element-wise path), batches that are
multiples of the pack (vector path), misaligned arrays, channel/row chunks; cmrnorm also without
stored denominators (cmrnorm_fwd_y, cmrnorm_bwd_x: keep_denom=False, backward from dy and x) against
the reference's recomputing backward, chunks shorter than its 2*(size-1) halo included. Outputs (and
cnorm's scratch) are poisoned with NaN before each launch.

On a GPU (tests marked ``gpu``, both launch paths): the same against the reference over batch sizes
1, 3, 127, 128, 129, odd channel counts, windows wider than the tensor, chunked axes, misaligned arrays,
float32 (relative error <= 1e-5) and float64 (<= 1e-12), cmrnorm without stored denominators over the
same grid, and the argument checks with CuPy arrays.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pyconvnet.cuda import extension_status, loader, use_launch_path
from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import norm as dev
from pyconvnet.ops import norm as ref

from gpu_util import BATCHES, check_close, use_path, FakeDeviceArray, install_fake_cupy

KERNEL = Path(__file__).resolve().parent.parent / "kernels" / "norm.cu"
OPS = ("cmrnorm", "rnorm", "cnorm")
KERNELS = (dev.CMRNORM_FWD, dev.CMRNORM_BWD, dev.CMRNORM_FWD_Y, dev.CMRNORM_BWD_X, dev.RNORM_FWD, dev.RNORM_BWD,
           dev.CNORM_FWD, dev.CNORM_BWD_MEAN, dev.CNORM_BWD)
H100 = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


# --- the kernel table, configurations and checks (no GPU) ------------------------------------------

_LETTER = {"int": "i", "long long": "l", "float": "f", "double": "f"}


def _declarations():
    """{instance name: kernel parameter letters} of the explicit instantiations in kernels/norm.cu."""
    text = KERNEL.read_text()
    out = {}
    for m in re.finditer(r"^template __global__ void (\w+<[^>]*>)\(([^;]*)\);", text, re.MULTILINE):
        params = [p.strip() for p in " ".join(m[2].split()).split(",")]
        out[m[1].replace(" ", "")] = "".join("p" if p.endswith("*") else _LETTER[p] for p in params)
    return out


def test_kernel_table_matches_the_instantiations():
    decls = _declarations()
    assert sorted(decls) == sorted(loader.entry_points(KERNEL.read_text()))
    names = set()
    for k in KERNELS:
        for dtype in (np.float32, np.float64):
            for size in (0,) + dev.SIZES:
                name = k.instance(dtype, size=size)
                assert decls.get(name) == k.args, f"{name}: {decls.get(name)} vs {k.args}"
                names.add(name)
    assert names == set(decls)


def test_pack_widths_match_the_kernels():
    text = KERNEL.read_text()
    for name, nbytes in dev.PACK_BYTES.items():
        body = text[text.index(f"__global__ void {name}("):]
        body = body[:body.index("\n}\n")]
        m = re.search(r"constexpr int PW = (\d+) / sizeof\(T\)", body)
        assert (int(m[1]) if m else 0) == nbytes, name
        if not m:
            assert "nm_spatial_loop<1>" in body, name


def test_launch_configs():
    assert dev.cmrnorm_launch_config((64, 55, 55, 128), 4, 5, H100) == ((757, 1), 128, 64)
    assert dev.cmrnorm_launch_config((64, 55, 55, 128), 8, 5, H100) == ((1513, 1), 128, 64)
    # too few (pixel, pack) threads: 3 chunks of 64 channels
    assert dev.cmrnorm_launch_config((192, 27, 27, 128), 4, 5, H100) == ((183, 3), 128, 64)
    assert dev.cmrnorm_launch_config((5, 4, 4, 3), 4, 5, H100) == ((1, 1), 128, 5)   # too short to split
    assert dev.cmrnorm_launch_config((70, 1, 1, 1), 4, 3, H100) == ((1, 8), 128, 9)  # chunks >= 8 channels
    # without stored denominators: the forward as before; the backward's halo is 2*(size-1), chunks >= 8*(size-1)
    for shape in ((64, 55, 55, 128), (192, 27, 27, 128), (5, 4, 4, 3)):
        assert (dev.cmrnorm_launch_config(shape, 4, 5, H100, kernel="cmrnorm_fwd_y")
                == dev.cmrnorm_launch_config(shape, 4, 5, H100))
    assert dev.cmrnorm_launch_config((64, 55, 55, 128), 4, 5, H100, kernel="cmrnorm_bwd_x") == ((757, 1), 128, 64)
    assert dev.cmrnorm_launch_config((192, 27, 27, 128), 4, 5, H100, kernel="cmrnorm_bwd_x") == ((183, 3), 128, 64)
    assert dev.cmrnorm_launch_config((70, 1, 1, 1), 4, 3, H100, kernel="cmrnorm_bwd_x") == ((1, 4), 128, 18)
    assert dev.cmrnorm_launch_config((70, 1, 1, 1), 8, 9, H100, kernel="cmrnorm_bwd_x") == ((1, 1), 128, 70)
    assert dev.spatial_launch_config("rnorm_fwd", (64, 55, 55, 128), 4, 5, H100) == ((448, 1), (32, 8), 55)
    assert dev.spatial_launch_config("rnorm_bwd", (64, 55, 55, 128), 4, 5, H100) == ((896, 1), (32, 8), 55)
    assert dev.spatial_launch_config("cnorm_fwd", (64, 55, 55, 128), 4, 5, H100) == ((1792, 1), (32, 8), 55)
    assert dev.spatial_launch_config("cnorm_fwd", (3, 20, 5, 1), 4, 3, H100) == ((3, 2), (1, 5), 10)
    assert dev.spatial_launch_config("rnorm_fwd", (3, 40, 9, 6), 4, 5, H100) == ((3, 2), (2, 9), 20)
    assert dev.spatial_launch_config("rnorm_fwd", (3, 40, 9, 6), 8, 5, H100) == ((3, 2), (3, 9), 20)
    small = DeviceLimits(sm_count=2, max_block=128, max_grid_x=10)
    assert dev.spatial_launch_config("cnorm_fwd", (64, 5, 55, 128), 4, 5, small) == ((10, 1), (32, 4), 5)
    assert dev.cmrnorm_launch_config((8, 100, 100, 100), 4, 5, small) == ((10, 1), 128, 8)


def test_argument_checks_without_a_gpu():
    x = np.zeros((3, 4, 4, 2), np.float32)
    for op in OPS:
        with pytest.raises(ValueError, match=rf"{op}_fwd: x must be a CuPy array .* got numpy.ndarray"):
            getattr(dev, op + "_fwd")(x, size=3, scale=1.0, pow=0.75)
        with pytest.raises(ValueError, match=rf"{op}_bwd: dy must be a CuPy array"):
            getattr(dev, op + "_bwd")(x, x, x, x, size=3, scale=1.0, pow=0.75)


@pytest.fixture
def fake_cupy(monkeypatch):
    """``import cupy`` gives a stand-in with one 132-SM device; new arrays get fresh pointers."""
    ptrs = iter(range(0x100000, 0x10000000, 0x100000))
    fake = install_fake_cupy(monkeypatch, empty_like=lambda a: FakeDeviceArray(a.shape, a.dtype, next(ptrs)))
    return fake


def test_output_checks(fake_cupy):
    x = FakeDeviceArray((3, 4, 4, 2), np.float32, 0x1000)
    y = FakeDeviceArray((3, 4, 4, 2), np.float32, 0x1000 + 96 * 4 - 4)  # overlaps x's last element
    d = FakeDeviceArray((3, 4, 4, 2), np.float32, 0x2000)
    kw = dict(size=3, scale=1.0, pow=0.75)
    with pytest.raises(ValueError, match=r"rnorm_fwd: out\[0\] must not overlap x"):
        dev.rnorm_fwd(x, out=(y, d), **kw)
    with pytest.raises(ValueError, match=r"cmrnorm_fwd: out\[1\] must not overlap out\[0\]"):
        dev.cmrnorm_fwd(x, out=(d, d), **kw)
    with pytest.raises(ValueError, match=r"cnorm_fwd: out must be a pair \(y, denom\)"):
        dev.cnorm_fwd(x, out=d, **kw)
    with pytest.raises(ValueError, match=r"cmrnorm_fwd: out\[0\] must have shape \(3, 4, 4, 2\)"):
        dev.cmrnorm_fwd(x, out=(FakeDeviceArray((3, 4, 4, 1), np.float32, 0x3000), d), **kw)
    with pytest.raises(ValueError, match=r"cnorm_fwd: inputs must share one dtype, got out\[1\]=float64"):
        dev.cnorm_fwd(x, out=(d, FakeDeviceArray((3, 4, 4, 2), np.float64, 0x3000)), **kw)
    with pytest.raises(ValueError, match="cmrnorm_bwd: out must not overlap denom"):
        dev.cmrnorm_bwd(x, x, x, d, out=d, **kw)
    with pytest.raises(ValueError, match="rnorm_bwd: out must be a CuPy array"):
        dev.rnorm_bwd(x, x, x, d, out=np.zeros((3, 4, 4, 2), np.float32), **kw)
    with pytest.raises(ValueError, match=r"cnorm_bwd: dy must have shape \(3, 4, 4, 2\)"):
        dev.cnorm_bwd(FakeDeviceArray((3, 4, 4, 1), np.float32, 0x5000), x, x, d, **kw)
    with pytest.raises(ValueError, match="cmrnorm_fwd: min_div must be > 0.0, got 0.0"):
        dev.cmrnorm_fwd(x, min_div=0.0, **kw)
    with pytest.raises(ValueError, match=r"cmrnorm_fwd: out\[1\] must be None with keep_denom=False"):
        dev.cmrnorm_fwd(x, keep_denom=False, out=(d, FakeDeviceArray((3, 4, 4, 2), np.float32, 0x3000)), **kw)
    with pytest.raises(ValueError, match=r"cmrnorm_fwd: out\[0\] must not overlap x"):
        dev.cmrnorm_fwd(x, keep_denom=False, out=(y, None), **kw)
    with pytest.raises(ValueError, match=r"cmrnorm_bwd: y and denom must both be given or both be None"):
        dev.cmrnorm_bwd(x, x, None, d, **kw)
    with pytest.raises(ValueError, match=r"cmrnorm_bwd: y and denom .* got y shape \(3, 4, 4, 2\) and denom None"):
        dev.cmrnorm_bwd(x, x, d, None, **kw)
    with pytest.raises(ValueError, match="cmrnorm_bwd: out must not overlap x"):
        dev.cmrnorm_bwd(d, x, None, None, out=y, **kw)
    with pytest.raises(ValueError, match="cmrnorm_bwd: dy must be a CuPy array"):
        dev.cmrnorm_bwd(np.zeros((3, 4, 4, 2), np.float32), x, None, None, **kw)
    with pytest.raises(ValueError, match="rnorm_bwd: y must be a CuPy array"):
        dev.rnorm_bwd(x, x, None, None, **kw)


def test_rawmodule_launch_passes_typed_scalars(fake_cupy, monkeypatch):
    calls = []

    class Module:
        def get_function(self, name):
            return lambda grid, block, args, shared_mem=0: calls.append((name, grid, block, args))

    monkeypatch.setattr(loader, "rawmodule", lambda source: Module())
    x = FakeDeviceArray((64, 55, 55, 128), np.float32, 0x1000)
    with use_launch_path("rawmodule"):
        y, d = dev.cmrnorm_fwd(x, size=5, scale=5e-4, pow=0.75, min_div=2)
        dev.cmrnorm_bwd(x, x, y, d, size=4, scale=5e-4, pow=0.75)
    (name, grid, block, args), (name2, grid2, _, args2) = calls
    assert (name, grid, block) == ("cmrnorm_fwd<float,5>", (757, 1, 1), (128, 1, 1))
    assert args[:3] == (x, y, d) and args[3:8] == (64, 3025, 128, 5, 64)
    assert [type(a) for a in args[3:]] == [np.int32, np.int64, np.int32, np.int32, np.int32] + [np.float32] * 3
    assert args[8:] == (np.float32(1e-4), np.float32(0.75), np.float32(2.0))
    assert (name2, grid2) == ("cmrnorm_bwd<float,0>", (757, 1, 1))  # size 4: the general instance
    assert args2[:4] == (x, x, y, d) and args2[5:10] == (64, 3025, 128, 4, 64)
    assert args2[10:] == (np.float32(2 * 0.75 * 5e-4 / 4), np.float32(0.75))
    calls.clear()
    with use_launch_path("rawmodule"):  # without stored denominators
        y2, none = dev.cmrnorm_fwd(x, size=5, scale=5e-4, pow=0.75, min_div=2, keep_denom=False)
        dx = dev.cmrnorm_bwd(x, y2, None, None, size=9, scale=5e-4, pow=0.75, min_div=2)
    assert none is None
    (name, grid, block, args), (name2, grid2, _, args2) = calls
    assert (name, grid, block) == ("cmrnorm_fwd_y<float,5>", (757, 1, 1), (128, 1, 1))
    assert args[:2] == (x, y2) and args[2:7] == (64, 3025, 128, 5, 64)
    assert [type(a) for a in args[2:]] == [np.int32, np.int64, np.int32, np.int32, np.int32] + [np.float32] * 3
    assert args[7:] == (np.float32(1e-4), np.float32(0.75), np.float32(2.0))
    assert (name2, grid2) == ("cmrnorm_bwd_x<float,9>", (757, 1, 1))
    assert args2[:3] == (x, y2, dx) and args2[3:8] == (64, 3025, 128, 9, 64)
    assert [type(a) for a in args2[3:]] == [np.int32, np.int64, np.int32, np.int32, np.int32] + [np.float32] * 4
    assert args2[8:] == (np.float32(5e-4 / 9), np.float32(0.75), np.float32(2.0), np.float32(2 * 0.75 * 5e-4 / 9))
    x64 = FakeDeviceArray((7, 9, 10, 3), np.float64, 0x1000)
    calls.clear()
    with use_launch_path("rawmodule"):
        dev.cnorm_bwd(x64, x64, x64, x64, size=9, scale=2.0, pow=0.5)
        dev.rnorm_fwd(x64, size=3, scale=2.0, pow=0.5)
    assert [c[0] for c in calls] == ["cnorm_bwd_mean<double,9>", "cnorm_bwd<double,9>", "rnorm_fwd<double,3>"]
    mean_args, bwd_args, fwd_args = (c[3] for c in calls)
    assert mean_args[0] is x64 and bwd_args[4] is mean_args[1] and bwd_args[5] is not mean_args[1]
    assert mean_args[2:] == (7, 9, 10, 3, 9, 9) and bwd_args[6:12] == (7, 9, 10, 3, 9, 9)
    assert [type(a) for a in bwd_args[12:]] == [np.float64] * 2 and bwd_args[12] == 2 * 0.5 * 2.0 / 81
    assert fwd_args[9:] == (2.0 / 9, 0.5, 1.0) and calls[2][2] == (2, 10, 1)


def test_extension_launch_without_a_device_raises(fake_cupy):
    ext, why = extension_status()
    if ext is None:
        pytest.skip(f"pyconvnet._cuda not importable: {why}")
    if ext.runtime_info()["device_count"] > 0:
        pytest.skip("a device is present: the gpu tests launch for real (fake pointers would fault)")
    if "cmrnorm_fwd<float,5>" not in ext.kernels():
        pytest.skip("pyconvnet._cuda was built before kernels/norm.cu existed")
    x = FakeDeviceArray((3, 5, 5, 129), np.float32, 0x1000)
    with use_launch_path("extension"):
        with pytest.raises(RuntimeError, match=r"cmrnorm_fwd<float,5>: kernel launch failed: cuda"):
            dev.cmrnorm_fwd(x, size=5, scale=1.0, pow=0.75)


# --- shared check: one op, forward and backward, against the reference -----------------------------

def _inputs(rng, op, shape, dtype):
    x = rng.standard_normal(shape)
    if op == "cnorm":
        x += 3.0  # a local mean the denominator must ignore
    return x.astype(dtype), rng.standard_normal(shape).astype(dtype)


def _references(op, x, dy, kw):
    """(y, denom, dx) of the reference, computed in float64 from the given values, in x's dtype."""
    f64 = [a.astype(np.float64) for a in (x, dy)]
    y, d = getattr(ref, op + "_fwd")(f64[0], **kw)
    y, d = y.astype(x.dtype), d.astype(x.dtype)
    dx = getattr(ref, op + "_bwd")(f64[1], f64[0], y.astype(np.float64), d.astype(np.float64), **kw)
    return y, d, dx.astype(x.dtype)


def _check_op(xp, op, shape, dtype, kw, rng, what, offset=0):
    """Run ``op`` forward and backward through the wrappers on arrays of module ``xp`` and compare.

    ``xp`` has ``put(numpy array, offset)`` (an array of that module holding the values, starting
    ``offset`` elements past a 256-byte boundary), ``poisoned(shape, dtype, offset)`` and ``get``.
    """
    x, dy = _inputs(rng, op, shape, dtype)
    y_ref, d_ref, dx_ref = _references(op, x, dy, kw)
    gx = xp.put(x, offset)
    outs = (xp.poisoned(shape, dtype, offset), xp.poisoned(shape, dtype, offset))
    y, d = getattr(dev, op + "_fwd")(gx, out=outs, **kw)
    assert y is outs[0] and d is outs[1]
    check_close(xp.get(d), d_ref, TOL[dtype], f"{what} fwd denom")
    check_close(xp.get(y), y_ref, TOL[dtype], f"{what} fwd y")
    out = xp.poisoned(shape, dtype, offset)
    dx = getattr(dev, op + "_bwd")(xp.put(dy, offset), gx, xp.put(y_ref, offset), xp.put(d_ref, offset), out=out,
                                   **kw)
    assert dx is out
    check_close(xp.get(dx), dx_ref, TOL[dtype], f"{what} bwd dx")


def _check_cmr_recompute(xp, shape, dtype, kw, rng, what, offset=0):
    """cmrnorm without stored denominators: keep_denom=False forward (y alone), the backward from dy and x
    (y = denom = None), against the reference computed in float64 from the same x and dy."""
    x, dy = _inputs(rng, "cmrnorm", shape, dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y_ref = ref.cmrnorm_fwd(x64, **kw)[0].astype(dtype)
    dx_ref = ref.cmrnorm_bwd(dy64, x64, None, None, **kw).astype(dtype)
    gx = xp.put(x, offset)
    out_y = xp.poisoned(shape, dtype, offset)
    y, none = dev.cmrnorm_fwd(gx, keep_denom=False, out=(out_y, None), **kw)
    assert y is out_y and none is None
    check_close(xp.get(y), y_ref, TOL[dtype], f"{what} fwd_y y")
    out = xp.poisoned(shape, dtype, offset)
    dx = dev.cmrnorm_bwd(xp.put(dy, offset), gx, None, None, out=out, **kw)
    assert dx is out
    check_close(xp.get(dx), dx_ref, TOL[dtype], f"{what} bwd_x dx")


def _kw(size, pow=0.75):
    return dict(size=size, scale=2.5, pow=pow, min_div=1.3)


# --- the kernel code on the CPU (tests/cuda_host.py) --------------------------------------------------

def _numpy_at(values, offset):
    """A C-contiguous NumPy copy of ``values`` starting ``offset`` elements past a 256-byte boundary."""
    item = values.dtype.itemsize
    buf = np.empty(values.size + 512 // item, values.dtype)
    start = (-(buf.ctypes.data // item)) % (256 // item) + offset
    out = buf[start:start + values.size].reshape(values.shape)
    out[...] = values
    return out


NUMPY = SimpleNamespace(put=_numpy_at, get=lambda a: a,
                        poisoned=lambda shape, dtype, offset: _numpy_at(np.full(shape, np.nan, dtype), offset))


@pytest.fixture(scope="module")
def host_module():
    try:
        from cuda_host import HostModule
    except ImportError as e:
        pytest.skip(f"tests/cuda_host.py not importable: {e}")
    return HostModule(KERNEL)


@pytest.fixture
def on_host(host_module, monkeypatch):
    """The wrappers of pyconvnet.cuda.ops.norm run on NumPy arrays, their launches on the emulator."""
    def host_launch(kernel, dtype, grid, block, *args, shmem=0, **tvals):
        sig = kernel.args.replace("f", "f" if np.dtype(dtype) == np.float32 else "d")
        host_module.launch(kernel.instance(dtype, **tvals), grid, block, list(args), sig, shmem=shmem)

    monkeypatch.setattr(dev, "launch", host_launch)
    monkeypatch.setattr(dev, "check_device_array", lambda op, name, a: None)
    monkeypatch.setattr(dev, "device_limits", lambda: H100)
    monkeypatch.setattr(dev, "_overlaps", np.shares_memory)
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(empty_like=lambda a: np.full_like(a, np.nan)))
    return monkeypatch


# (shape, sizes): N = 3 takes the element-wise path, N = 8 the vector path (f32 and f64 packs)
HOST_CASES = [((7, 5, 6, 3), (1, 2, 3, 5, 9)), ((5, 4, 3, 8), (3, 4, 5, 9))]


@DTYPES
@pytest.mark.parametrize("op", OPS)
def test_kernel_code_on_the_host(on_host, op, dtype):
    rng = np.random.default_rng(11)
    for shape, sizes in HOST_CASES:
        for size in sizes:
            kw = _kw(size, pow=(0.75, -0.3, 2.0)[size % 3])
            _check_op(NUMPY, op, shape, dtype, kw, rng, f"host {op} {shape} size {size}")


# N = 1 and 3: element-wise path, N = 8: vector path; C odd (and 2 < U, 9 > SIZE-1)
HOST_RECOMPUTE_CASES = [((7, 3, 4, 3), (1, 2, 3, 4, 5, 9)), ((9, 3, 2, 1), (3, 5, 9, 6)), ((5, 2, 3, 8), (3, 4, 5, 9)),
                        ((2, 2, 2, 8), (3, 5, 9))]


@DTYPES
def test_cmrnorm_recompute_kernel_code_on_the_host(on_host, dtype):
    rng = np.random.default_rng(13)
    for shape, sizes in HOST_RECOMPUTE_CASES:
        for size in sizes:
            kw = _kw(size, pow=(0.75, -0.3, 2.0)[size % 3])
            _check_cmr_recompute(NUMPY, shape, dtype, kw, rng, f"host recompute {shape} size {size}")


def test_cmrnorm_recompute_kernel_code_on_the_host_misaligned_and_chunked(on_host):
    """Misaligned (element-wise path); channel chunks of 1, 2 and 3, shorter than the backward's halo of
    2*(size-1) channels, and chunk starts that are not multiples of the step U."""
    rng = np.random.default_rng(14)
    _check_cmr_recompute(NUMPY, (5, 4, 3, 8), np.float32, _kw(5), rng, "host recompute misaligned", offset=1)
    for chunk in (1, 2, 3):
        on_host.setattr(dev, "_chunks", lambda threads, length, size, lim, c=chunk: (-(-length // c), c))
        for size in (3, 4, 5, 9):
            _check_cmr_recompute(NUMPY, (11, 2, 3, 4), np.float64, _kw(size), rng,
                                 f"host recompute chunk {chunk} size {size}")


@pytest.mark.parametrize("op", OPS)
def test_kernel_code_on_the_host_misaligned_and_chunked(on_host, op):
    """N % pack == 0 but 4 bytes off alignment (element-wise path); the streamed axis in chunks of 2
    and 3 (each chunk reloads the window's neighbours)."""
    rng = np.random.default_rng(12)
    _check_op(NUMPY, op, (5, 4, 3, 8), np.float32, _kw(5), rng, f"host {op} misaligned", offset=1)
    for chunk in (2, 3):
        on_host.setattr(dev, "_chunks", lambda threads, length, size, lim, c=chunk: (-(-length // c), c))
        for size in (3, 4):
            _check_op(NUMPY, op, (7, 5, 6, 4), np.float64, _kw(size), rng, f"host {op} chunk {chunk} size {size}")


# --- on the GPU ------------------------------------------------------------------------------------------

def _cupy_module():
    import cupy as cp

    def put(values, offset):
        item = values.dtype.itemsize
        buf = cp.empty(values.size + 512 // item, values.dtype)  # CuPy allocations are 256-byte aligned
        out = buf[offset:offset + values.size].reshape(values.shape)
        out[...] = cp.asarray(values)
        return out

    return SimpleNamespace(put=put, get=lambda a: a.get(),
                           poisoned=lambda shape, dtype, offset: put(np.full(shape, np.nan, dtype), offset))


# odd channel counts, every batch size of DESIGN.md, windows wider than C or H, W == 1
GPU_SHAPES = [(5, 7, 6, n) for n in BATCHES] + [(3, 4, 5, 128), (9, 1, 3, 129), (1, 6, 1, 4)]
GPU_SIZES = (3, 5, 9, 4)  # 4: the general instance


@pytest.mark.gpu
@DTYPES
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("path", ["extension", "rawmodule"])
def test_norm_matches_reference(path, op, dtype):
    xp = _cupy_module()
    rng = np.random.default_rng(0)
    with use_path(path):
        for shape in GPU_SHAPES:
            for size in GPU_SIZES:
                _check_op(xp, op, shape, dtype, _kw(size, pow=(0.75, 2.0)[size % 2]), rng,
                          f"{path} {op} {shape} size {size}")
        # chunked axes (64 channels, 40 rows), and 4 bytes off alignment with N % 4 == 0
        for shape, size in (((64, 3, 3, 5), 5), ((3, 40, 9, 6), 5), ((64, 2, 2, 4), 4)):
            _check_op(xp, op, shape, dtype, _kw(size), rng, f"{path} {op} {shape} chunked")
        _check_op(xp, op, (5, 6, 7, 128), dtype, _kw(5), rng, f"{path} {op} misaligned", offset=1)
        # without out: new arrays
        x = xp.put(_inputs(rng, op, (3, 4, 4, 2), dtype)[0], 0)
        y, d = getattr(dev, op + "_fwd")(x, **_kw(3))
        assert y.dtype == d.dtype == x.dtype and y.shape == d.shape == x.shape
        assert getattr(dev, op + "_fwd")(x[:0], **_kw(3))[0].shape == (0, 4, 4, 2)


@pytest.mark.gpu
@DTYPES
@pytest.mark.parametrize("path", ["extension", "rawmodule"])
def test_cmrnorm_recompute_matches_reference(path, dtype):
    """cmrnorm_fwd_y and cmrnorm_bwd_x (no stored denominators) over the same grid."""
    xp = _cupy_module()
    rng = np.random.default_rng(2)
    with use_path(path):
        for shape in GPU_SHAPES:
            for size in GPU_SIZES:
                _check_cmr_recompute(xp, shape, dtype, _kw(size, pow=(0.75, 2.0)[size % 2]), rng,
                                     f"{path} {shape} size {size}")
        for shape, size in (((64, 3, 3, 5), 5), ((64, 2, 2, 4), 4), ((70, 1, 1, 1), 3), ((70, 1, 1, 2), 9)):
            _check_cmr_recompute(xp, shape, dtype, _kw(size), rng, f"{path} {shape} chunked")
        _check_cmr_recompute(xp, (5, 6, 7, 128), dtype, _kw(5), rng, f"{path} misaligned", offset=1)
        x = xp.put(_inputs(rng, "cmrnorm", (3, 4, 4, 2), dtype)[0], 0)
        y, none = dev.cmrnorm_fwd(x, keep_denom=False, **_kw(3))
        assert none is None and y.dtype == x.dtype and y.shape == x.shape
        dx = dev.cmrnorm_bwd(y, x, None, None, **_kw(3))
        assert dx.dtype == x.dtype and dx.shape == x.shape
        assert dev.cmrnorm_bwd(x[:0], x[:0], None, None, **_kw(3)).shape == (0, 4, 4, 2)


ALEXNET_KW = dict(size=5, scale=5e-4, pow=0.75, min_div=2.0)


@pytest.fixture(scope="module")
def alexnet_lrn2():
    """x, dy of AlexNet's second LRN (192x27x27x128, float32) and the reference (y, denom, dx)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((192, 27, 27, 128)) * 30).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx_recomputed = ref.cmrnorm_bwd(dy.astype(np.float64), x.astype(np.float64), None, None, **ALEXNET_KW)
    return (x, dy) + _references("cmrnorm", x, dy, ALEXNET_KW) + (dx_recomputed.astype(np.float32),)


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["extension", "rawmodule"])
def test_cmrnorm_alexnet_sized(path, alexnet_lrn2):
    """192x27x27x128 (AlexNet's second LRN): three channel chunks on an H100, the vector path; with and
    without stored denominators."""
    xp = _cupy_module()
    x, dy, y_ref, d_ref, dx_ref, dx_recomputed = alexnet_lrn2
    with use_path(path):
        gx = xp.put(x, 0)
        outs = (xp.poisoned(x.shape, np.float32, 0), xp.poisoned(x.shape, np.float32, 0))
        y, d = dev.cmrnorm_fwd(gx, out=outs, **ALEXNET_KW)
        check_close(y.get(), y_ref, 1e-5, f"{path} alexnet y")
        check_close(d.get(), d_ref, 1e-5, f"{path} alexnet denom")
        out = xp.poisoned(x.shape, np.float32, 0)
        dev.cmrnorm_bwd(xp.put(dy, 0), gx, xp.put(y_ref, 0), xp.put(d_ref, 0), out=out, **ALEXNET_KW)
        check_close(out.get(), dx_ref, 1e-5, f"{path} alexnet dx")
        y2 = dev.cmrnorm_fwd(gx, keep_denom=False, out=(xp.poisoned(x.shape, np.float32, 0), None), **ALEXNET_KW)[0]
        check_close(y2.get(), y_ref, 1e-5, f"{path} alexnet fwd_y y")
        out = xp.poisoned(x.shape, np.float32, 0)
        dev.cmrnorm_bwd(xp.put(dy, 0), gx, None, None, out=out, **ALEXNET_KW)
        check_close(out.get(), dx_recomputed, 1e-5, f"{path} alexnet bwd_x dx")


@pytest.mark.gpu
@pytest.mark.parametrize("op", OPS)
def test_norm_argument_checks_on_the_gpu(op):
    import cupy as cp

    fwd, bwd = getattr(dev, op + "_fwd"), getattr(dev, op + "_bwd")
    x = cp.ones((3, 4, 4, 2), cp.float32)
    kw = dict(size=3, scale=1.0, pow=0.75)
    with pytest.raises(ValueError, match=rf"{op}_fwd: x must have 4 dimensions, got shape \(4, 4, 2\)"):
        fwd(x[0], **kw)
    with pytest.raises(ValueError, match=rf"{op}_fwd: x must be float32 or float64, got int32"):
        fwd(cp.ones((3, 4, 4, 2), cp.int32), **kw)
    with pytest.raises(ValueError, match=rf"{op}_fwd: x must be C-contiguous"):
        fwd(cp.ones((3, 4, 4, 4), cp.float32)[..., 1:3], **kw)
    with pytest.raises(ValueError, match=rf"{op}_fwd: size must be >= 1, got 0"):
        fwd(x, size=0, scale=1.0, pow=0.75)
    with pytest.raises(ValueError, match=rf"{op}_bwd: denom must have shape \(3, 4, 4, 2\)"):
        bwd(x, x, x, x[..., :1].copy(), **kw)
    with pytest.raises(ValueError, match=rf"{op}_bwd: inputs must share one dtype"):
        bwd(x, x, x.astype(cp.float64), x, **kw)
    with pytest.raises(ValueError, match=rf"{op}_bwd: out must not overlap dy"):
        bwd(x, x.copy(), x.copy(), x.copy(), out=x, **kw)
    with pytest.raises(ValueError, match=rf"{op}_fwd: out\[0\] must not overlap x"):
        fwd(x, out=(x, cp.empty_like(x)), **kw)
    with pytest.raises(ValueError, match=rf"{op}_fwd: out\[1\] must be a CuPy array"):
        fwd(x, out=(cp.empty_like(x), np.empty((3, 4, 4, 2), np.float32)), **kw)
    if op == "cmrnorm":
        with pytest.raises(ValueError, match=r"cmrnorm_bwd: y and denom must both be given or both be None"):
            bwd(x, x, None, x.copy(), **kw)
        with pytest.raises(ValueError, match=r"cmrnorm_bwd: dy must have shape \(3, 4, 4, 2\)"):
            bwd(x[:2].copy(), x, None, None, **kw)
        with pytest.raises(ValueError, match=r"cmrnorm_bwd: inputs must share one dtype"):
            bwd(x.astype(cp.float64), x, None, None, **kw)
        with pytest.raises(ValueError, match=r"cmrnorm_bwd: out must not overlap x"):
            bwd(x.copy(), x, None, None, out=x, **kw)
        with pytest.raises(ValueError, match=r"cmrnorm_fwd: out\[1\] must be None with keep_denom=False"):
            fwd(x, keep_denom=False, out=(cp.empty_like(x), cp.empty_like(x)), **kw)
