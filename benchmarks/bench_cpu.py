"""CPU timings of the NumPy reference ops at the shapes of the layers-18pct CIFAR net (batch 128).

For each op: the median wall time of forward and backward (all backward outputs the layer needs)
over several runs after a warm-up, float32, on random inputs. Writes a markdown table into the
"CPU reference ops" section of benchmarks/RESULTS.md (other sections are kept) and the raw numbers
as JSON next to it. Usage: ``python benchmarks/bench_cpu.py [--reps 7] [--no-write]``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from pyconvnet.ops import conv, fc, norm, pool, neuron, dropout, softmax, sgd

from results import commit, replace_section

HERE = Path(__file__).resolve().parent
N = 128


def timeit(fn, reps):
    fn()  # warm-up (allocations, BLAS threads)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cases(rng):
    r = lambda *s: rng.standard_normal(s).astype(np.float32)
    out = []

    def conv_case(name, c, k, img, first=False):
        x, w, b = r(c, img, img, N), r(c, 5, 5, k) * 0.05, r(k, 1)
        kw = dict(padding=2, stride=1, groups=1)
        y = conv.conv_fwd(x, w, b, **kw)
        dy = r(*y.shape)

        def bwd():
            conv.conv_bwd_filter(dy, x, 5, **kw)
            conv.bias_bwd(dy, True)
            if not first:  # the first layer needs no gradient for its input
                conv.conv_bwd_data(dy, w, (img, img), **kw)
        out.append((name, f"{c}x{img}x{img}x{N} -> {k}x{img}x{img}x{N}, 5x5 p2",
                    lambda: conv.conv_fwd(x, w, b, **kw), bwd))

    conv_case("conv1 (conv)", 3, 32, 32, first=True)
    conv_case("conv2 (conv)", 32, 32, 16)
    conv_case("conv3 (conv)", 32, 64, 8)

    def pool_case(name, mode, c, img):
        x = r(c, img, img, N)
        kw = dict(mode=mode, size=3, stride=2, start=0, outputs=0)
        y = pool.pool_fwd(x, **kw)
        dy = r(*y.shape)
        out.append((name, f"{c}x{img}x{img}x{N}, 3/2 {mode}", lambda: pool.pool_fwd(x, **kw),
                    lambda: pool.pool_bwd(dy, x, y, **kw)))

    pool_case("pool1 (max pool)", "max", 32, 32)
    pool_case("pool2 (avg pool)", "avg", 32, 16)
    pool_case("pool3 (avg pool)", "avg", 64, 8)

    def norm_case(name, fam, c, img, size):
        x = r(c, img, img, N)
        f, b = getattr(norm, fam + "_fwd"), getattr(norm, fam + "_bwd")
        kw = dict(size=size, scale=5e-5 if fam != "cmrnorm" else 5e-4, pow=0.75)
        y, d = f(x, **kw)
        dy = r(*y.shape)
        out.append((name, f"{c}x{img}x{img}x{N}, size {size}", lambda: f(x, **kw),
                    lambda: b(dy, x, y, d, **kw)))

    norm_case("rnorm1 (rnorm)", "rnorm", 32, 16, 3)
    norm_case("rnorm2 (rnorm)", "rnorm", 32, 8, 3)
    norm_case("cmrnorm", "cmrnorm", 32, 16, 5)
    norm_case("cnorm", "cnorm", 32, 16, 3)

    # Each case builds its arrays inside a function: the lambdas must not share names that a later
    # case rebinds (a closure sees a variable's last value, not the one it was created with).
    def relu_case():
        x = r(32, 16, 16, N)
        y = neuron.neuron_fwd(x, "relu")
        dy = r(*y.shape)
        out.append(("relu (neuron)", f"32x16x16x{N}", lambda: neuron.neuron_fwd(x, "relu"),
                    lambda: neuron.neuron_bwd(dy, x, y, "relu")))

    def fc_case():
        x, w, b = r(1024, N), r(1024, 10) * 0.01, r(10, 1)
        dy = r(10, N)
        out.append(("fc10 (fc)", f"1024x{N} -> 10x{N}", lambda: fc.fc_fwd(x, w, b),
                    lambda: (fc.fc_bwd_data(dy, w), fc.fc_bwd_filter(dy, x), conv.bias_bwd(dy, True))))

    def softmax_case():
        x = r(10, N)
        labels = rng.integers(0, 10, N)
        p = softmax.softmax_fwd(x)
        out.append(("probs + logprob (softmax, logreg)", f"10x{N}",
                    lambda: (softmax.softmax_fwd(x), softmax.logreg_cost(p, labels)),
                    lambda: softmax.softmax_logreg_bwd(p, labels)))

    def dropout_case():
        x, dy = r(4096, N), r(4096, N)
        kw = dict(keep=0.5, seed=1, layer=7, step=3)
        out.append(("dropout", f"4096x{N}", lambda: dropout.dropout_fwd(x, **kw),
                    lambda: dropout.dropout_bwd(dy, **kw)))

    def sgd_case():
        w, inc, g = r(32, 5, 5, 32), r(32, 5, 5, 32), r(32, 5, 5, 32)
        out.append(("sgd update (conv2 weights)", "32x5x5x32", lambda: None,
                    lambda: sgd.sgd_update(w, inc, g, eps=1e-3, mom=0.9, wc=4e-3, n=N)))

    for case in (relu_case, fc_case, softmax_case, dropout_case, sgd_case):
        case()
    return out


def write_results(rows, meta):
    lines = ["## CPU reference ops (NumPy), layers-18pct shapes, batch 128, float32", "",
             f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), NumPy "
             f"{meta['numpy']}, Python {meta['python']}, commit {meta['commit']}; median of "
             f"{meta['reps']} runs after a warm-up. Command: `python benchmarks/bench_cpu.py`.", "",
             "| op | shape | forward ms | backward ms |", "| --- | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['shape']} | {r['fwd_ms']:.2f} | {r['bwd_ms']:.2f} |")
    tot_f = sum(r["fwd_ms"] for r in rows if "(" in r["op"])
    tot_b = sum(r["bwd_ms"] for r in rows if "(" in r["op"])
    lines += ["", f"Sum over the layers of the net (rows with a layer name; relu counted once of "
              f"three): forward {tot_f:.1f} ms, backward {tot_b:.1f} ms per minibatch of {N}."]
    replace_section("cpu-ops", lines)
    (HERE / "results_cpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, f, b in cases(rng):
        rows.append(dict(op=name, shape=shape, fwd_ms=timeit(f, a.reps) * 1e3,
                         bwd_ms=timeit(b, a.reps) * 1e3))
        print(f"{name:36s} {shape:40s} fwd {rows[-1]['fwd_ms']:8.2f} ms  bwd {rows[-1]['bwd_ms']:8.2f} ms",
              flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    meta = dict(date=datetime.date.today().isoformat(), cpu=cpu, cores=os.cpu_count(),
                numpy=np.__version__, python=platform.python_version(), reps=a.reps, commit=commit())
    if not a.no_write:
        write_results(rows, meta)


if __name__ == "__main__":
    main()
