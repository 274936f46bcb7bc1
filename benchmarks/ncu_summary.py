"""One line per profiled kernel from an Nsight Compute CSV (``ncu --csv --page details --log-file F``,
sections SpeedOfLight, Occupancy, MemoryWorkloadAnalysis, LaunchStats), as a markdown table.

    python benchmarks/ncu_summary.py ncu.csv
"""
from __future__ import annotations

import collections
import csv
import re
import sys

COLUMNS = [("Duration", "duration (ncu clocks)"), ("DRAM Throughput", "DRAM % of peak"),
           ("Compute (SM) Throughput", "SM % of peak"), ("L1/TEX Hit Rate", "L1 hit %"),
           ("L2 Hit Rate", "L2 hit %"), ("Registers Per Thread", "registers"),
           ("Achieved Occupancy", "achieved occupancy %"), ("Theoretical Occupancy", "theoretical occupancy %")]


def summarize(path):
    rows = list(csv.reader(open(path, errors="replace")))
    hdr = next((i for i, r in enumerate(rows) if r and r[0] == "ID"), None)
    if hdr is None:
        raise SystemExit(f"{path}: no ncu CSV header (ID, ..., Metric Name, Metric Value) found")
    h = rows[hdr]
    ix = {k: h.index(k) for k in h}
    kernels = collections.OrderedDict()
    for r in rows[hdr + 1:]:
        if len(r) <= ix["Metric Value"]:
            continue
        name = re.sub(r"\(const T1.*|\(T1.*", "", r[ix["Kernel Name"]]).replace("void ", "")
        m = kernels.setdefault((r[ix["ID"]], name), {"block": r[ix["Block Size"]], "grid": r[ix["Grid Size"]]})
        m[r[ix["Metric Name"]]] = (r[ix["Metric Value"]], r[ix["Metric Unit"]])
    out = ["| # | kernel | block | grid | " + " | ".join(c for _, c in COLUMNS) + " |",
           "| ---: | --- | --- | --- |" + " ---: |" * len(COLUMNS)]
    for (i, name), m in kernels.items():
        cells = []
        for key, _ in COLUMNS:
            v, unit = m.get(key, ("", ""))
            cells.append(f"{v} {'us' if unit == 'us' else 'ns' if unit == 'ns' else ''}".strip()
                         if key == "Duration" else v)
        out.append(f"| {i} | `{name}` | {m['block']} | {m['grid']} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    print("\n".join(summarize(sys.argv[1])))
