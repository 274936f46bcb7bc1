"""Tests of the CPU thread helpers (pyconvnet.ops._parallel) and of the thread-count independence
of the ops that use them (conv's own test is in test_conv.py)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pyconvnet.ops import _parallel, conv
from pyconvnet.ops._parallel import (OrderedSum, blas_threads, run_blocks, run_tasks,
                                     single_threaded_blas, workers)
from pyconvnet.ops.fc import fc_bwd_data, fc_bwd_filter, fc_fwd
from pyconvnet.ops.local import local_bwd_data, local_bwd_filter, local_fwd


@pytest.fixture
def threads(monkeypatch):
    def set_(n):
        monkeypatch.setenv("PYCONVNET_CPU_THREADS", str(n))
    return set_


@pytest.mark.parametrize("nt", [1, 2, 3])
def test_run_tasks_runs_every_task_once_with_valid_workers(threads, nt):
    threads(nt)
    n = 23
    seen, lock = [], threading.Lock()
    used = set()

    def fn(i, worker):
        assert 0 <= worker < nt
        time.sleep(0.0005 * (i % 3))
        with lock:
            seen.append(i)
            used.add((worker, threading.get_ident()))

    assert workers(n) == nt
    run_tasks(fn, n)
    assert sorted(seen) == list(range(n))
    by_worker = {}
    for worker, ident in used:  # one thread per worker index
        by_worker.setdefault(worker, set()).add(ident)
    assert all(len(v) == 1 for v in by_worker.values())
    assert len(by_worker) <= nt


def test_run_tasks_reraises_and_nested_calls_run_serially(threads):
    threads(2)

    def bad(i, worker):
        if i == 3:
            raise KeyError("task 3")

    with pytest.raises(KeyError, match="task 3"):
        run_tasks(bad, 8)

    inner = []

    def outer(i, worker):
        assert workers(5) == 1  # inside a task: nested work stays on this thread
        run_tasks(lambda j, w: inner.append((i, j, w)), 5)

    run_tasks(outer, 4)
    assert sorted(inner) == [(i, j, 0) for i in range(4) for j in range(5)]
    assert workers(5) == 2


def test_run_blocks_covers_ranges(threads):
    threads(2)
    out = np.zeros(100)

    def fn(lo, hi):
        out[lo:hi] += np.arange(lo, hi)

    run_blocks(fn, _parallel.blocks(100, 7))
    np.testing.assert_array_equal(out, np.arange(100))


def test_num_threads_rejects_garbage(threads):
    threads("two")
    with pytest.raises(ValueError, match="PYCONVNET_CPU_THREADS"):
        _parallel.num_threads()


def test_ordered_sum_adds_in_task_order_whatever_the_finishing_order():
    n = 6
    dst = np.zeros(1)
    total = OrderedSum(n)
    log = []

    def add(i):
        total.add(i, dst, np.array([float(i + 1)]))
        log.append(dst[0])

    for i in (2, 0, 5, 1, 4, 3):  # finishing order
        add(i)
    assert total.done()
    # A partial is added only after those of all lower tasks.
    assert log == [0, 1, 1, 1 + 2 + 3, 6, 21]

    # Float sums that depend on the order come out as the sequential left-to-right sum.
    vals = [1e16, 1.0, -1e16, 1.0, 3.0]
    seq = np.zeros(1)
    for v in vals:
        seq += v
    got = np.zeros(1)
    s = OrderedSum(len(vals))
    for i in (4, 2, 3, 0, 1):
        s.add(i, got, np.array([vals[i]]))
    assert got[0] == seq[0]


def test_ordered_sum_from_threads(threads):
    threads(2)
    n = 40
    rng = np.random.default_rng(0)
    parts = rng.standard_normal((n, 50)).astype(np.float32) * 1e3
    ref = np.zeros(50, np.float32)
    for p in parts:
        ref += p
    got = np.zeros(50, np.float32)
    total = OrderedSum(n)
    run_tasks(lambda i, w: (time.sleep(0.0003 * ((i * 7) % 5)), total.add(i, got, parts[i])), n)
    assert total.done()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.skipif(not blas_threads(), reason="no OpenBLAS loaded")
def test_single_threaded_blas_limits_and_restores():
    before = blas_threads()
    with single_threaded_blas():
        assert blas_threads() == [1] * len(before)
        with single_threaded_blas():
            assert blas_threads() == [1] * len(before)
        assert blas_threads() == [1] * len(before)  # the outer block still holds it
    assert blas_threads() == before
    with pytest.raises(RuntimeError):
        with single_threaded_blas():
            raise RuntimeError
    assert blas_threads() == before


@pytest.mark.skipif(not blas_threads(), reason="no OpenBLAS loaded")
def test_ops_run_their_matmuls_on_one_blas_thread(threads, monkeypatch):
    threads(2)
    before = blas_threads()
    seen = []
    real = np.matmul

    def spy(*a, **kw):
        seen.append(tuple(blas_threads()))
        return real(*a, **kw)

    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((4, 6, 6, 3)), rng.standard_normal((4, 3, 3, 5))
    monkeypatch.setattr(np, "matmul", spy)
    y = conv.conv_fwd(x, w, padding=1)
    conv.conv_bwd_data(y, w, (6, 6), padding=1)
    conv.conv_bwd_filter(y, x, 3, padding=1)
    fc_fwd(x.reshape(-1, 3), rng.standard_normal((144, 2)))
    monkeypatch.undo()
    assert seen and all(s == (1,) * len(before) for s in seen)
    assert blas_threads() == before


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_results_do_not_depend_on_the_thread_count(threads, monkeypatch, dtype):
    rng = np.random.default_rng(4)
    kw = dict(padding=1, stride=2, groups=2)
    C, H, W, N, R, K = 6, 9, 8, 5, 3, 4
    OH, OW = conv.conv_out_size(H, R, 1, 2), conv.conv_out_size(W, R, 1, 2)
    x = rng.standard_normal((C, H, W, N)).astype(dtype)
    w = rng.standard_normal((OH * OW, C // 2, R, R, K)).astype(dtype)
    b = rng.standard_normal((K * OH * OW, 1)).astype(dtype)
    dy = rng.standard_normal((K, OH, OW, N)).astype(dtype)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 2 * C * R * R * N * x.itemsize)  # many chunks

    def run():
        return (local_fwd(x, w, b, **kw), local_bwd_data(dy, w, (H, W), **kw),
                local_bwd_filter(dy, x, R, **kw))

    threads(1)
    ref = run()
    for nt in (2, 3):
        threads(nt)
        for a, r in zip(run(), ref):
            _same(a, r)


def test_fc_results_do_not_depend_on_the_thread_count(threads, monkeypatch):
    from pyconvnet.ops import fc
    rng = np.random.default_rng(5)
    fin, fout, n = 300, 70, 33
    x = rng.standard_normal((fin, n)).astype(np.float32)
    w = rng.standard_normal((fin, fout)).astype(np.float32)
    b = rng.standard_normal((fout, 1)).astype(np.float32)
    dy = rng.standard_normal((fout, n)).astype(np.float32)
    monkeypatch.setattr(fc, "SPLIT_MIN_MACS", 1)
    monkeypatch.setattr(fc, "ROW_BLOCK", 16)  # several blocks of rows, one ragged

    def run():
        return fc_fwd(x, w, b), fc_bwd_data(dy, w), fc_bwd_filter(dy, x)

    threads(1)
    ref = run()
    threads(2)
    for a, r in zip(run(), ref):
        _same(a, r)
    monkeypatch.setattr(fc, "SPLIT_MIN_MACS", 1 << 62)  # one matmul: the same up to rounding
    for a, r in zip(run(), ref):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_and_norm_results_do_not_depend_on_blocks_or_threads(threads, monkeypatch, dtype):
    """pool and the response norms work on blocks (channels, or rows for cmrnorm) on the thread
    pool; any block size and thread count gives the same bits as one block on one thread."""
    from pyconvnet.ops import norm, pool
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 9, 8, 5)).astype(dtype)
    kw = dict(size=3, scale=0.3, pow=0.75, min_div=1.5)

    def run():
        out = []
        for mode in ("max", "avg"):
            y = pool.pool_fwd(x, mode=mode, size=3, stride=2)
            dy = np.linspace(-1, 1, y.size, dtype=dtype).reshape(y.shape)
            out += [y, pool.pool_bwd(dy, x, y, mode=mode, size=3, stride=2)]
        dy = np.linspace(-1, 1, x.size, dtype=dtype).reshape(x.shape)
        for op in ("cmrnorm", "rnorm", "cnorm"):
            y, d = getattr(norm, f"{op}_fwd")(x, **kw)
            out += [y, d, getattr(norm, f"{op}_bwd")(dy, x, y, d, **kw)]
        y, _ = norm.cmrnorm_fwd(x, keep_denom=False, **kw)
        out += [y, norm.cmrnorm_bwd(dy, x, None, None, **kw)]
        return out

    monkeypatch.setattr(pool, "BLOCK_BYTES", 1 << 30)
    monkeypatch.setattr(norm, "BLOCK_BYTES", 1 << 30)
    threads(1)
    ref = run()
    for block_bytes, nt in ((2 * 9 * 8 * 5 * x.itemsize, 2), (1, 3)):  # blocks of 2, then of 1
        monkeypatch.setattr(pool, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(norm, "BLOCK_BYTES", block_bytes)
        threads(nt)
        for a, r in zip(run(), ref):
            _same(a, r)
