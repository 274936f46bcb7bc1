"""pyconvnet.cuda.ops.pool (kernels/pool.cu) against the NumPy reference pyconvnet.ops.pool.

Without a GPU: the kernel code itself on the CPU through the emulator (tests/cuda_host.py) against the
reference at small shapes, over both geometry paths (the 3/2 specialisation and the runtime loops),
both image-pack widths, misaligned data, tied maxima and grids smaller than the work (grid-stride
loops); plus the mode table, the kernel signatures, the launch configuration and the argument checks.
On a GPU (tests marked ``gpu``): max and avg, forward and backward, float32 and float64, through both
launch paths, over batch sizes 1, 3, 127, 128, 129, odd channel counts, H != W, strides 1 to 3 and
windows off the borders, with outputs poisoned with NaN; ||out - ref|| / ||ref|| <= 1e-5 (float32).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pyconvnet.cuda import loader, use_launch_path
from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import pool as dev
from pyconvnet.ops import pool as ref

from gpu_util import BATCHES, PATHS, check_close, poisoned, use_path, FakeDeviceArray, install_fake_cupy

KERNEL = Path(__file__).resolve().parent.parent / "kernels" / "pool.cu"
TOL = {np.float32: 1e-5, np.float64: 1e-12}
LIMITS = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)

# (C, H, W), size, stride, start, outputs: the 3/2 specialisation, then the runtime loops.
GEOMS = [
    ((3, 13, 12), 3, 2, 0, 0),    # 3/2, H != W, the last column window overhangs W
    ((2, 8, 9), 3, 2, -1, 0),     # 3/2 off the top/left border too
    ((1, 9, 7), 3, 2, 1, 3),      # 3/2, positive start (row/column 0 in no window), given outputs
    ((1, 3, 2), 3, 2, -1, 0),     # 3/2 on an image smaller than the window
    ((5, 9, 8), 4, 3, -1, 0),     # runtime loops: even size, stride 3, both borders
    ((1, 7, 6), 3, 1, -1, 0),     # stride 1: nine covering windows per input
    ((3, 8, 10), 2, 3, 0, 0),     # stride > size: inputs in no window get 0
    ((2, 6, 7), 5, 4, -3, 0),     # big overhang on both sides
]
GEOM_IDS = ["C{}H{}W{}".format(*g[0]) + "-s{}/{}-st{}-o{}".format(*g[1:]) for g in GEOMS]


def _inputs(rng, shape, dtype, mode, kw):
    """x (rounded to halves for max, so windows hold tied maxima), y = ref fwd, dy, dx = ref bwd."""
    x = rng.standard_normal(shape)
    if mode == "max":
        x = np.round(x * 2) / 2
    x = x.astype(dtype)
    y = ref.pool_fwd(x, mode=mode, **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, y, dy, ref.pool_bwd(dy, x, y, mode=mode, **kw)


def _kw(size, stride, start, outputs):
    return dict(size=size, stride=stride, start=start, outputs=outputs)


# --- without a GPU ------------------------------------------------------------------------------------

def test_modes_match_the_kernel_enum_and_the_reference():
    enum = {m[1].lower(): int(m[2]) for m in re.finditer(r"POOL_(\w+)\s*=\s*(\d+)", KERNEL.read_text())}
    assert enum == dev.MODE_IDS
    assert tuple(dev.MODE_IDS) == ref.MODES
    assert dev.pool_out_size is ref.pool_out_size


def test_kernel_signatures_match_the_wrappers():
    """Each entry point takes exactly the arguments its Kernel's signature letters describe."""
    text = KERNEL.read_text()
    assert loader.entry_points(text) == ["pool_fwd<float>", "pool_fwd<double>", "pool_bwd<float>",
                                         "pool_bwd<double>"]
    for k in (dev.FWD, dev.BWD):
        for ctype in ("float", "double"):
            m = re.search(rf"template __global__ void {k.name}<{ctype}>\(([^)]*)\);", text)
            params = [p.strip() for p in m[1].split(",")]
            assert "".join("p" if p.endswith(f"{ctype}*") else "i" if p == "int" else "?" for p in params) == k.args
            assert [p.startswith("const") for p in params if p.endswith("*")][-1] is False  # the output


