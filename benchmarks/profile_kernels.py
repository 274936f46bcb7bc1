"""Run chosen benchmark cases once each, for a profiler: `ncu` (Nsight Compute) over this script shows
what limits each kernel (DRAM, L1/L2, issue, occupancy).

    ncu --section SpeedOfLight --section Occupancy --csv --log-file ncu.csv \\
        python benchmarks/profile_kernels.py "maxpool 3/2:bwd:64x55" "rnorm 5:bwd" "softmax:fwd:10000"

Each argument selects the cases of benchmarks/bench_<family>.py whose "op:direction:shape" contains
it (case-insensitive prefix matching on each part); every selected case's ``run`` is called once
(the kernels it launches are what the profiler sees; the inputs' set-up kernels run before and are
also listed, between NVTX-free markers printed to stdout).
"""
from __future__ import annotations

import importlib
import sys

from bench_gpu import families


def _matches(sel: str, case) -> bool:
    parts = [p.strip().lower() for p in sel.split(":")]
    have = [case.op.lower(), case.direction.lower(), case.shape.lower()]
    return all(h.startswith(p) if i < 2 else p in h for i, (p, h) in enumerate(zip(parts, have)))


def main(argv=None):
    sels = list(sys.argv[1:] if argv is None else argv)
    if not sels:
        print(__doc__)
        return 2
    import cupy as cp

    done = 0
    for fam in families():
        if fam == "conv" and not any("conv" in s.lower() for s in sels):
            continue
        mod = importlib.import_module(f"bench_{fam}")
        for case in mod.cases(cp, None):
            if any(_matches(s, case) for s in sels):
                cp.cuda.Device().synchronize()
                print(f"== {case.op} {case.direction} {case.shape}", flush=True)
                case.run()
                cp.cuda.Device().synchronize()
                done += 1
        cp.get_default_memory_pool().free_all_blocks()
    print(f"{done} case(s) run")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
