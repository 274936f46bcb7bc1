"""GPU kernel benchmarks: every ``benchmarks/bench_<family>.py`` module's ``cases(cp, torch)``.

For each case: median time over CUDA-event-timed calls after a warm-up, effective GB/s (minimum bytes)
and percent of the measured copy ceiling, or TFLOP/s and percent of the SGEMM ceiling, and PyTorch's
time for the same work in the same run with the ratio (when torch is importable). Prints a markdown
table, writes JSON (``--json``) and, with ``--write``, one section of benchmarks/RESULTS.md per family that ran
("gpu-<family>"; the other families' sections are kept).

    python benchmarks/bench_gpu.py [--only pool,norm] [--reps 50] [--json out.json] [--write]
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
import traceback
from pathlib import Path

from harness import ceilings, measure
from results import commit, replace_section

HERE = Path(__file__).resolve().parent
SKIP = {"bench_cpu", "bench_gpu", "bench_net"}
COLUMNS = [("op", "{}"), ("direction", "{}"), ("shape", "{}"), ("ms", "{:.4f}"), ("GB/s", "{:,.0f}"),
           ("% copy", "{:.0f}%"), ("TFLOP/s", "{:.1f}"), ("% sgemm", "{:.0f}%"), ("torch ms", "{:.4f}"),
           ("torch/ours", "{:.2f}"), ("note", "{}")]


def families():
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py") if p.stem not in SKIP)


def table(rows):
    cols = [(c, f) for c, f in COLUMNS if any(c in r for r in rows)]
    out = ["| " + " | ".join(c for c, _ in cols) + " |",
           "| " + " | ".join("---:" if c not in ("op", "direction", "shape", "note") else "---" for c, _ in cols) + " |"]
    for r in rows:
        out.append("| " + " | ".join(f.format(r[c]) if c in r and r[c] != "" else "" for c, f in cols) + " |")
    return out


def device_meta(cp, torch):
    rt = cp.cuda.runtime
    p = rt.getDeviceProperties(rt.getDevice())
    name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
    v = rt.runtimeGetVersion()
    meta = dict(device=name, cuda=f"{v // 1000}.{v % 1000 // 10}", cupy=cp.__version__,
                date=datetime.date.today().isoformat(), commit=commit())
    if torch is not None:
        meta["torch"] = torch.__version__
        meta["cudnn"] = str(torch.backends.cudnn.version())
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated families (default: all)")
    ap.add_argument("--reps", type=int, default=10, help="batches of 20 back-to-back calls")
    ap.add_argument("--json", default=None, help="write the rows and metadata here")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    import cupy as cp
    try:
        import torch
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    except ImportError:
        torch = None
    meta = device_meta(cp, torch)
    meta.update(ceilings(cp))
    cp.get_default_memory_pool().free_all_blocks()
    print(f"# {meta}", flush=True)
    rows, failures = [], []
    for fam in (a.only.split(",") if a.only else families()):
        try:
            mod = importlib.import_module(f"bench_{fam}")
            for case in mod.cases(cp, torch):
                row = dict(family=fam, **measure(cp, torch, case, reps=a.reps, ceil=meta))
                rows.append(row)
                print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
                cp.get_default_memory_pool().free_all_blocks()
        except Exception:  # one family's failure must not hide the others' numbers
            failures.append(fam)
            traceback.print_exc()
    lines = table(rows)
    print("\n".join(lines))
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows, "failed": failures}, indent=1) + "\n")
    if a.write and rows:
        for fam in dict.fromkeys(r["family"] for r in rows):
            fam_rows = [r for r in rows if r["family"] == fam]
            head = [f"## GPU kernels: {fam} ({meta['device']})", "",
                    f"Measured {meta['date']} on {meta['device']}, CUDA {meta['cuda']}, CuPy {meta['cupy']}"
                    + (f", torch {meta['torch']} (cuDNN {meta['cudnn']}, TF32 off)" if torch is not None else "")
                    + f", commit {meta['commit']}. Per call: median over {a.reps} CUDA-event-timed batches of 20 "
                    "back-to-back calls, after a warm-up. "
                    f"Ceilings measured in the same run: copy {meta['copy GB/s']:,.0f} GB/s (read + write), "
                    f"cuBLAS SGEMM {meta['sgemm TFLOP/s']:.1f} TFLOP/s (fp32). "
                    f"torch/ours > 1 means ours is faster. Command: `python benchmarks/bench_gpu.py --only {fam} "
                    "--write`.", ""]
            replace_section(f"gpu-{fam}", head + table(fam_rows))
        if failures:
            print(f"families that failed to run (their sections were left as they were): {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
