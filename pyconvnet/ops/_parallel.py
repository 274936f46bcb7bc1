"""Split an op's independent work over a few threads.

NumPy releases the GIL inside its ufunc, copy and matmul loops, so the reference ops run about
twice as fast on two cores when their work is cut into tasks that write disjoint parts of the
output (pooling, spatial normalisation) or into chunks that each copy their im2col windows and run
their own single-threaded matmul (convolution, local, fully connected). Results do not depend on
the number of threads: how the work is cut never depends on it, each task computes exactly what it
would on one thread, and sums over tasks are added in task order.

``PYCONVNET_CPU_THREADS`` sets the thread count (default: the CPUs this process may use; 1 turns
the threads off).

BLAS threads: inside `single_threaded_blas` (the conv, local and fc ops run their matmuls there)
OpenBLAS is held to one thread, because our own threads already keep the cores busy. Letting
OpenBLAS thread as well made a training step bimodal: after each threaded call its worker threads
spin (sched_yield) for a while and then compete with our threads and NumPy's work for the cores,
which halved the speed of whole stretches of steps. With every matmul of a step single-threaded
those workers never wake. Outside the block the BLAS thread count is what it was.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .._libs import mapped_libraries

_executor: list = []  # [ThreadPoolExecutor, its thread count], created on first use
_local = threading.local()  # .in_task: this thread is running a task (nested calls run serially)


def num_threads() -> int:
    env = os.environ.get("PYCONVNET_CPU_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"PYCONVNET_CPU_THREADS must be a whole number, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def workers(n: int) -> int:
    """How many threads `run_tasks` uses for ``n`` tasks (the ``worker`` indices it passes)."""
    if getattr(_local, "in_task", False):
        return 1
    return max(1, min(num_threads(), n))


def blocks(n: int, per: int):
    """[lo, hi) ranges of at most ``per`` items covering range(n)."""
    per = max(1, per)
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


def byte_blocks(n: int, item_bytes: int, block_bytes: int):
    """`blocks` of about ``block_bytes`` each over n items of ``item_bytes`` each (at least one item
    per block; items of 0 bytes, as in an empty batch, all go in one block)."""
    return blocks(n, block_bytes // max(item_bytes, 1))


def per_worker(n: int, make):
    """Per-thread scratch for ``run_tasks(fn, n)``: the returned ``get(worker)`` gives each worker
    its own ``make()`` result, made on its first use."""
    made = [None] * workers(n)

    def get(worker):
        if made[worker] is None:
            made[worker] = make()
        return made[worker]
    return get


def run_tasks(fn, n: int) -> None:
    """Call ``fn(i, worker)`` for i in range(n) on ``workers(n)`` threads (the calling thread is
    one of them). Tasks are handed out in increasing order of i, each to the next free thread;
    ``worker`` in range(workers(n)) names the thread, so that per-thread scratch space indexed by it
    is never shared. The calls must write disjoint data. Re-raises the first exception (the tasks
    not yet started are skipped)."""
    nw = workers(n)
    if nw == 1:
        for i in range(n):
            fn(i, 0)
        return
    if not _executor or _executor[1] < nw - 1:
        if _executor:
            _executor[0].shutdown(wait=False)
        _executor[:] = [ThreadPoolExecutor(max_workers=nw - 1, thread_name_prefix="pyconvnet-cpu"),
                        nw - 1]
    lock = threading.Lock()
    todo = iter(range(n))
    failed: list = []

    def work(worker):
        _local.in_task = True
        try:
            while not failed:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                try:
                    fn(i, worker)
                except BaseException as e:
                    failed.append(e)
                    raise
        finally:
            _local.in_task = False

    futures = [_executor[0].submit(work, w) for w in range(1, nw)]
    try:
        work(0)
    except BaseException:
        pass  # re-raised below, after the other threads have stopped
    for f in futures:
        f.exception()
    if failed:
        raise failed[0]


def run_blocks(fn, ranges) -> None:
    """Call ``fn(lo, hi)`` for every range, on up to ``num_threads()`` threads; re-raises the
    first exception. The calls must write disjoint data."""
    ranges = list(ranges)
    run_tasks(lambda i, _: fn(*ranges[i]), len(ranges))


class OrderedSum:
    """Adds partial results into their destinations in task order, whichever thread finishes
    first, so that a sum over tasks does not depend on the thread count: ``add(i, dst, part)`` is
    called once for every i in range(n) (from any thread) and performs ``dst += part`` after the
    additions of all lower i (``dst`` None: nothing to add, the task wrote its result itself).
    Partials wait only until their turn comes."""

    def __init__(self, n: int):
        self._n, self._next, self._busy = n, 0, False
        self._pending: dict = {}
        self._lock = threading.Lock()

    def add(self, i, dst, part) -> None:
        with self._lock:
            self._pending[i] = (dst, part)
        while True:
            with self._lock:
                if self._busy or self._next not in self._pending:
                    return
                self._busy = True
                dst, part = self._pending.pop(self._next)
            try:
                if dst is not None:
                    dst += part
            finally:
                with self._lock:
                    self._next += 1
                    self._busy = False

    def done(self) -> bool:
        """True when every partial has been added."""
        return self._next == self._n and not self._pending


# --- BLAS threads -----------------------------------------------------------------------------

_blas_lock = threading.Lock()
_blas_state = {"api": None, "depth": 0, "saved": []}


def _loaded_openblas():
    """Paths of the OpenBLAS libraries mapped into this process (Linux; empty elsewhere)."""
    return mapped_libraries(lambda p: "openblas" in os.path.basename(p).lower() and ".so" in p)


def _openblas_api():
    """[(get_num_threads, set_num_threads)] of each loaded threaded OpenBLAS, found once."""
    if _blas_state["api"] is None:
        api = []
        for path in _loaded_openblas():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("openblas", "scipy_openblas"):
                for suffix in ("", "64_", "_64_"):
                    try:
                        get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                        set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                    except AttributeError:
                        continue
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    api.append((get, set_))
                    break
                else:
                    continue
                break
        _blas_state["api"] = api
    return _blas_state["api"]


def blas_threads() -> list:
    """The thread count of each loaded OpenBLAS (empty when none is found)."""
    return [get() for get, _ in _openblas_api()]


@contextlib.contextmanager
def single_threaded_blas():
    """Hold OpenBLAS to one thread inside the block (for every thread of the process; nested and
    concurrent blocks are counted, and the last one out restores the previous counts). A no-op
    when no OpenBLAS is loaded (another BLAS keeps its own threads)."""
    api = _openblas_api()
    if not api:
        yield
        return
    state = _blas_state
    with _blas_lock:
        if state["depth"] == 0:
            state["saved"] = [get() for get, _ in api]
            for _, set_ in api:
                set_(1)
        state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            state["depth"] -= 1
            if state["depth"] == 0:
                for (_, set_), n in zip(api, state["saved"]):
                    if n > 1:
                        set_(n)
