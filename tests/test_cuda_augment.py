"""pyconvnet.cuda.ops.augment (kernels/augment.cu) against the NumPy reference
pyconvnet.data.augment.prepare, plus pyconvnet.data.augment.pack_geometry.

The output must be bit-identical to the reference (float32; float64 against the same formula in float64).
Without a GPU: launch configuration, kernel signature, pack_geometry and the wrapper's argument checks,
and the wrapper end to end on the CPU emulator (test_cuda_elt's ``host_device``, here passing launch's
null pointer for shift=None on to the kernel) for n in 1, 3, 33, C in 1, 3, crops smaller than the
image with and without flips, whole-image crops, with and without a shift, several x tiles, and grids
smaller than the problem (the kernel's loops). On a GPU, through both launch paths: n 1, 127, 128, 129
and an AlexNet-like 128x3x256x256 -> 224 batch, outputs poisoned with NaN, plus the checks on CuPy arrays.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from pyconvnet.cuda import loader
from pyconvnet.cuda.ops import augment as dev
from pyconvnet.data import augment as ref

from gpu_util import PATHS, poisoned, use_path
from test_cuda_elt import KERNELS, _HostFunction, host, host_device, kernel_signature_letters  # noqa: F401


def _case(rng, n, C, H, W, S, flips=True, shift=True, dtype=np.float32):
    """Random uint8 cases, a mean, crop corners, flips (or None) and a shift (or None)."""
    imgs = rng.integers(0, 256, size=(n, C, H, W), dtype=np.uint8)
    mean = (rng.random((C, H, W)) * 255).astype(dtype)
    oy, ox, flip = ref.random_crops(n, H, W, S, rng)
    if flips:
        flip[0] = True  # at least one mirrored case
    sh = (rng.standard_normal((n, C)) * 3).astype(dtype) if shift else None
    return imgs, mean, oy, ox, (flip if flips else None), sh


def _want(imgs, mean, oy, ox, S, flip, shift):
    """The reference: data.augment.prepare in float32; its formula, step by step, in float64."""
    if mean.dtype == np.float32:
        return ref.prepare(imgs, mean, oy, ox, S, flip=flip, shift=shift)
    x = np.stack([imgs[i, :, y:y + S, x:x + S].astype(np.float64) - mean[:, y:y + S, x:x + S]
                  for i, (y, x) in enumerate(zip(oy, ox))])
    if flip is not None:
        x[flip] = x[flip, :, :, ::-1]
    if shift is not None:
        x += shift[:, :, None, None]
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


def _same_bits(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.shape} {got.dtype}"
    ints = {4: np.uint32, 8: np.uint64}[want.itemsize]
    bad = got.view(ints) != want.view(ints)
    assert not bad.any(), f"{what}: {bad.sum()} elements differ, first at {np.argwhere(bad)[0]}"


# --- CPU: configuration, signature, checks ---------------------------------------------------------

def test_kernel_signature_and_tile_match_the_wrapper():
    assert kernel_signature_letters("augment", "augment_fwd") == dev.FWD.args
    text = (KERNELS / "augment.cu").read_text()
    assert re.search(r"#define AUG_TILE (\d+)", text)[1] == str(dev.TILE)
    assert re.search(r"#define AUG_ROWS (\d+)", text)[1] == str(dev.ROWS)
    assert dev.FWD.instance(np.float64) == "augment_fwd<double>"


def test_launch_config():
    assert dev.augment_launch_config(1, 1, 1) == ((1, 1, 1), (32, 8, 1))
    assert dev.augment_launch_config(128, 3, 224) == ((7, 4, 672), (32, 8, 1))
    assert dev.augment_launch_config(129, 5, 33) == ((2, 5, 165), (32, 8, 1))
    assert dev.augment_launch_config(32 * 70000, 300, 256) == ((8, 65535, 65535), (32, 8, 1))


def test_pack_geometry():
    g = ref.pack_geometry(np.array([0, 2, 1]), [3, 0, 1], np.array([True, False, True]), 5, 7, 3)
    assert g.dtype == np.int32 and g.flags.c_contiguous
    np.testing.assert_array_equal(g, [[0, 3, 1], [2, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(ref.pack_geometry([0, 0], [0, 0], None, 4, 4, 4), np.zeros((2, 3)))
    assert ref.pack_geometry(np.zeros(0, np.intp), np.zeros(0, np.intp), None, 4, 4, 2).shape == (0, 3)
    rng = np.random.default_rng(1)
    oy, ox, flip = ref.random_crops(50, 9, 12, 7, rng)
    np.testing.assert_array_equal(ref.pack_geometry(oy, ox, flip, 9, 12, 7), np.stack([oy, ox, flip], 1))


@pytest.mark.parametrize("args, match", [
    (([0, 3], [0, 0], None, 5, 5, 3), r"pack_geometry: oy must lie in \[0, 2\] for crops of 3 in 5x5 images, "
                                      r"got values in \[0, 3\]"),
    (([0, 0], [-1, 0], None, 5, 6, 3), r"pack_geometry: ox must lie in \[0, 3\] .* got values in \[-1, 0\]"),
    (([0], [0, 1], None, 5, 5, 3), r"pack_geometry: oy and ox must have one shape \(n,\), got \(1,\) and \(2,\)"),
    (([[0]], [[0]], None, 5, 5, 3), r"pack_geometry: oy must be a 1-D integer array, got int64 with shape \(1, 1\)"),
    (([0.0], [0], None, 5, 5, 3), r"pack_geometry: oy must be a 1-D integer array, got float64"),
    (([0], [0], [1], 5, 5, 3), r"pack_geometry: flip must be None or a bool array of shape \(1,\), got int64"),
    (([0], [0], [True, False], 5, 5, 3),
     r"flip must be None or a bool array of shape \(1,\), got bool with shape \(2,\)"),
    (([0], [0], None, 5, 4, 5), r"pack_geometry: crop size S=5 must be <= H=5 and <= W=4"),
    (([0], [0], None, 5, 5, 0), r"pack_geometry: S must be an integer >= 1, got 0"),
    (([0], [0], None, 5.0, 5, 3), r"pack_geometry: H must be an integer >= 1, got 5.0"),
])
def test_pack_geometry_checks(args, match):
    with pytest.raises(ValueError, match=match):
        ref.pack_geometry(*args)


def test_argument_checks_without_a_gpu():
    imgs = np.zeros((2, 3, 5, 5), np.uint8)
    with pytest.raises(ValueError, match="prepare: imgs must be a CuPy array .* got numpy.ndarray"):
        dev.prepare(imgs, np.zeros((3, 5, 5), np.float32), np.zeros((2, 3), np.int32), 3)
    with pytest.raises(ValueError, match="prepare: shift must be a CuPy array .* got numpy.ndarray"):
        dev.prepare(**dict(_host_args(), shift=np.zeros((2, 3), np.float32)))


def _host_args(n=2, C=3, H=5, W=6, S=4, dtype=np.float32):
    return dict(imgs=host(np.zeros((n, C, H, W), np.uint8)), mean=host(np.zeros((C, H, W), dtype)),
                geom=host(np.zeros((n, 3), np.int32)), size=S)


@pytest.mark.parametrize("change, match", [
    (dict(imgs=np.zeros((2, 3, 5, 6), np.float32)),
     r"prepare: imgs must be uint8, got float32 with shape \(2, 3, 5, 6\)"),
    (dict(imgs=np.zeros((3, 5, 6), np.uint8)), r"prepare: imgs must have 4 dimensions, got shape \(3, 5, 6\)"),
    (dict(imgs=np.zeros((2, 3, 5, 12), np.uint8)[..., ::2]), "prepare: imgs must be C-contiguous"),
    (dict(mean=np.zeros((3, 6, 5), np.float32)), r"prepare: mean must have shape \(3, 5, 6\), got \(3, 6, 5\)"),
    (dict(mean=np.zeros((3, 5, 6), np.int32)), "prepare: mean must be float32 or float64, got int32"),
    (dict(geom=np.zeros((2, 3), np.int64)), r"prepare: geom must be int32, got int64 with shape \(2, 3\)"),
    (dict(geom=np.zeros((3, 3), np.int32)), r"prepare: geom must have shape \(2, 3\), got \(3, 3\)"),
    (dict(size=0), "prepare: size must be >= 1, got 0"),
    (dict(size=2.0), "prepare: size must be an integer, got 2.0"),
    (dict(size=6), r"prepare: size must be <= the image's height and width, got 6 for imgs of shape \(2, 3, 5, 6\)"),
    (dict(shift=np.zeros((3, 2), np.float32)), r"prepare: shift must have shape \(2, 3\), got \(3, 2\)"),
    (dict(shift=np.zeros((2, 3), np.float64)), "prepare: inputs must share one dtype, got mean=float32, shift=float64"),
    (dict(out=np.zeros((3, 4, 4, 3), np.float32)), r"prepare: out must have shape \(3, 4, 4, 2\), got \(3, 4, 4, 3\)"),
    (dict(out=np.zeros((3, 4, 4, 2), np.float64)),
     "prepare: inputs must share one dtype, got mean=float32, out=float64"),
])
def test_argument_checks(host_device, change, match):
    args = _host_args()
    args.update({k: host(v) if isinstance(v, np.ndarray) else v for k, v in change.items()})
    if "imgs" in change and not change["imgs"].flags.c_contiguous:
        args["imgs"] = host(np.zeros((2, 3, 5, 12), np.uint8))[..., ::2]
    with pytest.raises(ValueError, match=match):
        dev.prepare(**args)
    assert not host_device  # nothing launched


# --- CPU: the wrapper and kernel end to end on the emulator -------------------------------------------

class _NullFunction(_HostFunction):
    """_HostFunction, but the null pointer that launch passes for a None array argument (np.uintp(0)
    on the RawModule path: what the wrapper passes for shift=None) goes to the kernel as a null pointer."""

    def __call__(self, grid, block, args, shared_mem=0):
        null = [isinstance(a, np.uintp) and int(a) == 0 for a in args]
        sig = "".join("p" if isinstance(a, np.ndarray) or z else self._LETTER[type(a)] for a, z in zip(args, null))
        vals = [None if z else np.asarray(a) if isinstance(a, np.ndarray) else a.item() for a, z in zip(args, null)]
        self.calls.append((self.name, grid, block, shared_mem))
        self.module.launch(self.name, grid, block, vals, sig, shmem=shared_mem, schedule=self.calls.schedule)


@pytest.fixture
def emulated(host_device, monkeypatch):
    """host_device with null pointers for zero-size arrays (see _NullFunction); yields its launch list."""
    inner = loader.rawmodule

    class Module:
        def __init__(self, source):
            self.mod = inner(source).mod

        def get_function(self, name):
            return _NullFunction(self.mod, name, host_device)

    monkeypatch.setattr(loader, "rawmodule", Module)
    return host_device


# (n, C, H, W, S, flips, shift): n 1/3/33, C 1/3, S < H with and without flips, S == H (and == W), non-square
# images, S > 32 (two x tiles), with and without a shift.
HOST_CASES = [(1, 1, 6, 6, 4, False, False), (1, 3, 6, 6, 4, True, True), (3, 3, 7, 9, 5, True, False),
              (3, 1, 5, 5, 5, False, True), (3, 3, 5, 5, 5, True, False), (33, 3, 6, 8, 3, True, True),
              (33, 1, 4, 4, 4, True, False), (3, 1, 35, 36, 34, True, True), (1, 3, 40, 33, 33, False, False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", HOST_CASES, ids=lambda c: "n{}c{}h{}w{}s{}{}{}".format(
    *c[:5], "-flip" if c[5] else "", "-shift" if c[6] else ""))
def test_host_prepare_bit_exact(emulated, case, dtype):
    n, C, H, W, S, flips, shift = case
    rng = np.random.default_rng(n * 100 + S)
    imgs, mean, oy, ox, flip, sh = _case(rng, n, C, H, W, S, flips, shift, dtype)
    geom = ref.pack_geometry(oy, ox, flip, H, W, S)
    want = _want(imgs, mean, oy, ox, S, flip, sh)
    out = host(np.full((C, S, S, n), np.nan, dtype))
    got = dev.prepare(host(imgs), host(mean), host(geom), S, None if sh is None else host(sh), out=out)
    assert got is out
    _same_bits(got.get(), want, f"prepare {case}")
    assert [c[:3] for c in emulated] == [(f"augment_fwd<{'float' if dtype == np.float32 else 'double'}>",
                                         *dev.augment_launch_config(n, C, S))]
    if n == 33:  # a new output array, and another thread order
        emulated.schedule = "random"
        _same_bits(dev.prepare(host(imgs), host(mean), host(geom), S, None if sh is None else host(sh)).get(),
                   want, f"prepare {case} (random thread order)")


@pytest.mark.parametrize("grid_yz", [(1, 1), (1, 4), (2, 7)])
def test_host_kernel_loops_past_the_grid(grid_yz):
    """Grids smaller than the problem (the caps at 65535): each block loops over case tiles and rows."""
    cuda_host = pytest.importorskip("cuda_host")
    rng = np.random.default_rng(7)
    n, C, H, W, S = 70, 2, 7, 6, 5
    imgs, mean, oy, ox, flip, sh = _case(rng, n, C, H, W, S)
    geom = ref.pack_geometry(oy, ox, flip, H, W, S)
    out = np.full((C, S, S, n), np.nan, np.float32)
    mod = cuda_host.HostModule(KERNELS / "augment.cu")
    mod.launch("augment_fwd<float>", (1,) + grid_yz, (32, 8), [imgs, mean, geom, sh, out, n, C, H, W, S],
               "pppppiiiii")
    _same_bits(out, _want(imgs, mean, oy, ox, S, flip, sh), f"grid {grid_yz}")


def test_host_empty_batch_launches_nothing(emulated):
    out = dev.prepare(host(np.zeros((0, 3, 5, 5), np.uint8)), host(np.zeros((3, 5, 5), np.float32)),
                      host(np.zeros((0, 3), np.int32)), 4)
    assert out.shape == (3, 4, 4, 0) and not emulated


# --- on the GPU --------------------------------------------------------------------------------------

GPU_CASES = [(1, 3, 40, 40, 33, True, True), (127, 3, 40, 36, 33, True, False), (128, 1, 35, 35, 35, False, True),
             (129, 5, 20, 30, 17, True, True), (128, 3, 256, 256, 224, True, True)]


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_prepare_matches_reference_exactly(path):
    import cupy as cp

    rng = np.random.default_rng(0)
    with use_path(path):
        for case in GPU_CASES:
            n, C, H, W, S, flips, shift = case
            for dtype in ((np.float32, np.float64) if n < 128 else (np.float32,)):
                imgs, mean, oy, ox, flip, sh = _case(rng, n, C, H, W, S, flips, shift, dtype)
                geom = ref.pack_geometry(oy, ox, flip, H, W, S)
                want = _want(imgs, mean, oy, ox, S, flip, sh)
                d_sh = None if sh is None else cp.asarray(sh)
                out = poisoned((C, S, S, n), dtype)
                got = dev.prepare(cp.asarray(imgs), cp.asarray(mean), cp.asarray(geom), S, d_sh, out=out)
                assert got is out
                _same_bits(got.get(), want, f"{path} {case} {np.dtype(dtype)}")
                if sh is not None:  # and the same case without the shift (the null pointer)
                    got = dev.prepare(cp.asarray(imgs), cp.asarray(mean), cp.asarray(geom), S)
                    _same_bits(got.get(), _want(imgs, mean, oy, ox, S, flip, None), f"{path} {case} no shift")


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_kernel_loops_past_the_grid_on_the_gpu(path):
    import cupy as cp

    from pyconvnet.cuda.launch import launch

    rng = np.random.default_rng(3)
    n, C, H, W, S = 100, 3, 12, 12, 9
    imgs, mean, oy, ox, flip, sh = _case(rng, n, C, H, W, S)
    geom = ref.pack_geometry(oy, ox, flip, H, W, S)
    out = poisoned((C, S, S, n))
    with use_path(path):
        launch(dev.FWD, np.float32, (1, 2, 5), (32, 8), cp.asarray(imgs), cp.asarray(mean), cp.asarray(geom),
               cp.asarray(sh), out, n, C, H, W, S)
    _same_bits(out.get(), _want(imgs, mean, oy, ox, S, flip, sh), f"{path} small grid")


@pytest.mark.gpu
def test_prepare_argument_checks_on_the_gpu():
    import cupy as cp

    imgs, mean, geom = cp.zeros((2, 3, 5, 6), cp.uint8), cp.zeros((3, 5, 6), cp.float32), cp.zeros((2, 3), cp.int32)
    with pytest.raises(ValueError, match="prepare: imgs must be uint8"):
        dev.prepare(imgs.astype(cp.float32), mean, geom, 4)
    with pytest.raises(ValueError, match=r"prepare: geom must have shape \(2, 3\), got \(3, 2\)"):
        dev.prepare(imgs, mean, geom.T.copy(), 4)
    with pytest.raises(ValueError, match="prepare: mean must be C-contiguous"):
        dev.prepare(imgs, cp.zeros((3, 5, 12), cp.float32)[..., ::2], geom, 4)
    with pytest.raises(ValueError, match="prepare: inputs must share one dtype"):
        dev.prepare(imgs, mean, geom, 4, cp.zeros((2, 3), cp.float64))
    with pytest.raises(ValueError, match=r"prepare: out must have shape \(3, 4, 4, 2\)"):
        dev.prepare(imgs, mean, geom, 4, out=cp.zeros((3, 4, 4, 3), cp.float32))
