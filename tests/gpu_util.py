"""Helpers shared by the GPU tests (tests/test_cuda_*.py): launch-path selection, NaN poisoning and
the comparison with the NumPy reference.

    @pytest.mark.gpu
    @pytest.mark.parametrize("path", PATHS)
    def test_x(path):
        with use_path(path):
            out = poisoned(shape, np.float32)          # NaN-filled CuPy array for the kernel to fill
            ...
            check_close(out.get(), want, 1e-5, f"{path} fwd {shape}")
"""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from pyconvnet.cuda import extension_status, use_launch_path

PATHS = ["extension", "rawmodule"]
BATCHES = (1, 3, 127, 128, 129)  # DESIGN.md's batch sizes


def use_path(path):
    """Context manager forcing launch path ``path``; skips the test when the extension is absent."""
    if path == "extension" and extension_status()[0] is None:
        pytest.skip(f"pyconvnet._cuda not importable: {extension_status()[1]}")
    return use_launch_path(path)


def poisoned(shape, dtype=np.float32):
    """A CuPy array of ``shape`` filled with NaN: an element a kernel forgets to write fails the test."""
    import cupy as cp
    return cp.full(shape, cp.nan, dtype)


def check_close(out, want, tol, what):
    """``||out - want|| / ||want|| <= tol``, same shape and dtype, and no NaN left in ``out``.

    ``out`` and ``want`` are NumPy arrays (call ``.get()`` on CuPy results first).
    """
    out, want = np.asarray(out), np.asarray(want)
    assert out.shape == want.shape, f"{what}: shape {out.shape}, want {want.shape}"
    assert out.dtype == want.dtype, f"{what}: dtype {out.dtype}, want {want.dtype}"
    assert not (np.isnan(out) & ~np.isnan(want)).any(), f"{what}: NaN in the output (an element not written?)"
    o, w = out.astype(np.float64), want.astype(np.float64)
    finite = np.isfinite(w)
    np.testing.assert_array_equal(np.isfinite(o), finite, err_msg=f"{what}: non-finite pattern differs")
    err = np.linalg.norm(o[finite] - w[finite]) / max(np.linalg.norm(w[finite]), 1e-30)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"


# --- stand-ins for CuPy, for the wrappers' CPU tests ---------------------------------------------

class FakeDeviceArray:
    """Just enough of a CuPy array for the wrappers; its pointer is never dereferenced."""
    __module__ = "cupy._fake"

    def __init__(self, shape, dtype=np.float32, ptr=0x1000, c_contiguous=True):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.size, self.itemsize = int(np.prod(shape)), self.dtype.itemsize
        self.nbytes = self.size * self.itemsize
        self.flags, self.strides = SimpleNamespace(c_contiguous=c_contiguous), ()
        self.data = SimpleNamespace(ptr=ptr)


def install_fake_cupy(monkeypatch, **functions):
    """Make ``import cupy`` give a stand-in with one 132-SM device, stream 0 and ``functions``
    (e.g. ``empty=...``), and empty the launch caches; returns the stand-in."""
    from pyconvnet.cuda import launch

    rt = SimpleNamespace(cudaDevAttrMultiProcessorCount=16, cudaDevAttrMaxThreadsPerBlock=1,
                         cudaDevAttrMaxGridDimX=5, getDevice=lambda: 0,
                         deviceGetAttribute=lambda attr, dev: {16: 132, 1: 1024, 5: 2**31 - 1}[attr])
    fake = SimpleNamespace(cuda=SimpleNamespace(runtime=rt, get_current_stream=lambda: SimpleNamespace(ptr=0)),
                           **functions)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(launch, "_functions", {})
    monkeypatch.setattr(launch, "_limits", {})
    return fake
