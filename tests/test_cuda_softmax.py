"""pyconvnet.cuda.ops.softmax (kernels/softmax.cu) against the NumPy reference pyconvnet.ops.softmax.

Without a GPU: the column kernels on the CPU emulator with every shared-memory cache size (none, part
of the rows, all), the wrappers end to end on the emulator (``host_device``, see test_cuda_elt.py):
softmax forward/backward, logits of +-1e4, NaN and inf columns, logistic-regression cost with ties, NaN
and top-k, every label dtype, invalid labels, the cost gradients and sum-of-squares; plus launch
configurations, kernel signatures and argument checks. On a GPU, through both launch paths: the same
over batch sizes 1, 3, 127, 128, 129, odd class counts, up to 10000 x 1024 (rows beyond the shared-
memory cache), float32 and float64, outputs poisoned with NaN; float32 relative error <= 1e-5.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import softmax as dev
from pyconvnet.ops import softmax as ref

from gpu_util import PATHS, check_close, poisoned, use_path
from test_cuda_elt import KERNELS, HostArray, _at, host, host_device, kernel_signature_letters  # noqa: F401

TOL = {np.float32: 1e-5, np.float64: 1e-12}
H100 = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
KERNEL_NAMES = (dev.FWD, dev.BWD, dev.FWD_PART, dev.FWD_APPLY, dev.BWD_PART, dev.BWD_APPLY, dev.COST, dev.LOGREG_BWD,
                dev.SOFTMAX_LOGREG_BWD, dev.SUM2_COST, dev.SUM2_BWD)
H100_L2 = 50 * 2**20


def _logits(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _probs_with_ties(rng, F, N, dtype):
    """Softmax outputs quantised to a few levels, so labels often tie with other classes."""
    p = np.round(ref.softmax_fwd(_logits(rng, (F, N), np.float64, 1.0)) * 8) / 8
    return p.astype(dtype)


# --- CPU: configuration, signatures, checks ---------------------------------------------------------

def test_kernel_signatures_match_the_wrappers():
    for k in KERNEL_NAMES:
        assert kernel_signature_letters("softmax", k.name) == k.args, k.name


def test_label_kinds_match_the_kernel():
    text = (KERNELS / "softmax.cu").read_text()
    body = text[text.index("int softmax_label("):]
    body = body[:body.index("\n}\n")]
    found = dict(re.findall(r"case (\d): (?:\{\s*const \w+(?: \w+)? l = |v = )static_cast<const ([\w ]+)\*>", body))
    assert found == {"0": "int", "1": "long long", "2": "float"}
    assert "default: v = static_cast<const double*>" in body
    assert dev.LABEL_KINDS == {np.dtype(np.int32): 0, np.dtype(np.int64): 1, np.dtype(np.float32): 2,
                               np.dtype(np.float64): 3}


def test_column_launch_config():
    smem = 232448  # H100's opt-in maximum
    # N = 128 < 4 x 132 SMs: one case per block so 128 SMs work; all 1000 rows cached
    assert dev.column_launch_config(1000, 128, 4, "fwd", H100, smem) == (128, (1, 256), 2048 + 4000, 1000)
    # 10000 x 1024: 8 cases per block (a 32-byte sector per row), 7008 rows cached, the rest re-read
    assert dev.column_launch_config(10000, 1024, 4, "fwd", H100, smem) == (128, (8, 128), smem, 7008)
    assert dev.column_launch_config(10000, 1024, 4, "bwd", H100, smem) == (128, (8, 128), 4096 + 3568 * 64, 3568)
    assert dev.column_launch_config(10000, 1024, 8, "fwd", H100, smem)[3] == (smem - 16384) // 64
    assert dev.column_launch_config(10, 3, 4, "cost", H100, smem) == (3, (1, 4), 32 + 16, 0)
    small = DeviceLimits(sm_count=1, max_block=1024, max_grid_x=2**31 - 1)
    assert dev.column_launch_config(1, 3, 4, "fwd", small, smem) == (2, (2, 1), 16 + 8, 1)
    assert dev.column_launch_config(4096, 5000, 4, "bwd", H100, 4096)[3] == 0  # scratch leaves no room
    for F, N in [(1, 1), (7, 129), (1000, 128), (10000, 1024), (3, 10**6)]:
        for kind in ("fwd", "bwd", "cost"):
            grid, (C, R), shmem, cache = dev.column_launch_config(F, N, 4, kind, H100, smem)
            assert grid * C >= N and (grid - 1) * C < N and C * R <= 1024 and shmem <= smem and 0 <= cache <= F
            assert R & (R - 1) == 0 and C & (C - 1) == 0


def test_split_launch_config():
    # 10000 x 1024 floats: x (41 MB) fits 0.8 of L2, one wave; 32 column tiles x 32 row tiles of 313 rows
    assert dev.split_launch_config(10000, 1024, 4, "fwd", H100, H100_L2) == ((32, 8), 2048, 313, 32, ((0, 1024),))
    # backward reads dy and y (82 MB): two waves of 512 columns
    assert dev.split_launch_config(10000, 1024, 4, "bwd", H100, H100_L2) == (
        (32, 8), 1024, 313, 32, ((0, 512), (512, 512)))
    assert dev.split_launch_config(10000, 1024, 8, "fwd", H100, H100_L2)[4] == ((0, 512), (512, 512))
    # narrow and short arrays: C shrinks to the columns, every tile keeps >= 8 rows per thread
    assert dev.split_launch_config(5000, 3, 4, "fwd", H100, H100_L2) == ((4, 64), 2048, 5000 // 9 + 1, 9, ((0, 3),))
    assert dev.split_launch_config(100, 1, 8, "bwd", H100, H100_L2) == ((1, 256), 2048, 100, 1, ((0, 1),))
    for F, N in [(1, 1), (7, 129), (1000, 128), (10000, 1024), (3, 10**6), (20000, 33), (333, 5000)]:
        for kind in ("fwd", "bwd"):
            for l2 in (H100_L2, 4096):
                (C, R), shmem, rows, S, waves = dev.split_launch_config(F, N, 4, kind, H100, l2)
                assert C * R <= 256 and C & (C - 1) == 0 and 1 <= S <= 32 and S < 65536
                assert (S - 1) * rows < F <= S * rows  # every tile has rows, all rows covered
                assert shmem == (2 if kind == "fwd" else 1) * C * R * 4
                assert waves[0][0] == 0 and sum(w for _, w in waves) == N
                assert all(a + w == b for (a, w), (b, _) in zip(waves, waves[1:]))
                assert all(w % C == 0 for _, w in waves[:-1]) and all(w > 0 for _, w in waves)


def test_softmax_plan():
    smem = 232448
    assert dev.softmax_plan(1000, 128, 4, "fwd", H100, smem, H100_L2) == (
        "column", dev.column_launch_config(1000, 128, 4, "fwd", H100, smem))
    assert dev.softmax_plan(1000, 128, 4, "bwd", H100, smem, H100_L2)[0] == "column"
    assert dev.softmax_plan(10000, 1024, 4, "fwd", H100, smem, H100_L2) == (
        "split", dev.split_launch_config(10000, 1024, 4, "fwd", H100, H100_L2))
    assert dev.softmax_plan(10000, 1024, 4, "bwd", H100, smem, H100_L2)[0] == "split"
    assert dev.softmax_plan(5000, 129, 8, "fwd", H100, smem, H100_L2)[0] == "split"  # 129 blocks: too few
    assert dev.softmax_plan(10, 10**6, 4, "bwd", H100, smem, H100_L2)[0] == "column"  # rows all cached


def test_elementwise_and_sum2_configs():
    assert dev.elementwise_launch_config(1000 * 128, 4, H100) == (125, 256)
    assert dev.elementwise_launch_config(10**9, 8, H100) == (132 * 32, 256)
    assert dev.sum2_launch_config(10**9, 4, H100) == (132 * 4, 256, 2048)
    assert dev.sum2_launch_config(3, 8, H100) == (1, 256, 2048)


def test_argument_checks_without_a_gpu():
    x = np.zeros((3, 4), np.float32)
    lab = np.zeros(4, np.int64)
    for fn, args, name in [(dev.softmax_fwd, (x,), "x"), (dev.softmax_bwd, (x, x), "dy"),
                           (dev.logreg_cost, (x, lab), "probs"), (dev.logreg_bwd, (x, lab), "probs"),
                           (dev.softmax_logreg_bwd, (x, lab), "probs"), (dev.sum2_cost, (x,), "x"),
                           (dev.sum2_bwd, (x,), "x")]:
        with pytest.raises(ValueError, match=f"{fn.__name__}: {name} must be a CuPy array .* got numpy.ndarray"):
            fn(*args)


def _same_error(call_dev, call_ref):
    with pytest.raises(ValueError) as got:
        call_dev()
    with pytest.raises(ValueError) as want:
        call_ref()
    assert str(got.value) == str(want.value)


def test_host_argument_checks_match_the_reference(host_device):
    p = np.full((3, 4), 0.25, np.float32)
    cases = [
        (dev.softmax_fwd, ref.softmax_fwd, (np.zeros((0, 4), np.float32),), {}),
        (dev.softmax_fwd, ref.softmax_fwd, (np.zeros((2, 3, 4), np.float32),), {}),
        (dev.softmax_bwd, ref.softmax_bwd, (p, p[:2].copy()), {}),
        (dev.softmax_bwd, ref.softmax_bwd, (p, p.astype(np.float64)), {}),
        (dev.logreg_cost, ref.logreg_cost, (p, np.zeros(3, np.int64)), {}),
        (dev.logreg_cost, ref.logreg_cost, (p, np.zeros(4, np.bool_)), {}),
        (dev.logreg_cost, ref.logreg_cost, (p, np.zeros(4, np.int64)), dict(topk=4)),
        (dev.logreg_cost, ref.logreg_cost, (p, np.zeros(4, np.int64)), dict(topk=0)),
        (dev.logreg_bwd, ref.logreg_bwd, (p, np.zeros(4, np.int64)), dict(coeff=float("inf"))),
        (dev.softmax_logreg_bwd, ref.softmax_logreg_bwd, (p, np.zeros((4, 1), np.int64)), {}),
        (dev.sum2_bwd, ref.sum2_bwd, (p,), dict(coeff="1")),
    ]
    for fd, fr, args, kw in cases:
        _same_error(lambda: fd(*[host(a) for a in args], **kw), lambda: fr(*args, **kw))
    assert not host_device  # nothing launched
    for labels in (np.array([0, 1, 3, 2]), np.array([0, -1, 2, 2]), np.array([0, 1.5, 2, 2]),
                   np.array([0, np.nan, 2, 2], np.float32)):  # values: checked by logreg_cost only
        _same_error(lambda: dev.logreg_cost(host(p), host(labels)), lambda: ref.logreg_cost(p, labels))


# --- CPU: the kernels on the emulator ---------------------------------------------------------------

def _host_launch(name, dtype, grid, block, args, sig, shmem, schedule):
    """Launch ``name<T>`` of kernels/softmax.cu on the emulator (``f`` in ``sig`` stands for T)."""
    import cuda_host
    f32 = dtype == np.float32
    cuda_host.HostModule(KERNELS / "softmax.cu").launch(f"{name}<{'float' if f32 else 'double'}>", grid, block, args,
                                                        sig.replace("f", "f" if f32 else "d"), shmem=shmem,
                                                        schedule=schedule)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_column_kernels_every_cache_size(dtype):
    pytest.importorskip("cuda_host")
    rng = np.random.default_rng(0)
    isz = np.dtype(dtype).itemsize
    for F, N, C, R in [(13, 11, 4, 4), (9, 3, 8, 2), (1, 5, 2, 1), (30, 17, 8, 8), (70, 5, 4, 2), (150, 9, 8, 4)]:
        x = _logits(rng, (F, N), dtype)
        dy = rng.standard_normal((F, N)).astype(dtype)
        y_ref = ref.softmax_fwd(x)
        dx_ref = ref.softmax_bwd(dy, y_ref)
        grid = -(-N // C)
        for cache, schedule in zip(sorted({0, F // 2, F}), ("reverse", "random", "forward")):
            what = f"{F}x{N} C={C} R={R} cache={cache} {schedule}"
            y = np.full((F, N), np.nan, dtype)
            _host_launch("softmax_fwd", dtype, grid, (C, R, 1), [x, y, F, N, cache], "ppiii",
                         (2 * C * R + cache * C) * isz, schedule)
            check_close(y, y_ref, TOL[dtype], f"fwd {what}")
            dx = np.full((F, N), np.nan, dtype)
            _host_launch("softmax_bwd", dtype, grid, (C, R, 1), [dy, y_ref, dx, F, N, cache], "pppiii",
                         (C * R + 2 * cache * C) * isz, schedule)
            check_close(dx, dx_ref, TOL[dtype], f"bwd {what}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_split_kernels(dtype):
    pytest.importorskip("cuda_host")
    rng = np.random.default_rng(5)
    isz = np.dtype(dtype).itemsize
    # (F, N, C, R, rows, waves): partial last tiles in rows and columns, S > R (each thread merges
    # several statistics), a tile row count below R, one column, waves that start mid-array
    for F, N, C, R, rows, waves in [(150, 37, 8, 4, 23, ((0, 37),)), (33, 5, 8, 2, 4, ((0, 5),)),
                                    (9, 1, 1, 16, 3, ((0, 1),)), (64, 20, 4, 8, 64, ((0, 8), (8, 8), (16, 4))),
                                    (70, 3, 4, 2, 7, ((0, 3),))]:
        S = -(-F // rows)
        x = _logits(rng, (F, N), dtype)
        x[:, 0] *= 3000  # logits of +-1e4
        dy = rng.standard_normal((F, N)).astype(dtype)
        y_ref = ref.softmax_fwd(x)
        dx_ref = ref.softmax_bwd(dy, y_ref)
        y = np.full((F, N), np.nan, dtype)
        dx = np.full((F, N), np.nan, dtype)
        for schedule in ("forward", "reverse", "random"):
            what = f"{F}x{N} C={C} R={R} rows={rows} waves={waves} {schedule}"
            part = np.full((2 * S, N), np.nan, dtype)
            y[:] = np.nan
            dx[:] = np.nan
            for col0, ncols in waves:
                grid = (-(-ncols // C), S, 1)
                args = [F, N, col0, ncols, rows]
                _host_launch("softmax_fwd_part", dtype, grid, (C, R, 1), [x, part] + args, "ppiiiii",
                             2 * C * R * isz, schedule)
                _host_launch("softmax_fwd_apply", dtype, grid, (C, R, 1), [x, y, part] + args, "pppiiiii",
                             2 * C * R * isz, schedule)
                _host_launch("softmax_bwd_part", dtype, grid, (C, R, 1), [dy, y_ref, part[:S]] + args, "pppiiiii",
                             C * R * isz, schedule)
                _host_launch("softmax_bwd_apply", dtype, grid, (C, R, 1), [dy, y_ref, dx, part[:S]] + args,
                             "ppppiiiii", C * R * isz, schedule)
            check_close(y, y_ref, TOL[dtype], f"fwd {what}")
            check_close(dx, dx_ref, TOL[dtype], f"bwd {what}")


# --- CPU: the wrappers end to end on the emulator ---------------------------------------------------

@pytest.fixture(params=["column", "split"])
def softmax_device(request, host_device, monkeypatch):
    """host_device with a 64 KiB L2 and its plans forgotten; "split" forces the split kernels."""
    monkeypatch.setattr(dev, "_L2", {0: 64 << 10})
    monkeypatch.setattr(dev, "_PLANS", {})
    monkeypatch.setattr(dev, "_COLUMN_CONFIGS", {})
    if request.param == "split":
        monkeypatch.setattr(dev, "SMALL_BYTES", -1)
        monkeypatch.setattr(dev, "COLUMN_GRID_PER_SM", 10**9)
    return host_device

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_softmax(softmax_device, dtype):
    rng = np.random.default_rng(1)
    for F, N in [(1, 1), (10, 3), (7, 33), (40, 20), (200, 2), (600, 5)]:
        x = _logits(rng, (F, N), dtype)
        y_ref = ref.softmax_fwd(x)
        y = dev.softmax_fwd(host(x), out=host(np.full((F, N), np.nan, dtype)))
        check_close(y.get(), y_ref, TOL[dtype], f"fwd {F}x{N}")
        dy = rng.standard_normal((F, N)).astype(dtype)
        check_close(dev.softmax_bwd(host(dy), host(y_ref)).get(), ref.softmax_bwd(dy, y_ref), TOL[dtype],
                    f"bwd {F}x{N}")
        hx = host(x)
        assert dev.softmax_fwd(hx, out=hx) is hx  # in place
        check_close(hx.get(), y_ref, TOL[dtype], f"in place {F}x{N}")
    x = np.array([[1e4, -1e4, -1e4, 1e4], [-1e4, -1e4, 1e4, 1e4], [0, -1e4, -1e4, -1e4]], dtype)
    np.testing.assert_allclose(dev.softmax_fwd(host(x)).get(), ref.softmax_fwd(x), rtol=1e-6, atol=0)
    x = _logits(rng, (5, 4), dtype)
    x[1, 0], x[2, 1], x[:, 2], x[3, 3] = np.nan, np.inf, -np.inf, -np.inf  # NaN and inf columns; -inf alone
    with np.errstate(invalid="ignore"):
        want = ref.softmax_fwd(x)
    got = dev.softmax_fwd(host(x)).get()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    check_close(got[:, 3], want[:, 3], TOL[dtype], "a -inf logit")
    names = {c[0].split("<")[0] for c in softmax_device}
    split = dev.SMALL_BYTES < 0
    assert ({"softmax_fwd_part", "softmax_fwd_apply", "softmax_bwd_part", "softmax_bwd_apply"} <= names) == split
    assert ("softmax_fwd" in names) != split, names


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_logreg_cost(host_device, dtype):
    host_device.schedule = "random"  # the block's reductions must not depend on the thread order
    rng = np.random.default_rng(2)
    probs = np.array([[0.5, 0.1, 0.3, 0.4], [0.3, 0.2, 0.3, 0.4], [0.2, 0.7, 0.4, 0.2]], dtype)
    labels = np.array([0, 1, 0, 1])
    rel = 1e-6 if dtype == np.float32 else 1e-12  # logs in float32: the device's and NumPy's may differ by an ulp
    for topk in (1, 2, 3):
        got = dev.logreg_cost(host(probs), host(labels), topk=topk)
        want = ref.logreg_cost(probs, labels, topk=topk)
        assert isinstance(got[0], float) and isinstance(got[1], int) and isinstance(got[2], int)
        assert got[1:] == want[1:] and got[0] == pytest.approx(want[0], rel=rel)
    p = np.array([[0.0, np.nan], [1.0, 0.5]], dtype)  # a zero label probability and a NaN competitor
    got, want = dev.logreg_cost(host(p), host(np.array([0, 1])), topk=2), ref.logreg_cost(p, np.array([0, 1]), topk=2)
    assert got[1:] == want[1:] and got[0] == pytest.approx(want[0], rel=rel) and math.isfinite(got[0])
    for F, N, topk in [(10, 3, 1), (7, 33, 3), (40, 20, 5), (1, 4, 1)]:
        probs = _probs_with_ties(rng, F, N, dtype)
        lab = rng.integers(0, F, N)
        want = ref.logreg_cost(probs, lab, topk=topk)
        for dt in (np.int64, np.int32, np.float32, np.float64, np.uint8, np.int16):
            got = dev.logreg_cost(host(probs), host(lab.astype(dt)), topk=topk)
            assert got[1:] == want[1:], (F, N, topk, dt)
            assert got[0] == pytest.approx(want[0], rel=rel)
    assert dev.logreg_cost(host(np.zeros((3, 0), dtype)), host(np.zeros(0, np.int64))) == (0.0, 0, 0)
    # device=True: the same numbers left on the device, plus the invalid-label count (no raise)
    probs = _probs_with_ties(rng, 7, 33, dtype)
    lab = rng.integers(0, 7, 33)
    row = np.asarray(dev.logreg_cost(host(probs), host(lab), topk=3, device=True))
    assert row.dtype == np.float64 and row.shape == (4,)
    assert tuple(row[:3]) == (lambda c: (c[0], float(c[1]), float(c[2])))(dev.logreg_cost(host(probs), host(lab), topk=3))
    assert row[3] == 0
    bad = lab.copy()
    bad[[2, 5]] = 7
    assert np.asarray(dev.logreg_cost(host(probs), host(bad), topk=3, device=True))[3] == 2
    x = rng.standard_normal((5, 7)).astype(dtype)
    assert float(np.asarray(dev.sum2_cost(host(x), device=True))[0]) == dev.sum2_cost(host(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_cost_gradients(host_device, dtype):
    rng = np.random.default_rng(3)
    for F, N in [(10, 3), (7, 32), (5, 129), (1, 1), (3, 8)]:
        probs = ref.softmax_fwd(_logits(rng, (F, N), dtype))
        probs[0, 0] = 0.0  # clipped at tiny
        lab = rng.integers(0, F, N)
        lab[0] = 0
        for coeff in (1.0, 0.5):
            for offset in (0, 1):  # packs (N % 4 == 0) and single elements
                got = dev.logreg_bwd(_at(probs, offset), host(lab), coeff=coeff,
                                     out=_at(np.full((F, N), np.nan, dtype), offset))
                np.testing.assert_array_equal(got.get(), ref.logreg_bwd(probs, lab, coeff=coeff))
                got = dev.softmax_logreg_bwd(_at(probs, offset), host(lab.astype(np.float32)), coeff=coeff)
                np.testing.assert_array_equal(got.get(), ref.softmax_logreg_bwd(probs, lab, coeff=coeff))
    bad = np.array([0, 7, 1, -1, 2, 1])  # invalid labels give NaN columns, the others are right
    probs = ref.softmax_fwd(_logits(rng, (3, 6), dtype))
    for fd, fr in [(dev.logreg_bwd, ref.logreg_bwd), (dev.softmax_logreg_bwd, ref.softmax_logreg_bwd)]:
        got = fd(host(probs), host(bad)).get()
        assert np.isnan(got[:, [1, 3]]).all()
        good = [0, 2, 4, 5]
        np.testing.assert_array_equal(got[:, good], fr(np.ascontiguousarray(probs[:, good]), bad[good]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_sum2(host_device, dtype):
    host_device.schedule = "reverse"
    rng = np.random.default_rng(4)
    for shape in [(1,), (7, 3), (3, 5, 5, 9), (2000,)]:
        x = rng.standard_normal(shape).astype(dtype)
        for offset in (0, 1):
            got = dev.sum2_cost(_at(x, offset))
            assert isinstance(got, float) and got == pytest.approx(ref.sum2_cost(x), rel=1e-13)
            np.testing.assert_array_equal(dev.sum2_bwd(_at(x, offset), coeff=0.3).get(), ref.sum2_bwd(x, coeff=0.3))
    assert dev.sum2_cost(host(np.zeros((0, 3), dtype))) == 0.0


# --- on the GPU --------------------------------------------------------------------------------------

GPU_SHAPES = [(F, n) for F in (1, 10, 1000) for n in (1, 3, 127, 128, 129)] + [(7, 500)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", PATHS)
def test_softmax_matches_reference(path, dtype, monkeypatch):
    import cupy as cp

    rng = np.random.default_rng(0)
    # the column kernel (GPU_SHAPES), the split kernels (10000 x 1024 / 5000 x 129: rows beyond the cache;
    # backward in two waves), and the split kernels forced onto small shapes with many waves (L2 "64 KiB")
    shapes = GPU_SHAPES + ([(10000, 1024), (3001, 1000)] if dtype == np.float32 else [(5000, 129)])
    forced = [(1, 1), (3, 3), (1000, 127), (1000, 129), (4097, 33)]
    with use_path(path):
        for force, shape in [(False, s) for s in shapes] + [(True, s) for s in forced]:
            if force:
                monkeypatch.setattr(dev, "SMALL_BYTES", -1)
                monkeypatch.setattr(dev, "COLUMN_GRID_PER_SM", 10**9)
                monkeypatch.setattr(dev, "_L2", {cp.cuda.runtime.getDevice(): 64 << 10})
            monkeypatch.setattr(dev, "_PLANS", {})
            what = f"{path} {shape} {dev.softmax_plan(*shape, np.dtype(dtype).itemsize, 'bwd')[0]}"
            x = _logits(rng, shape, dtype)
            x[:, ::7] *= 3000  # logits of +-1e4
            y_ref = ref.softmax_fwd(x)
            y = dev.softmax_fwd(cp.asarray(x), out=poisoned(shape, dtype))
            check_close(y.get(), y_ref, TOL[dtype], f"fwd {what}")
            dy = rng.standard_normal(shape).astype(dtype)
            dx = dev.softmax_bwd(cp.asarray(dy), cp.asarray(y_ref), out=poisoned(shape, dtype))
            check_close(dx.get(), ref.softmax_bwd(dy, y_ref), TOL[dtype], f"bwd {what}")
            gx = cp.asarray(x)
            assert dev.softmax_fwd(gx, out=gx) is gx  # in place
            check_close(gx.get(), y_ref, TOL[dtype], f"fwd in place {what}")
    monkeypatch.undo()
    with use_path(path):
        x = np.array([[1e4, -1e4, -1e4, 1e4], [-1e4, -1e4, 1e4, 1e4], [0, -1e4, -1e4, -1e4]], dtype)
        y = dev.softmax_fwd(cp.asarray(x)).get()
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, ref.softmax_fwd(x), rtol=1e-6, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", PATHS)
def test_costs_match_reference(path, dtype):
    import cupy as cp

    rng = np.random.default_rng(1)
    with use_path(path):
        for i, (F, N) in enumerate(GPU_SHAPES):
            probs = _probs_with_ties(rng, F, N, dtype)
            lab = rng.integers(0, F, N)
            gp = cp.asarray(probs)
            for topk in sorted({1, min(5, F)}):
                want = ref.logreg_cost(probs, lab, topk=topk)
                got = dev.logreg_cost(gp, cp.asarray(lab.astype((np.int64, np.int32, np.float32)[i % 3])), topk=topk)
                assert got[1:] == want[1:], f"{path} {F}x{N} top-{topk}: {got} vs {want}"
                assert got[0] == pytest.approx(want[0], rel=1e-6 if dtype == np.float32 else 1e-12)
            for coeff in (1.0, 0.25):
                got = dev.logreg_bwd(gp, cp.asarray(lab), coeff=coeff, out=poisoned((F, N), dtype))
                np.testing.assert_array_equal(got.get(), ref.logreg_bwd(probs, lab, coeff=coeff))
                got = dev.softmax_logreg_bwd(gp, cp.asarray(lab), coeff=coeff, out=poisoned((F, N), dtype))
                np.testing.assert_array_equal(got.get(), ref.softmax_logreg_bwd(probs, lab, coeff=coeff))
            assert dev.sum2_cost(gp) == pytest.approx(ref.sum2_cost(probs), rel=1e-12)
            got = dev.sum2_bwd(gp, coeff=0.5, out=poisoned((F, N), dtype))
            np.testing.assert_array_equal(got.get(), ref.sum2_bwd(probs, coeff=0.5))
        big = rng.standard_normal(2**22 + 3).astype(dtype)
        assert dev.sum2_cost(cp.asarray(big)) == pytest.approx(ref.sum2_cost(big), rel=1e-12)


@pytest.mark.gpu
def test_softmax_argument_checks_on_the_gpu():
    import cupy as cp

    p = cp.full((3, 4), 0.25, cp.float32)
    with pytest.raises(ValueError, match=r"logreg_cost: labels must be in \[0, 3\), got values in \[0, 3\]"):
        dev.logreg_cost(p, cp.asarray([0, 1, 3, 2]))
    with pytest.raises(ValueError, match="logreg_cost: float labels must hold integral values"):
        dev.logreg_cost(p, cp.asarray([0, 1, 0.5, 2]))
    with pytest.raises(ValueError, match="logreg_bwd: labels must be a CuPy array"):
        dev.logreg_bwd(p, np.zeros(4, np.int64))
    assert np.isnan(dev.logreg_bwd(p, cp.asarray([0, 5, 1, 2])).get()[:, 1]).all()
    with pytest.raises(ValueError, match="softmax_fwd: x must be C-contiguous"):
        dev.softmax_fwd(p.T)
    with pytest.raises(ValueError, match="softmax_bwd: inputs must share one dtype"):
        dev.softmax_bwd(p, p.astype(cp.float64))
    with pytest.raises(ValueError, match=r"sum2_bwd: out must have shape \(3, 4\)"):
        dev.sum2_bwd(p, out=cp.zeros((4, 3), cp.float32))
