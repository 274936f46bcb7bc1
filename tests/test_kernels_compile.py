"""Every kernels/*.cu file compiles, with no GPU: under NVRTC (the RawModule path: the text as is, no
include paths) for compute_80 and compute_90, and under nvcc for sm_90 with ptxas's resource report,
which must show no register spills. Kernel files are found by globbing, so a new one is covered
without editing this file. Skips (with the reason) only where libnvrtc or nvcc cannot be found.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyconvnet.cuda import nvrtc
from pyconvnet.cuda.loader import entry_points

KERNELS = sorted((Path(__file__).resolve().parent.parent / "kernels").glob("*.cu"))


def _nvcc():
    for cand in (os.environ.get("CUDACXX"), "nvcc", "/usr/local/cuda/bin/nvcc"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _need_nvrtc():
    lib, why = nvrtc.load()
    if lib is None:
        pytest.skip(why)


def test_kernel_sources_exist():
    assert KERNELS, "no kernels/*.cu found"


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.name)
def test_nvrtc_compiles(path, arch):
    _need_nvrtc()
    ptx = nvrtc.compile_file(path, arch)
    assert f".target sm_{arch.split('_')[1]}" in ptx
    n_entries = len(re.findall(r"^\s*(?:\.\w+\s+)*\.entry\s", ptx, re.MULTILINE))
    # Templates count only once instantiated: the file must instantiate its entry points itself.
    assert n_entries >= max(1, len(entry_points(path.read_text()))), f"{path.name}: {n_entries} entries in PTX"


def test_nvrtc_error_carries_the_log():
    _need_nvrtc()
    with pytest.raises(nvrtc.NVRTCError, match="NVRTC_ERROR_COMPILATION") as info:
        nvrtc.compile_ptx("__global__ void k(float* p) { p[0] = undefined_name; }", name="bad.cu")
    assert "undefined_name" in info.value.log and "bad.cu" in info.value.log


def _ptxas_report(stderr: str) -> dict[str, dict[str, int]]:
    """{mangled function: {registers, stack, spill_stores, spill_loads}} from ``-Xptxas -v`` output."""
    report, fn = {}, None
    for line in stderr.splitlines():
        m = re.search(r"Function properties for (\S+)", line) or re.search(r"Compiling entry function '([^']+)'",
                                                                          line)
        if m:
            fn = m.group(1)
            report.setdefault(fn, {})
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and fn:
            report[fn].update(stack=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
        m = re.search(r"Used (\d+) registers", line)
        if m and fn:
            report[fn]["registers"] = int(m[1])
    return report


@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.name)
def test_nvcc_sm90_no_spills(path, tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (PATH, CUDACXX, /usr/local/cuda/bin)")
    proc = subprocess.run([nvcc, "-arch=sm_90", "-std=c++17", "-cubin", "-Xptxas", "-v", "-o",
                           str(tmp_path / "k.cubin"), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed on {path.name}:\n{proc.stderr}"
    report = _ptxas_report(proc.stderr)
    table = "\n".join(f"  {fn}: {r}" for fn, r in report.items())
    assert report, f"{path.name}: ptxas compiled no kernel (templates not instantiated?)\n{proc.stderr}"
    spilled = {fn: r for fn, r in report.items() if r.get("spill_stores", 0) or r.get("spill_loads", 0)}
    assert not spilled, f"{path.name}: register spills on sm_90:\n{table}"
