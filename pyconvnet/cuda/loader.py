"""Finding the kernels/*.cu sources and compiling them with CuPy RawModule (NVRTC).

The sources are looked for in the installed package first (``pyconvnet/_kernels/``, filled by
``pip install .``), then in the repository's ``kernels/`` beside the package (a source checkout or an
editable install). A kernel file's entry points are its explicit template instantiations
(``template __global__ void name<args>(...);``), which double as NVRTC name expressions; plain
``extern "C" __global__`` kernels are looked up by name. CuPy is imported only when compiling.
"""
from __future__ import annotations

import re
from pathlib import Path

PACKAGE_KERNELS = Path(__file__).resolve().parent.parent / "_kernels"
REPO_KERNELS = Path(__file__).resolve().parent.parent.parent / "kernels"
NVRTC_OPTIONS = ("-std=c++17",)

_INSTANCE = re.compile(r"^\s*template\s+__global__\s+void\s+(\w+\s*<[^>]*>)\s*\(", re.MULTILINE)
_modules: dict = {}


def kernel_dirs() -> list[Path]:
    """The folders searched for kernel sources, in order (only those that exist)."""
    return [d for d in (PACKAGE_KERNELS, REPO_KERNELS) if d.is_dir()]


def kernel_path(source: str) -> Path:
    """Path of ``<source>.cu`` (e.g. ``"neuron"``); FileNotFoundError naming the folders searched."""
    for d in kernel_dirs():
        p = d / f"{source}.cu"
        if p.is_file():
            return p
    raise FileNotFoundError(f"kernel source {source}.cu not found in {PACKAGE_KERNELS} or {REPO_KERNELS}")


def kernel_sources() -> list[Path]:
    """Every kernel source (``*.cu``) of the first folder that has any."""
    for d in kernel_dirs():
        files = sorted(d.glob("*.cu"))
        if files:
            return files
    return []


def entry_points(code: str) -> list[str]:
    """Name expressions of the explicit template instantiations in ``code``, e.g. ``neuron_fwd<float>``."""
    return [re.sub(r"\s+", "", m) for m in _INSTANCE.findall(code)]


def rawmodule(source: str):
    """The compiled ``cupy.RawModule`` of ``kernels/<source>.cu`` for the current device (cached).

    Compilation errors come from CuPy (``cupy.cuda.compiler.CompileException``, with NVRTC's log).
    """
    import cupy

    key = (source, cupy.cuda.runtime.getDevice())
    mod = _modules.get(key)
    if mod is None:
        code = kernel_path(source).read_text()
        mod = cupy.RawModule(code=code, options=NVRTC_OPTIONS, name_expressions=entry_points(code))
        _modules[key] = mod
    return mod
