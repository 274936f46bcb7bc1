"""pyconvnet.cuda.ops.elt (kernels/elt.cu, and concat by device copies) against the NumPy reference
pyconvnet.ops.elt.

Without a GPU: the launch configuration, the kernel signatures, the argument checks, and the wrappers
themselves run end to end on the CPU, their kernels executed by the emulator tests/cuda_host.py through
the real launch code (the ``host_device`` fixture below, shared with the other test_cuda_* files of
dropout, softmax and sgd), bit-exact against the reference. On a GPU (tests marked ``gpu``), through
both launch paths: every op forward and backward over batch sizes 1, 3, 127, 128, 129 and odd channel
counts, float32 and float64, outputs poisoned with NaN, chained launches (more than 8 inputs), aliasing
and misaligned inputs.
"""
from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pyconvnet.cuda import launch, loader, use_launch_path
from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import elt as dev
from pyconvnet.ops import elt as ref

from gpu_util import PATHS, check_close, poisoned, use_path

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
SHAPES = [(3, 5, 5, n) for n in (1, 3, 127, 128, 129)] + [(7, n) for n in (1, 3, 127, 128, 129)]
COEFFS = [0.5, -2.0, 1.0, 3.25, -0.75, 1.5, 2.0, -1.0, 0.125, 4.0, -3.0]


# --- a CPU stand-in for CuPy and the device, shared with the other test_cuda_* files of this family ---

class _HostMem:
    """What the wrappers use of a CuPy MemoryPointer: the address and a device-to-device copy."""

    def __init__(self, ptr):
        self.ptr = ptr

    def copy_from_device_async(self, src, size, stream=None):
        ctypes.memmove(self.ptr, src.ptr, size)


class HostArray(np.ndarray):
    """A NumPy array posing as a CuPy array: ``.data.ptr`` is its host address, ``.get()`` a NumPy copy."""
    __module__ = "cupy._host"

    @property
    def data(self):
        return _HostMem(self.ctypes.data)

    def get(self):
        return np.array(self)


def host(a):
    """A HostArray copy of ``a``."""
    return np.array(a).view(HostArray)


class _HostFunction:
    """A RawModule function whose launch runs the kernel on the CPU emulator; the scalar types come from
    pyconvnet.cuda.launch's casts, so the emulator sees exactly what the RawModule path would pass."""
    _LETTER = {np.int32: "i", np.int64: "l", np.float32: "f", np.float64: "d"}

    def __init__(self, module, name, calls):
        self.module, self.name, self.calls = module, name, calls

    def __call__(self, grid, block, args, shared_mem=0):
        sig = "".join("p" if isinstance(a, np.ndarray) else self._LETTER[type(a)] for a in args)
        vals = [np.asarray(a) if isinstance(a, np.ndarray) else a.item() for a in args]
        self.calls.append((self.name, grid, block, shared_mem))
        self.module.launch(self.name, grid, block, vals, sig, shmem=shared_mem, schedule=self.calls.schedule)


class HostLaunches(list):
    """The launches seen so far, (name, grid, block, shmem); ``schedule`` is the emulator's thread order
    for the next ones ("forward", "reverse" or "random")."""
    schedule = "forward"


