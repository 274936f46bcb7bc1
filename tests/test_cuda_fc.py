"""pyconvnet.cuda.ops.fc (cuBLAS through CuPy) against the NumPy reference pyconvnet.ops.fc."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet.cuda.ops import fc as dev
from pyconvnet.ops import fc as ref

from gpu_util import BATCHES, check_close, poisoned


def test_argument_checks_without_a_gpu():
    x, w = np.zeros((3, 4), np.float32), np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="fc_fwd: x must be a CuPy array"):
        dev.fc_fwd(x, w)
    with pytest.raises(ValueError, match="fc_bwd_filter: dy must be a CuPy array"):
        dev.fc_bwd_filter(np.zeros((5, 4), np.float32), x)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fin,fout", [(1, 1), (7, 5), (4096, 1000), (37, 129)])
def test_fc_matches_reference(fin, fout, dtype):
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
