"""GPU benchmark harness: CUDA-event timing, the device's ceilings and the PyTorch comparison.

Each ``benchmarks/bench_<family>.py`` (pool, norm, neuron, dropout, softmax, elt, sgd, conv, ...)
defines ``cases(cp, torch)`` yielding `Case` objects (``torch`` is None where it is not importable);
``benchmarks/bench_gpu.py`` runs them all, prints a markdown table and writes JSON and the
"GPU kernels" section of benchmarks/RESULTS.md. A case's callables must only launch work (no host
sync, no allocation it could avoid): inputs are prepared when the case is built, larger than L2 and
random (never zeros). Check results against the NumPy reference in the tests, not here.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable, Optional

COPY_GBPS = 2990.0      # H100 device-to-device copy, read + write bytes (DESIGN.md)
SGEMM_TFLOPS = 51.0     # H100 cuBLAS SGEMM fp32, no TF32 (DESIGN.md)
# bench_gpu.py measures both on the device it runs on (`ceilings`) and uses those: an H200 copies
# at ~4.3 TB/s, so the H100 constants above would overstate its percentages.


@dataclass
class Case:
    """One timed kernel call.

    op: e.g. "maxpool 3/2"; direction: "fwd", "bwd", "fwd+bwd", "bwd-data", "bwd-filter";
    shape: e.g. "64x55x55x128" (C×H×W×N); run: launches our kernel(s) once;
    nbytes: minimum bytes moved (each input read once, each output written once), for GB/s;
    flops: for compute-bound ops (conv), for TFLOP/s; torch_run: the PyTorch equivalent, or None;
    note: anything a reader needs (e.g. "torch: F.max_pool2d NCHW").
    """
    op: str
    direction: str
    shape: str
    run: Callable[[], None]
    nbytes: Optional[float] = None
    flops: Optional[float] = None
    torch_run: Optional[Callable[[], None]] = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def _median_batched(record, fn, warmup, reps, batch):
    """Median per-call milliseconds over ``reps`` batches of ``batch`` back-to-back calls.

    Timing whole batches between two events measures what the GPU sustains: the launch of the next
    call overlaps the kernel of the previous one, as it does inside a training step. (One event pair
    per call would add the Python and launch time of every call when it exceeds the kernel's.)
    """
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        ts.append(record(lambda: [fn() for _ in range(batch)]) / batch)
    return statistics.median(ts)


def time_ms(cp, fn, warmup: int = 5, reps: int = 10, batch: int = 20) -> float:
    """Median milliseconds per call of ``fn()`` on CuPy's current stream (CUDA events)."""
    def record(run):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        cp.cuda.get_current_stream().synchronize()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop)
    return _median_batched(record, fn, warmup, reps, batch)


def time_torch_ms(torch, fn, warmup: int = 5, reps: int = 10, batch: int = 20) -> float:
    """Median milliseconds per call of a PyTorch callable on torch's current stream."""
    def record(run):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop)
    return _median_batched(record, fn, warmup, reps, batch)


def ceilings(cp) -> dict:
    """The current device's copy rate (GB/s, bytes read + written, device-to-device cudaMemcpyAsync of
    512 MiB) and cuBLAS SGEMM rate (TFLOP/s, 8192^3 float32, CuPy's plain fp32 math), measured now."""
    n = 512 << 20
    a, b = cp.empty(n, cp.uint8), cp.empty(n, cp.uint8)
    a.fill(1)

    def copy():
        cp.cuda.runtime.memcpyAsync(b.data.ptr, a.data.ptr, n, cp.cuda.runtime.memcpyDeviceToDevice,
                                    cp.cuda.get_current_stream().ptr)
    copy_gbps = 2 * n / time_ms(cp, copy, reps=5) / 1e6
    m = 8192
    x = cp.random.default_rng(0).standard_normal((m, m), dtype=cp.float32)
    y = cp.empty_like(x)
    sgemm = 2 * m**3 / time_ms(cp, lambda: cp.matmul(x, x, out=y), warmup=2, reps=3, batch=5) / 1e9
    return {"copy GB/s": copy_gbps, "sgemm TFLOP/s": sgemm}


def measure(cp, torch, case: Case, reps: int = 10, ceil: Optional[dict] = None) -> dict:
    """Times ``case`` (and its torch twin) and returns one result row as a dict; percentages of
    ``ceil`` (from `ceilings`; the H100 constants when None)."""
    copy_gbps = ceil["copy GB/s"] if ceil else COPY_GBPS
    sgemm_tflops = ceil["sgemm TFLOP/s"] if ceil else SGEMM_TFLOPS
    ms = time_ms(cp, case.run, reps=reps)
    row = dict(op=case.op, direction=case.direction, shape=case.shape, ms=ms, note=case.note, **case.extra)
    if case.nbytes:
        row["GB/s"] = case.nbytes / ms / 1e6
        row["% copy"] = 100 * row["GB/s"] / copy_gbps
    if case.flops:
        row["TFLOP/s"] = case.flops / ms / 1e9
        row["% sgemm"] = 100 * row["TFLOP/s"] / sgemm_tflops
    if torch is not None and case.torch_run is not None:
        row["torch ms"] = time_torch_ms(torch, case.torch_run, reps=reps)
        row["torch/ours"] = row["torch ms"] / ms
    return row