@pytest.fixture
def host_device(monkeypatch):
    """CuPy replaced by HostArray helpers on a small fake device (2 SMs, 8 KiB of opt-in shared memory
    per block, so the softmax kernels cache only part of their rows), kernels compiled for the CPU by
    tests/cuda_host.py and launched through the real RawModule launch path. Yields a HostLaunches list."""
    cuda_host = pytest.importorskip("cuda_host")
    calls = HostLaunches()
    rt = SimpleNamespace(cudaDevAttrMultiProcessorCount=16, cudaDevAttrMaxThreadsPerBlock=1,
                         cudaDevAttrMaxGridDimX=5, cudaDevAttrMaxSharedMemoryPerBlockOptin=97,
                         getDevice=lambda: 0,
                         deviceGetAttribute=lambda attr, d: {16: 2, 1: 1024, 5: 2**31 - 1, 97: 8192}[attr])
    fake = SimpleNamespace(
        ndarray=HostArray,
        empty=lambda shape, dtype=np.float32: np.empty(shape, dtype).view(HostArray),
        empty_like=lambda a: np.empty(a.shape, a.dtype).view(HostArray),
        cuda=SimpleNamespace(runtime=rt, get_current_stream=lambda: SimpleNamespace(ptr=0)))
    modules = {}

    class Module:
        def __init__(self, source):
            if source not in modules:
                modules[source] = cuda_host.HostModule(KERNELS / f"{source}.cu")
            self.mod = modules[source]

        def get_function(self, name):
            return _HostFunction(self.mod, name, calls)

    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(loader, "rawmodule", Module)
    monkeypatch.setattr(launch, "_functions", {})
    monkeypatch.setattr(launch, "_limits", {})
    monkeypatch.setattr(launch, "_shared_allowed", {})
    from pyconvnet.cuda.ops import softmax
    monkeypatch.setattr(softmax, "_SMEM_OPTIN", {})
    with use_launch_path("rawmodule"):
        yield calls


def kernel_signature_letters(source: str, name: str) -> str:
    """The launch letters of ``name<float>`` (or its only instance) from its explicit instantiation in
    kernels/<source>.cu: p pointer, i int, l long long, f float (T)."""
    text = (KERNELS / f"{source}.cu").read_text()
    m = re.search(r"template\s+__global__\s+void\s+" + name + r"\s*<\s*(float|bool)\s*>\s*\(([^;]*)\)\s*;", text)
    assert m, f"no instantiation of {name} in {source}.cu"
    letters = ""
    for t in m.group(2).split(","):
        t = " ".join(t.split())
        letters += "p" if "*" in t else {"int": "i", "long long": "l", "float": "f"}[t]
    return letters


# --- CPU: configuration, signatures, checks ---------------------------------------------------------

def test_kernel_signatures_match_the_wrappers():
    for k in (dev.SUM_FWD, dev.SUM_BWD, dev.MAX_FWD, dev.MAX_BWD):
        assert kernel_signature_letters("elt", k.name) == k.args, k.name
    assert re.search(r"ELT_MAXK = (\d+);", (KERNELS / "elt.cu").read_text())[1] == str(dev.MAXK)


def test_launch_config():
    lim = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
    assert dev.elt_launch_config(1, 4, lim) == (1, 256)
    assert dev.elt_launch_config(4 * 256 + 1, 4, lim) == (2, 256)
    assert dev.elt_launch_config(2 * 256 + 1, 8, lim) == (2, 256)
    assert dev.elt_launch_config(4096 * 4096, 4, lim) == (132 * 32, 256)


def test_argument_checks_without_a_gpu():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="eltsum_fwd: xs\\[0\\] must be a CuPy array .* got numpy.ndarray"):
        dev.eltsum_fwd([x, x], [1, 1])
    with pytest.raises(ValueError, match="eltsum_fwd: xs must be a non-empty list of arrays, got list of length 0"):
        dev.eltsum_fwd([], [])
    with pytest.raises(ValueError, match="eltsum_bwd: dy must be a CuPy array"):
        dev.eltsum_bwd(x, [1.0])
    with pytest.raises(ValueError, match="eltmax_fwd: xs\\[0\\] must be a CuPy array"):
        dev.eltmax_fwd([x])
    with pytest.raises(ValueError, match="eltmax_bwd: xs\\[0\\] must be a CuPy array"):
        dev.eltmax_bwd(x, [x], x)
    with pytest.raises(ValueError, match="concat_fwd: xs\\[0\\] must be a CuPy array"):
        dev.concat_fwd([x, x])
    with pytest.raises(ValueError, match="concat_bwd: dy must be a CuPy array"):
        dev.concat_bwd(x, [1, 2])


# --- CPU: the wrappers and kernels end to end on the emulator ---------------------------------------

def _rand(rng, shape, dtype, k):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(k)]