def test_launch_config():
    # forward, AlexNet pool1: 64 x 27 rows of 27 pixels x 32 packs of 4 images = 864 items: 4 blocks
    assert dev.pool_fwd_config(64, 27, 27, 128, 4, LIMITS) == ((64 * 27, 4), 224)
    # backward: 28 x 28 tiles of 2 x 2 pixels, 28 x 32 = 896 items per row of tiles, blocks of 128
    assert dev.pool_bwd_config(64, 55, 55, 128, 4, 2, 0, LIMITS) == ((64 * 28, 7), 128)
    assert dev.pool_fwd_config(3, 5, 5, 129, 1, LIMITS) == ((15, 3), 224)         # 645 items
    assert dev.pool_fwd_config(1, 1, 1, 1, 1, LIMITS) == ((1, 1), 32)
    small = DeviceLimits(sm_count=4, max_block=128, max_grid_x=100)
    assert dev.pool_bwd_config(64, 55, 55, 128, 4, 2, 0, small) == ((100, 7), 128)  # grid-stride rows
    assert dev.pool_fwd_config(64, 27, 27, 128, 4, small) == ((100, 7), 128)
    assert dev.pool_bwd_config(1, 1, 10**6, 128, 1, 1, 0, small) == ((1, 65535), 128)  # grid-stride items


@pytest.mark.parametrize("img, stride, start, want", [
    (55, 2, 0, 28),   # [0,2) ... [54,56)
    (8, 2, -1, 5),    # [-1,1) ... [7,9)
    (9, 2, 1, 5),     # [-1,1) [1,3) ... [7,9): tile -1 holds position 0
    (7, 1, -1, 7),    # stride 1: one pixel per tile
    (10, 3, 0, 4),    # [9,12) overhangs
])
def test_pool_tiles(img, stride, start, want):
    assert dev.pool_tiles(img, stride, start) == want
    t0 = (-start) // stride  # the tile holding position 0
    assert start + t0 * stride <= 0 < start + (t0 + 1) * stride
    covered = [p for t in range(t0, t0 + want) for p in range(start + t * stride, start + (t + 1) * stride)]
    assert [p for p in covered if 0 <= p < img] == list(range(img)) and covered[-1] >= img - 1


def test_pack_needs_a_multiple_of_16_bytes_and_aligned_pointers():
    a, b = FakeDeviceArray((1,), np.float32, 0x1000), FakeDeviceArray((1,), np.float32, 0x2010)
    odd = FakeDeviceArray((1,), np.float32, 0x2004)
    assert dev.pool_pack(128, 4, a, b) == 4
    assert dev.pool_pack(2, 8, a, b) == 2
    assert dev.pool_pack(130, 4, a, b) == 1
    assert dev.pool_pack(128, 4, a, odd) == 1


def test_argument_checks_without_a_gpu():
    x = np.zeros((2, 6, 6, 3), np.float32)
    y = np.zeros((2, 3, 3, 3), np.float32)
    kw = dict(size=2, stride=2)
    with pytest.raises(ValueError, match="pool_fwd: x must be a CuPy array .* got numpy.ndarray"):
        dev.pool_fwd(x, mode="max", **kw)
    with pytest.raises(ValueError, match="pool_bwd: dy must be a CuPy array"):
        dev.pool_bwd(y, x, y, mode="avg", **kw)
    with pytest.raises(ValueError, match=r"pool_fwd: mode must be one of \('max', 'avg'\), got 'min'"):
        dev.pool_fwd(x, mode="min", **kw)
    with pytest.raises(ValueError, match=r"pool_out_size: window 3 covers \[6, 9\)"):
        dev.pool_out_size(5, 3, 2, 0, 4)


@pytest.fixture
def fake_cupy(monkeypatch):
    """``import cupy`` gives a stand-in with one 132-SM device; launch caches start empty."""
    fake = install_fake_cupy(monkeypatch, empty=lambda shape, dtype: FakeDeviceArray(shape, dtype, 0x70000))
    return fake


def test_rawmodule_launch_passes_typed_scalars(fake_cupy, monkeypatch):
    calls = []

    class Module:
        def get_function(self, name):
            return lambda grid, block, args, shared_mem=0: calls.append((name, grid, block, args))

    monkeypatch.setattr(loader, "rawmodule", lambda source: Module())
    x = FakeDeviceArray((3, 55, 54, 128), np.float32, 0x10000)
    with use_launch_path("rawmodule"):
        y = dev.pool_fwd(x, mode="avg", size=3, stride=2)
        assert y.shape == (3, 27, 27, 128)
        dx = dev.pool_bwd(y, x, y, mode="max", size=3, stride=2, start=-1, outputs=27,
                          out=FakeDeviceArray(x.shape, np.float32, 0x4000004))  # misaligned: pack 1
    (name, grid, block, args), (name2, grid2, block2, args2) = calls
    assert (name, grid, block) == ("pool_fwd<float>", (81, 4, 1), (224, 1, 1))
    assert args[:2] == (x, y) and all(type(a) is np.int32 for a in args[2:])
    assert args[2:] == (3, 55, 54, 128, 27, 27, 3, 2, 0, dev.MODE_IDS["avg"], 4)
    assert (name2, grid2, block2) == ("pool_bwd<float>", (84, 28, 1), (128, 1, 1))  # 28 x 128 items
    assert args2[:4] == (y, x, y, dx) and args2[4:] == (3, 55, 54, 128, 27, 27, 3, 2, -1, 0, 1)
    calls.clear()
    x64 = FakeDeviceArray((2, 4, 4, 6), np.float64, 0x10000)
    with use_launch_path("rawmodule"):
        dev.pool_fwd(x64, mode="max", size=2, stride=2)
    assert calls[0][0] == "pool_fwd<double>" and calls[0][3][-1] == 2  # 6 doubles: packs of 2
    with pytest.raises(ValueError, match=r"pool_bwd: out must not overlap dy"):
        dev.pool_bwd(y, x, y, mode="avg", size=3, stride=2, out=FakeDeviceArray(x.shape, np.float32, 0x70000))


