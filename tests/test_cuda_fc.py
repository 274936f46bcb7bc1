"""pyconvnet.cuda.ops.fc (cuBLAS through pyconvnet.cuda.blas, or 1x1 convolutions inside without_cublas)
against the NumPy reference pyconvnet.ops.fc."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from pyconvnet.cuda.graph import without_cublas
from pyconvnet.cuda.ops import conv as devconv
from pyconvnet.cuda.ops import fc as dev
from pyconvnet.ops import conv as refconv
from pyconvnet.ops import fc as ref

from gpu_util import BATCHES, check_close, poisoned


def test_argument_checks_without_a_gpu():
    x, w = np.zeros((3, 4), np.float32), np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="fc_fwd: x must be a CuPy array"):
        dev.fc_fwd(x, w)
    with pytest.raises(ValueError, match="fc_bwd_filter: dy must be a CuPy array"):
        dev.fc_bwd_filter(np.zeros((5, 4), np.float32), x)


class _Dev(np.ndarray):
    pass


_Dev.__module__ = "cupy._emulated"


def test_fc_as_1x1_conv_mapping(monkeypatch):
    """Inside without_cublas the fc ops are the reference convolutions of (F, 1, 1, N) images."""
    calls = []

    def via_ref(name):
        def run(*a, out=None, **kw):
            calls.append(name)
            r = getattr(refconv, name)(*(np.asarray(v) if isinstance(v, np.ndarray) else v for v in a), **kw)
            if out is not None:
                np.asarray(out)[...] = r
                return out
            return r.view(_Dev)
        return run
    for name in ("conv_fwd", "conv_bwd_data", "conv_bwd_filter"):
        monkeypatch.setattr(devconv, name, via_ref(name))
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((7, 3)), rng.standard_normal((7, 5))
    b, dy = rng.standard_normal((5, 1)), rng.standard_normal((5, 3))
    d = [a.view(_Dev) for a in (x, w, b, dy)]
    with without_cublas():
        np.testing.assert_allclose(dev.fc_fwd(d[0], d[1], d[2]), ref.fc_fwd(x, w, b), rtol=1e-12)
        out = np.full((7, 3), np.nan).view(_Dev)
        assert dev.fc_bwd_data(d[3], d[1], out=out) is out
        np.testing.assert_allclose(out, ref.fc_bwd_data(dy, w), rtol=1e-12)
        np.testing.assert_allclose(dev.fc_bwd_filter(d[3], d[0]), ref.fc_bwd_filter(dy, x), rtol=1e-12)
    assert calls == ["conv_fwd", "conv_bwd_data", "conv_bwd_filter"]


@pytest.mark.gpu
@pytest.mark.parametrize("gemm", ["cublas", "cupy", "kernels"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fin,fout", [(1, 1), (7, 5), (4096, 1000), (37, 129)])
def test_fc_matches_reference(fin, fout, dtype, gemm, monkeypatch):
    """cublas: pyconvnet's own cuBLAS calls; cupy: CuPy's matmul, where those are unavailable;
    kernels: 1x1 convolutions (inside without_cublas)."""
    from pyconvnet.cuda import blas

    if gemm == "cupy":
        monkeypatch.setattr(blas, "available", lambda: False)
    with without_cublas() if gemm == "kernels" else contextlib.nullcontext():
        _fc_matches_reference(fin, fout, dtype)


def _fc_matches_reference(fin, fout, dtype):
    import cupy as cp

    rng = np.random.default_rng(fin * 1000 + fout)
    for n in BATCHES:
        x, w = rng.standard_normal((fin, n)).astype(dtype), rng.standard_normal((fin, fout)).astype(dtype)
        b, dy = rng.standard_normal((fout, 1)).astype(dtype), rng.standard_normal((fout, n)).astype(dtype)
        gx, gw, gb, gdy = (cp.asarray(a) for a in (x, w, b, dy))
        what = f"{fin}->{fout} N={n} {np.dtype(dtype)}"
        out = poisoned((fout, n), dtype)
        assert dev.fc_fwd(gx, gw, gb, out=out) is out
        check_close(out.get(), ref.fc_fwd(x, w, b), 1e-4, f"fwd {what}")
        check_close(dev.fc_fwd(gx, gw).get(), ref.fc_fwd(x, w), 1e-4, f"fwd no bias {what}")
        out = poisoned((fin, n), dtype)
        check_close(dev.fc_bwd_data(gdy, gw, out=out).get(), ref.fc_bwd_data(dy, w), 1e-4, f"bwd-data {what}")
        out = poisoned((fin, fout), dtype)
        check_close(dev.fc_bwd_filter(gdy, gx, out=out).get(), ref.fc_bwd_filter(dy, x), 1e-4,
                    f"bwd-filter {what}")


@pytest.mark.gpu
def test_fc_argument_checks_on_the_gpu():
    import cupy as cp

    x, w = cp.zeros((3, 4), cp.float32), cp.zeros((3, 5), cp.float32)
    with pytest.raises(ValueError, match=r"fc_fwd: x \(2, 4\) has 2 features but w \(3, 5\) expects 3"):
        dev.fc_fwd(x[:2].copy(), w)
    with pytest.raises(ValueError, match="fc_fwd: inputs must share one dtype"):
        dev.fc_fwd(x, w.astype(cp.float64))
    with pytest.raises(ValueError, match=r"fc_fwd: out must have shape \(5, 4\)"):
        dev.fc_fwd(x, w, out=cp.zeros((4, 5), cp.float32))
