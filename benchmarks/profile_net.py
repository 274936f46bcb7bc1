"""Where a training step's GPU time goes: per layer, forward, backward and update, timed with CUDA
events around each layer's calls inside one eager step (events only; one synchronisation at the end),
for the nets of bench_net.py at batch 128.

    python benchmarks/profile_net.py [--nets alexnet-1tower,cifar10-18pct] [--steps 5]

Each figure is the median over ``--steps`` steps after two warm-up steps of the time between the
events recorded just before and just after the layer's call: the layer's kernels plus any gap
while Python issued them (a layer whose kernels are shorter than its Python shows its Python time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from bench_net import NETS, specs_of


def profile(name, n, steps):
    import cupy as cp

    from pyconvnet.backend import get_backend
    from pyconvnet.net import Net

    b = get_backend("gpu")
    classes = 1000 if name.startswith("alexnet") else 10
    net = Net(specs_of(name, classes), b, seed=0)
    rng = np.random.default_rng(0)
    x = b.asarray((rng.standard_normal((*NETS[name], n)) * 50).astype(np.float32))
    lab = b.asarray(rng.integers(0, classes, n).astype(np.int32))
    marks = []  # (layer, phase, start event, end event) of the current step

    def wrap(layer, attr, phase):
        fn = getattr(layer, attr)

        def timed(*a, **kw):
            s = cp.cuda.Event()
            s.record()
            out = fn(*a, **kw)
            e = cp.cuda.Event()
            e.record()
            marks.append((layer.name, phase, s, e))
            return out
        setattr(layer, attr, timed)

    for l in net.layers:
        if l.type == "data":
            continue
        if l.is_cost:
            wrap(l, "cost", "fwd")
            wrap(l, "backward", "bwd")
        else:
            wrap(l, "forward", "fwd")
            wrap(l, "backward", "bwd")
    times = {}
    walls = []
    for it in range(steps + 2):
        marks.clear()
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        s = cp.cuda.Event()
        s.record()
        net.forward([x, lab], train=True, step=it)
        net.backward()
        m = cp.cuda.Event()
        m.record()
        net.update(0.0)
        e = cp.cuda.Event()
        e.record()
        e.synchronize()
        if it < 2:
            continue
        walls.append((time.perf_counter() - t0) * 1e3)
        for layer, phase, a, z in marks:
            times.setdefault((layer, phase), []).append(cp.cuda.get_elapsed_time(a, z))
        times.setdefault(("(update)", "all"), []).append(cp.cuda.get_elapsed_time(m, e))
        times.setdefault(("(step)", "all"), []).append(cp.cuda.get_elapsed_time(s, e))
    med = {k: statistics.median(v) for k, v in times.items()}
    types = {l.name: l.type for l in net.layers}
    print(f"\n## {name}, batch {n}: eager step {statistics.median(walls):.3f} ms wall, "
          f"{med[('(step)', 'all')]:.3f} ms between the first and last event")
    print("| layer | type | fwd ms | bwd ms |")
    print("| --- | --- | ---: | ---: |")
    tf = tb = 0.0
    for l in net.layers:
        if l.type == "data":
            continue
        f, bw = med.get((l.name, "fwd"), 0.0), med.get((l.name, "bwd"), 0.0)
        tf, tb = tf + f, tb + bw
        print(f"| {l.name} | {types[l.name]} | {f:.3f} | {bw:.3f} |")
    print(f"| (sum) | | {tf:.3f} | {tb:.3f} |")
    print(f"| (update: every sgd_update) | | {med[('(update)', 'all')]:.3f} | |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args(argv)
    for name in a.nets.split(","):
        profile(name, a.batch, a.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