# --- the kernel code on the host (tests/cuda_host.py) ----------------------------------------------

@pytest.fixture(scope="module")
def host():
    cuda_host = pytest.importorskip("cuda_host")
    return cuda_host.HostModule(KERNEL)


def _aligned(values, offset):
    """A flat copy of ``values`` starting ``offset`` elements past a 16-byte boundary."""
    buf = np.empty(values.size + 8, values.dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % (16 // buf.itemsize) + offset
    out = buf[base:base + values.size]
    out[:] = values.ravel()
    return out


def _host_pool(host, dtype, mode, kw, x, y, dy, offset, pack, grid=None, block=None):
    """(y, dx) from pool_fwd / pool_bwd run on the host, from data ``offset`` elements past 16 bytes."""
    c, h, w, n = x.shape
    _, oh, ow, _ = y.shape
    ct = "float" if dtype == np.float32 else "double"
    scalars = [c, h, w, n, oh, ow, kw["size"], kw["stride"], kw["start"], dev.MODE_IDS[mode], pack]
    gx, yo = _aligned(x, offset), _aligned(np.full(y.shape, np.nan, dtype), offset)
    g, b = (grid, block) if grid else dev.pool_fwd_config(c, oh, ow, n, pack, LIMITS)
    host.launch(f"pool_fwd<{ct}>", g, b, [gx, yo] + scalars, dev.FWD.args)
    dxo = _aligned(np.full(x.shape, np.nan, dtype), offset)
    g, b = (grid, block) if grid else dev.pool_bwd_config(c, h, w, n, pack, kw["stride"], kw["start"], LIMITS)
    host.launch(f"pool_bwd<{ct}>", g, b, [_aligned(dy, offset), gx, _aligned(y, offset), dxo] + scalars,
                dev.BWD.args)
    return yo.reshape(y.shape), dxo.reshape(x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("geom", GEOMS, ids=GEOM_IDS)
def test_kernel_code_on_the_host(host, geom, mode, dtype):
    (c, h, w), size, stride, start, outputs = geom
    kw = _kw(size, stride, start, outputs)
    pk = 16 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(5)
    for n, offset, pack in ((8, 0, pk), (8, 1, 1), (3, 0, 1)):  # packs; scalar misaligned; N % pack != 0
        x, y, dy, dx = _inputs(rng, (c, h, w, n), dtype, mode, kw)
        what = f"host {mode} {x.shape} {kw} offset {offset} pack {pack}"
        yo, dxo = _host_pool(host, dtype, mode, kw, x, y, dy, offset, pack)
        check_close(yo, y, TOL[dtype], f"{what} fwd")
        check_close(dxo, dx, TOL[dtype], f"{what} bwd")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_kernel_grid_stride_loops_on_the_host(host, mode):
    """A grid smaller than the work in both dimensions and a block that is not a warp multiple."""
    kw = _kw(3, 2, -1, 0)
    x, y, dy, dx = _inputs(np.random.default_rng(6), (3, 7, 6, 5), np.float32, mode, kw)
    yo, dxo = _host_pool(host, np.float32, mode, kw, x, y, dy, 0, 1, grid=(4, 2), block=7)
    check_close(yo, y, TOL[np.float32], f"host {mode} small grid fwd")
    check_close(dxo, dx, TOL[np.float32], f"host {mode} small grid bwd")


# --- on the GPU ------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("path", PATHS)
def test_pool_matches_reference(path, mode, dtype):
    import cupy as cp

    rng = np.random.default_rng(0)
    with use_path(path):
        for (c, h, w), size, stride, start, outputs in GEOMS + [((16, 27, 27), 3, 2, 0, 0)]:
            kw = _kw(size, stride, start, outputs)
            for n in BATCHES:
                x, y, dy, dx = _inputs(rng, (c, h, w, n), dtype, mode, kw)
                what = f"{path} {mode} {x.shape} {kw}"
                gx, gy, gdy = cp.asarray(x), cp.asarray(y), cp.asarray(dy)
                out = poisoned(y.shape, dtype)
                assert dev.pool_fwd(gx, mode=mode, **kw, out=out) is out
                check_close(out.get(), y, TOL[dtype], f"{what} fwd")
                out = poisoned(x.shape, dtype)
                assert dev.pool_bwd(gdy, gx, gy, mode=mode, **kw, out=out) is out
                check_close(out.get(), dx, TOL[dtype], f"{what} bwd")
        y2 = dev.pool_fwd(gx, mode=mode, **kw)  # new arrays when out is not given
        check_close(y2.get(), y, TOL[dtype], f"{what} fwd without out")
        check_close(dev.pool_bwd(gdy, gx, gy, mode=mode, **kw).get(), dx, TOL[dtype], f"{what} bwd without out")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_pool_misaligned_batch_of_128(path):
    """N = 128 whose data starts 4 bytes past 16: the scalar path, on the GPU."""
    import cupy as cp

    rng = np.random.default_rng(1)
    kw = _kw(3, 2, 0, 0)
    with use_path(path):
        for mode in ref.MODES:
            x, y, dy, dx = _inputs(rng, (5, 11, 11, 128), np.float32, mode, kw)
            bufs = [cp.full(a.size + 1, cp.nan, np.float32) for a in (x, y, dy, y, x)]
            gx, gy, gdy, yo, dxo = (b[1:].reshape(a.shape) for b, a in zip(bufs, (x, y, dy, y, x)))
            gx[...], gy[...], gdy[...] = cp.asarray(x), cp.asarray(y), cp.asarray(dy)
            assert gx.data.ptr % 16 == 4 and dev.pool_pack(128, 4, gx) == 1
            check_close(dev.pool_fwd(gx, mode=mode, **kw, out=yo).get(), y, 1e-5, f"{path} {mode} misaligned fwd")
            check_close(dev.pool_bwd(gdy, gx, gy, mode=mode, **kw, out=dxo).get(), dx, 1e-5,
                        f"{path} {mode} misaligned bwd")


@pytest.mark.gpu
def test_pool_argument_checks_on_the_gpu():
    import cupy as cp

    x = cp.zeros((2, 6, 6, 3), cp.float32)
    y = cp.zeros((2, 3, 3, 3), cp.float32)
    kw = dict(mode="max", size=2, stride=2)
    with pytest.raises(ValueError, match="pool_fwd: x must be float32 or float64, got int32"):
        dev.pool_fwd(x.astype(cp.int32), **kw)
    with pytest.raises(ValueError, match="pool_fwd: x must be C-contiguous"):
        dev.pool_fwd(cp.zeros((2, 6, 6, 6), cp.float32)[..., ::2], **kw)
    with pytest.raises(ValueError, match=r"pool_fwd: x must have 4 dimensions, got shape \(6, 6, 3\)"):
        dev.pool_fwd(x[0], **kw)
    with pytest.raises(ValueError, match=r"pool_fwd: window 3 covers \[6, 8\) and misses the image"):
        dev.pool_fwd(x, **kw, outputs=4)
    with pytest.raises(ValueError, match=r"pool_bwd: dy must have shape \(2, 3, 3, 3\), got \(2, 2, 3, 3\)"):
        dev.pool_bwd(y[:, :2].copy(), x, y, **kw)
    with pytest.raises(ValueError, match=r"pool_bwd: y must have shape \(2, 3, 3, 3\)"):
        dev.pool_bwd(y, x, y[..., :2].copy(), **kw)
    with pytest.raises(ValueError, match="pool_bwd: inputs must share one dtype"):
        dev.pool_bwd(y.astype(cp.float64), x, y, **kw)
    with pytest.raises(ValueError, match=r"pool_fwd: out must have shape \(2, 3, 3, 3\)"):
        dev.pool_fwd(x, **kw, out=cp.zeros((2, 3, 3, 2), cp.float32))
    with pytest.raises(ValueError, match="pool_fwd: inputs must share one dtype, got out=float64, x=float32"):
        dev.pool_fwd(x, **kw, out=cp.zeros((2, 3, 3, 3), cp.float64))
    with pytest.raises(ValueError, match="pool_bwd: out must be a CuPy array"):
        dev.pool_bwd(y, x, y, **kw, out=np.zeros((2, 6, 6, 3), np.float32))
    with pytest.raises(ValueError, match="pool_fwd: out must not overlap x"):
        dev.pool_fwd(x, mode="avg", size=1, stride=1, out=x)
    assert dev.pool_fwd(cp.zeros((0, 6, 6, 3), cp.float32), **kw).shape == (0, 3, 3, 3)
    assert dev.pool_bwd(y[:, :, :, :0], x[:, :, :, :0], y[:, :, :, :0], **kw).shape == (2, 6, 6, 0)