def _at(values, offset):
    """A HostArray copy of ``values`` placed ``offset`` elements past a 16-byte boundary."""
    buf = np.empty(values.size + 8, values.dtype).view(HostArray)
    base = (-(buf.ctypes.data // buf.itemsize)) % (16 // buf.itemsize) + offset
    out = buf[base:base + values.size].reshape(values.shape)
    out[...] = values
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_eltsum_and_eltmax_match_bit_for_bit(host_device, dtype):
    rng = np.random.default_rng(0)
    for shape, k, offset in [((3, 2, 2, 5), 1, 0), ((7, 3), 2, 0), ((3, 3, 3, 7), 3, 1), ((5, 9), 11, 0),
                             ((2, 67), 9, 1)]:
        xs = _rand(rng, shape, dtype, k)
        xs[0].reshape(-1)[:3] = [np.nan, 1.0, -0.0]
        if k > 1:
            xs[1].reshape(-1)[:3] = [2.0, 1.0, 0.0]  # a NaN against 2, a tie, -0 against +0
        cs = COEFFS[:k]
        want = ref.eltsum_fwd(xs, cs)
        got = dev.eltsum_fwd([_at(x, offset) for x in xs], cs, out=_at(np.full(shape, np.nan, dtype), offset))
        np.testing.assert_array_equal(got.get(), want, err_msg=f"eltsum_fwd {shape} k={k}")
        y = ref.eltmax_fwd(xs)
        np.testing.assert_array_equal(dev.eltmax_fwd([host(x) for x in xs]).get(), y, err_msg=f"eltmax {shape}")
        dy = rng.standard_normal(shape).astype(dtype)
        for g, w in zip(dev.eltsum_bwd(_at(dy, offset), cs), ref.eltsum_bwd(dy, cs)):
            np.testing.assert_array_equal(g.get(), w, err_msg=f"eltsum_bwd {shape}")
        got = dev.eltmax_bwd(_at(dy, offset), [_at(x, offset) for x in xs], _at(y, offset))
        for i, (g, w) in enumerate(zip(got, ref.eltmax_bwd(dy, xs, y))):
            np.testing.assert_array_equal(g.get(), w, err_msg=f"eltmax_bwd {shape} input {i}")
    launches = [c[0] for c in host_device]
    assert launches.count(f"eltsum_fwd<{'float' if dtype == np.float32 else 'double'}>") == 1 + 1 + 1 + 3 + 3


def test_host_in_place_and_aliasing(host_device):
    rng = np.random.default_rng(1)
    shape = (4, 9)
    xs = _rand(rng, shape, np.float32, 10)
    hx = [host(x) for x in xs]
    want = ref.eltsum_fwd(xs, COEFFS[:10])
    assert dev.eltsum_fwd(hx, COEFFS[:10], out=hx[9]) is hx[9]  # read by the 2nd launch: copied first
    np.testing.assert_array_equal(hx[9].get(), want)
    hx = [host(x) for x in xs]
    dev.eltsum_fwd(hx, COEFFS[:10], out=hx[0])  # first launch only: truly in place
    np.testing.assert_array_equal(hx[0].get(), want)
    hx = [host(x) for x in xs]
    want = ref.eltmax_fwd(xs)
    dev.eltmax_fwd(hx, out=hx[8])
    np.testing.assert_array_equal(hx[8].get(), want)
    dy = host(xs[0])
    outs = [dy] + [host(np.zeros(shape, np.float32)) for _ in range(9)]
    got = dev.eltsum_bwd(dy, COEFFS[:10], out=outs)  # dx[0] is dy, read again by the 2nd launch
    for g, w in zip(got, ref.eltsum_bwd(xs[0], COEFFS[:10])):
        np.testing.assert_array_equal(g.get(), w)
    hx = [host(x) for x in xs]
    y = host(ref.eltmax_fwd(xs))
    wants = ref.eltmax_bwd(xs[1], xs, np.asarray(y))
    got = dev.eltmax_bwd(hx[1], hx, y, out=[hx[9]] + [host(np.zeros(shape, np.float32)) for _ in range(9)])
    for g, w in zip(got, wants):
        np.testing.assert_array_equal(g.get(), w)
    with pytest.raises(ValueError, match=r"eltsum_bwd: out\[0\] and out\[1\] overlap in memory"):
        dev.eltsum_bwd(dy, [1.0, 2.0], out=[outs[1], outs[1]])
    with pytest.raises(ValueError, match="eltsum_bwd: out must be a list of 2 arrays, got list of length 1"):
        dev.eltsum_bwd(dy, [1.0, 2.0], out=[outs[1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_concat(host_device, dtype):
    rng = np.random.default_rng(2)
    for rest in [(5,), (3, 3, 7)]:
        xs = [rng.standard_normal((c,) + rest).astype(dtype) for c in (1, 3, 2)]
        want = ref.concat_fwd(xs)
        y = dev.concat_fwd([host(x) for x in xs])
        assert isinstance(y, HostArray)
        np.testing.assert_array_equal(y.get(), want)
        out = host(np.full(want.shape, np.nan, dtype))
        assert dev.concat_fwd([host(x) for x in xs], out=out) is out
        np.testing.assert_array_equal(out.get(), want)
        pieces = dev.concat_bwd(host(want), [1, 3, 2])
        for p, w in zip(pieces, ref.concat_bwd(want, [1, 3, 2])):
            assert p.flags.c_contiguous
            np.testing.assert_array_equal(p.get(), w)
    buf = host(want)  # inputs that are already views of out at their places are left alone
    views = [buf[0:1], buf[1:4], buf[4:6]]
    np.testing.assert_array_equal(dev.concat_fwd(views, out=buf).get(), want)
    with pytest.raises(ValueError, match=r"concat_fwd: out overlaps xs\[0\] without being its place"):
        dev.concat_fwd([buf[1:2], buf[1:4], buf[4:6]], out=buf)
    with pytest.raises(ValueError, match=r"concat_fwd: xs\[1\] has shape \(3, 3, 3, 5\)"):
        dev.concat_fwd([host(xs[0]), host(np.zeros((3, 3, 3, 5), dtype))])
    with pytest.raises(ValueError, match=r"concat_bwd: sizes \[1, 2\] sum to 3, but dy has 6 rows"):
        dev.concat_bwd(buf, [1, 2])


# --- on the GPU --------------------------------------------------------------------------------------

TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", PATHS)
def test_elt_matches_reference(path, dtype):
    import cupy as cp

    rng = np.random.default_rng(0)
    with use_path(path):
        for shape, k in [(s, 1 + i % 3) for i, s in enumerate(SHAPES)] + [((3, 5, 5, 129), 11)]:
            xs = _rand(rng, shape, dtype, k)
            if k > 1:
                xs[1].reshape(-1)[::7] = xs[0].reshape(-1)[::7]  # ties
            gx = [cp.asarray(x) for x in xs]
            cs = COEFFS[:k]
            what = f"{path} {shape} k={k}"
            y = dev.eltsum_fwd(gx, cs, out=poisoned(shape, dtype))
            np.testing.assert_array_equal(y.get(), ref.eltsum_fwd(xs, cs), err_msg=f"eltsum_fwd {what}")
            dy = rng.standard_normal(shape).astype(dtype)
            outs = [poisoned(shape, dtype) for _ in range(k)]
            for g, w in zip(dev.eltsum_bwd(cp.asarray(dy), cs, out=outs), ref.eltsum_bwd(dy, cs)):
                check_close(g.get(), w, TOL[dtype], f"eltsum_bwd {what}")
            want = ref.eltmax_fwd(xs)
            y = dev.eltmax_fwd(gx, out=poisoned(shape, dtype))
            np.testing.assert_array_equal(y.get(), want, err_msg=f"eltmax_fwd {what}")
            outs = [poisoned(shape, dtype) for _ in range(k)]
            got = dev.eltmax_bwd(cp.asarray(dy), gx, y, out=outs)
            for i, (g, w) in enumerate(zip(got, ref.eltmax_bwd(dy, xs, want))):
                np.testing.assert_array_equal(g.get(), w, err_msg=f"eltmax_bwd {what} input {i}")
            if len(shape) == 4 and k > 1:
                cat = [cp.asarray(rng.standard_normal((c,) + shape[1:]).astype(dtype)) for c in (1, 3)]
                want = ref.concat_fwd([c.get() for c in cat])
                y = dev.concat_fwd(cat, out=poisoned(want.shape, dtype))
                np.testing.assert_array_equal(y.get(), want, err_msg=f"concat_fwd {what}")
                for p, w in zip(dev.concat_bwd(y, [1, 3]), ref.concat_bwd(want, [1, 3])):
                    np.testing.assert_array_equal(p.get(), w, err_msg=f"concat_bwd {what}")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_elt_unaligned_aliased_and_large(path):
    import cupy as cp

    rng = np.random.default_rng(3)
    with use_path(path):
        bufs = [cp.asarray(rng.standard_normal(1 + 1001).astype(np.float32)) for _ in range(3)]
        xs = [b[1:] for b in bufs]  # 4 bytes past an aligned boundary: the scalar loops
        assert xs[0].data.ptr % 16 == 4
        hx = [x.get() for x in xs]
        np.testing.assert_array_equal(dev.eltsum_fwd(xs, [1.0, -0.5, 2.0]).get(), ref.eltsum_fwd(hx, [1.0, -0.5, 2.0]))
        np.testing.assert_array_equal(dev.eltmax_fwd(xs).get(), ref.eltmax_fwd(hx))
        big = [cp.asarray(rng.standard_normal(2**22 + 3).astype(np.float32)) for _ in range(2)]
        hb = [b.get() for b in big]
        want = ref.eltsum_fwd(hb, [1.0, 1.0])
        assert dev.eltsum_fwd(big, [1.0, 1.0], out=big[0]) is big[0]  # in place, several grid sweeps
        np.testing.assert_array_equal(big[0].get(), want)
        xs = [cp.asarray(x) for x in _rand(rng, (6, 129), np.float32, 10)]
        hx = [x.get() for x in xs]
        want = ref.eltsum_fwd(hx, COEFFS[:10])
        dev.eltsum_fwd(xs, COEFFS[:10], out=xs[9])
        np.testing.assert_array_equal(xs[9].get(), want)
        assert dev.eltsum_fwd([cp.empty((0, 5), cp.float32)], [1.0]).shape == (0, 5)


@pytest.mark.gpu
def test_elt_argument_checks_on_the_gpu():
    import cupy as cp

    x = cp.zeros((4, 6), cp.float32)
    with pytest.raises(ValueError, match=r"eltsum_fwd: xs\[1\] must have shape \(4, 6\), got \(4, 5\)"):
        dev.eltsum_fwd([x, x[:, :5].copy()], [1, 1])
    with pytest.raises(ValueError, match="eltsum_fwd: coeffs has 1 entries for 2 inputs"):
        dev.eltsum_fwd([x, x], [1])
    with pytest.raises(ValueError, match="eltmax_fwd: inputs must share one dtype"):
        dev.eltmax_fwd([x, x.astype(cp.float64)])
    with pytest.raises(ValueError, match=r"eltmax_bwd: y must have shape \(4, 6\)"):
        dev.eltmax_bwd(x, [x], x[:2])
    with pytest.raises(ValueError, match="eltsum_fwd: xs\\[0\\] must be C-contiguous"):
        dev.eltsum_fwd([x[:, ::2]], [1])
    with pytest.raises(ValueError, match="eltsum_fwd: inputs must share one dtype, got out=float64"):
        dev.eltsum_fwd([x], [1], out=cp.zeros((4, 6), cp.float64))
    with pytest.raises(ValueError, match="concat_bwd: sizes\\[1\\] must be >= 1, got 0"):
        dev.concat_bwd(x, [4, 0])
