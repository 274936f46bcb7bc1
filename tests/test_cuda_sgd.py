"""pyconvnet.cuda.ops.sgd (kernels/sgd.cu) against the NumPy reference pyconvnet.ops.sgd.

Without a GPU: launch configuration, kernel signature, argument checks, and the wrapper run end to end
on the CPU emulator (``host_device``, see tests/test_cuda_elt.py), bit-exact against the reference. On a
GPU, through both launch paths: float32 and float64, several shapes (batch-like sizes 1, 3, 127, 128,
129 and odd counts), aligned and misaligned arrays, exactly equal to the reference.
"""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import sgd as dev
from pyconvnet.ops import sgd as ref

from gpu_util import PATHS, use_path
from test_cuda_elt import HostArray, _at, host, host_device, kernel_signature_letters  # noqa: F401

SHAPES = [(1,), (3,), (127,), (128, 129), (96, 3, 11, 11), (5, 1)]
HYPER = [dict(eps=0.01, mom=0.9, wc=5e-4, n=128), dict(eps=0.1, mom=0.0, wc=0.0, n=1), dict(eps=1e-3, mom=0.9,
                                                                                              wc=0.0, n=3)]


def _arrays(rng, shape, dtype):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(3)]


def test_kernel_signature_matches_the_wrapper():
    assert kernel_signature_letters("sgd", dev.UPDATE.name) == dev.UPDATE.args


def test_launch_config():
    lim = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
    assert dev.sgd_launch_config(1, 4, lim) == (1, 256)
    assert dev.sgd_launch_config(4 * 256 + 1, 4, lim) == (2, 256)
    assert dev.sgd_launch_config(2 * 256 + 1, 8, lim) == (2, 256)
    assert dev.sgd_launch_config(4096 * 4096, 4, lim) == (132 * 32, 256)


def test_argument_checks_without_a_gpu():
    w = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="sgd_update: w must be a CuPy array .* got numpy.ndarray"):
        dev.sgd_update(w, w.copy(), w.copy(), eps=0.1, mom=0.9, wc=0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_update_is_bit_identical(host_device, dtype):
    rng = np.random.default_rng(0)
    for shape in [(3,), (5, 7), (2, 3, 3, 5)]:
        for hyper in HYPER:
            for offset in (0, 1):  # 16-byte packs + tail, and the scalar loop
                w, inc, grad = _arrays(rng, shape, dtype)
                hw, hi, hg = (_at(a, offset) for a in (w, inc, grad))
                assert dev.sgd_update(hw, hi, hg, **hyper) is None
                ref.sgd_update(w, inc, grad, **hyper)
                what = f"{shape} {hyper} offset {offset}"
                np.testing.assert_array_equal(hw.get(), w, err_msg=f"w {what}")
                np.testing.assert_array_equal(hi.get(), inc, err_msg=f"inc {what}")
                np.testing.assert_array_equal(hg.get(), grad, err_msg=f"grad changed {what}")


def test_host_argument_checks(host_device):
    w, inc, g = (host(np.zeros((4, 6), np.float32)) for _ in range(3))
    with pytest.raises(ValueError, match="sgd_update: w and inc must not overlap in memory"):
        dev.sgd_update(w, w, g, eps=0.1, mom=0.9, wc=0.0)
    buf = host(np.zeros((8, 6), np.float32))
    with pytest.raises(ValueError, match="sgd_update: w and grad must not partly overlap in memory"):
        dev.sgd_update(buf[:4], inc, buf[2:6], eps=0.1, mom=0.9, wc=0.0)
    with pytest.raises(ValueError, match=r"sgd_update: grad must have shape \(4, 6\), got \(6, 4\)"):
        dev.sgd_update(w, inc, host(np.zeros((6, 4), np.float32)), eps=0.1, mom=0.9, wc=0.0)
    with pytest.raises(ValueError, match="sgd_update: inputs must share one dtype"):
        dev.sgd_update(w, inc, host(np.zeros((4, 6))), eps=0.1, mom=0.9, wc=0.0)
    with pytest.raises(ValueError, match="sgd_update: eps must be >= 0.0, got -1.0"):
        dev.sgd_update(w, inc, g, eps=-1, mom=0.9, wc=0.0)
    with pytest.raises(ValueError, match="sgd_update: n must be >= 1, got 0"):
        dev.sgd_update(w, inc, g, eps=0.1, mom=0.9, wc=0.0, n=0)
    w0 = host(np.ones(5, np.float32))
    inc0 = host(np.zeros(5, np.float32))
    dev.sgd_update(w0, inc0, w0, eps=0.5, mom=0.0, wc=0.0)  # grad may be w itself: read before written
    np.testing.assert_array_equal(w0.get(), np.full(5, 0.5, np.float32))


# --- on the GPU --------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", PATHS)
def test_sgd_matches_reference(path, dtype):
    import cupy as cp

    rng = np.random.default_rng(0)
    with use_path(path):
        for shape in SHAPES:
            for hyper in HYPER:
                w, inc, grad = _arrays(rng, shape, dtype)
                gw, gi, gg = (cp.asarray(a) for a in (w, inc, grad))
                dev.sgd_update(gw, gi, gg, **hyper)
                ref.sgd_update(w, inc, grad, **hyper)
                np.testing.assert_array_equal(gw.get(), w, err_msg=f"{path} w {shape} {hyper}")
                np.testing.assert_array_equal(gi.get(), inc, err_msg=f"{path} inc {shape} {hyper}")
        bufs = [cp.asarray(rng.standard_normal(1 + 1001).astype(dtype)) for _ in range(3)]
        gw, gi, gg = (b[1:] for b in bufs)  # misaligned: the scalar loop
        w, inc, grad = (a.get() for a in (gw, gi, gg))
        dev.sgd_update(gw, gi, gg, **HYPER[0])
        ref.sgd_update(w, inc, grad, **HYPER[0])
        np.testing.assert_array_equal(gw.get(), w)
        np.testing.assert_array_equal(gi.get(), inc)
        big = [cp.asarray(rng.standard_normal(2**22 + 5).astype(dtype)) for _ in range(3)]  # several sweeps
        hb = [b.get() for b in big]
        dev.sgd_update(*big, **HYPER[0])
        ref.sgd_update(*hb, **HYPER[0])
        np.testing.assert_array_equal(big[0].get(), hb[0])
        np.testing.assert_array_equal(big[1].get(), hb[1])


@pytest.mark.gpu
def test_sgd_argument_checks_on_the_gpu():
    import cupy as cp

    w = cp.zeros((4, 6), cp.float32)
    with pytest.raises(ValueError, match="sgd_update: w and inc must not overlap in memory"):
        dev.sgd_update(w, w, w.copy(), eps=0.1, mom=0.9, wc=0.0)
    with pytest.raises(ValueError, match="sgd_update: inc must be C-contiguous"):
        dev.sgd_update(w, cp.zeros((6, 4), cp.float32).T, w.copy(), eps=0.1, mom=0.9, wc=0.0)
    with pytest.raises(ValueError, match="sgd_update: grad must be float32 or float64, got int32"):
        dev.sgd_update(w, w.copy(), cp.zeros((4, 6), cp.int32), eps=0.1, mom=0.9, wc=0.0)
