"""Whole-net benchmark: forward and training-step time of pyconvnet's GPU backend against the same
net in PyTorch (benchmarks/torchnet.py) in the same run, fp32 strict (TF32 off) and with TF32.

Nets: ``alexnet-1tower`` (cuda-convnet2's one-GPU ImageNet AlexNet: five convs with cross-map
response normalisation and max-pooling, fc4096-dropout-fc4096-dropout-fc1000, softmax, logreg) on
3x224x224 and ``cifar10-18pct`` on 3x32x32, batch 128 each. A training step is forward (train mode),
backward and the learning-rule update, host-synchronised once (the cost comes back to the host):
``Net.train_step`` (a CUDA graph where the net allows) and the eager forward/backward/update.

    python benchmarks/bench_net.py [--nets alexnet-1tower,cifar10-18pct] [--steps 20] [--json f] [--write]
    python benchmarks/bench_net.py --device cpu --nets cifar10-18pct --steps 3   # a CPU smoke run
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from results import commit, replace_section

NETS = {"alexnet-1tower": (3, 224, 224), "cifar10-18pct": (3, 32, 32)}
NETS_DIR = Path(__file__).resolve().parent.parent / "pyconvnet" / "nets"


def specs_of(name, n_classes):
    from pyconvnet.config import parse_layer_files
    return parse_layer_files(NETS_DIR / f"{name}.cfg", NETS_DIR / f"{name}-params.cfg",
                             {0: NETS[name], 1: ()}, num_classes=n_classes)


def _median_ms(fn, steps, sync):
    fn()
    fn()
    sync()
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def ours(name, n, steps, device):
    from pyconvnet.backend import get_backend
    from pyconvnet.net import Net

    b = get_backend(device)
    xp = b.xp
    classes = 1000 if name.startswith("alexnet") else 10
    net = Net(specs_of(name, classes), b, seed=0)
    rng = np.random.default_rng(0)
    x = b.asarray((rng.standard_normal((*NETS[name], n)) * 50).astype(np.float32))
    lab = b.asarray(rng.integers(0, classes, n).astype(np.int32))
    sync = (lambda: xp.cuda.get_current_stream().synchronize()) if device == "gpu" else (lambda: None)
    state = {"step": 0}

    def fwd():
        net.forward([x, lab], train=False, step=0)

    def eager_step():
        net.forward([x, lab], train=True, step=state["step"])
        net.backward()
        net.update(0.0)
        state["step"] += 1

    def step():  # what the trainer runs: a CUDA graph of forward + backward where the net allows
        net.train_step([x, lab], step=state["step"])
        net.update(0.0)
        state["step"] += 1

    t_fwd, t_eager = _median_ms(fwd, steps, sync), _median_ms(eager_step, steps, sync)
    t_step = _median_ms(step, steps, sync)
    return t_fwd, t_step, t_eager, net.graph_status


def theirs(name, n, steps, device, tf32):
    import torch
    from torchnet import build, train_step

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if device == "gpu" else "cpu"
    classes = 1000 if name.startswith("alexnet") else 10
    net, opt = build(specs_of(name, classes), torch, dev)
    x = torch.randn(n, *NETS[name], device=dev) * 50
    lab = torch.randint(0, classes, (n,), device=dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def fwd():
        with torch.no_grad():
            net.eval()
            net(x, lab).item()
            net.train()

    def step():
        train_step(net, opt, x, lab, n).item()

    return _median_ms(fwd, steps, sync), _median_ms(step, steps, sync)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    meta = dict(date=datetime.date.today().isoformat(), commit=commit(), batch=a.batch, steps=a.steps)
    if a.device == "gpu":
        import cupy as cp
        p = cp.cuda.runtime.getDeviceProperties(0)
        meta["device"] = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
    else:
        meta["device"] = "CPU"
    if torch is not None:
        meta["torch"] = torch.__version__
    rows = []
    for name in a.nets.split(","):
        row = dict(net=name)
        try:
            row["fwd ms"], row["step ms"], row["eager step ms"], row["step path"] = ours(
                name, a.batch, a.steps, a.device)
        except Exception as e:  # report and go on: the other numbers are still worth having
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if torch is not None:
            for tf32 in ((False, True) if a.device == "gpu" else (False,)):
                key = "torch tf32" if tf32 else "torch fp32"
                try:
                    row[f"{key} fwd ms"], row[f"{key} step ms"] = theirs(name, a.batch, a.steps, a.device, tf32)
                except Exception as e:
                    row[f"{key} error"] = f"{type(e).__name__}: {e}"
        if "step ms" in row:
            row["images/s"] = a.batch / row["step ms"] * 1e3
            if "torch fp32 step ms" in row:
                row["ours/torch fp32 (step)"] = row["step ms"] / row["torch fp32 step ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    if a.write:
        keys = ["fwd ms", "step ms", "eager step ms", "images/s", "torch fp32 fwd ms", "torch fp32 step ms", "torch tf32 step ms",
                "ours/torch fp32 (step)"]
        lines = [f"## Whole nets ({meta['device']}, batch {a.batch})", "",
                 f"Measured {meta['date']} on {meta['device']}, torch {meta.get('torch', 'absent')}, commit "
                 f"{meta['commit']}; median of {a.steps} host-synchronised steps. Command: "
                 "`python benchmarks/bench_net.py --write`.", "",
                 "step ms: what `pyconvnet train` runs (forward + backward as one CUDA graph where the net "
                 "allows, then the update); eager step ms: the same without the graph.", "",
                 "| net | " + " | ".join(keys) + " | step path | error |",
                 "| --- |" + " ---: |" * len(keys) + " --- | --- |"]
        for r in rows:
            cells = [f"{r[k]:,.2f}" if k in r else "" for k in keys]
            lines.append(f"| {r['net']} | " + " | ".join(cells) + f" | {r.get('step path', '')} | {r.get('error', '')} |")
        replace_section(f"net-{a.device}", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
