"""``info()``: what this installation can run, one line per backend and tool, with the reason when not.

    >>> import pyconvnet; print(pyconvnet.info())
"""
from __future__ import annotations

import os
import platform


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _safe(probe) -> str:
    try:
        return probe()
    except Exception as e:  # info() never raises
        return f"not usable ({_first_line(e)})"


def _cupy() -> str:
    try:
        import cupy
    except Exception as e:
        return f"not usable ({_first_line(e)})"
    return f"usable (CuPy {cupy.__version__})"


def _device() -> str:
    from .cuda.launch import extension_status

    reasons = []
    try:
        import cupy
        rt = cupy.cuda.runtime
        n = rt.getDeviceCount()
        if n > 0:
            p = rt.getDeviceProperties(0)
            name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
            drv = rt.driverGetVersion()
            return (f"{n} usable (device 0: {name}, sm_{p['major']}{p['minor']}, "
                    f"driver for CUDA {drv // 1000}.{drv % 1000 // 10})")
        reasons.append("CuPy sees 0 devices")
    except Exception as e:
        reasons.append(f"CuPy: {_first_line(e)}")
    ext, _ = extension_status()
    if ext is not None:
        facts = ext.runtime_info()
        if facts["device_count"] > 0:
            return f"{facts['device_count']} usable (through pyconvnet._cuda)"
        reasons.append(f"pyconvnet._cuda: {facts['error'] or '0 devices'}")
    return "none (" + "; ".join(reasons) + ")"


def _extension() -> str:
    from .cuda.launch import extension_status

    ext, why = extension_status()
    if ext is None:
        return f"not built or not importable ({why}); installing with nvcc on PATH builds it"
    rt = ext.runtime_info()["runtime_version"]
    return (f"importable (CUDA runtime {rt // 1000}.{rt % 1000 // 10}, architectures "
            f"{ext.cuda_architectures}, {len(ext.kernels())} kernels)")


def _rawmodule() -> str:
    import cupy
    from cupy.cuda import nvrtc as cupy_nvrtc

    major, minor = cupy_nvrtc.getVersion()
    return f"usable where a device is (CuPy {cupy.__version__} finds NVRTC {major}.{minor})"


def _nvrtc() -> str:
    from .cuda import nvrtc

    lib, where = nvrtc.load()
    if lib is None:
        return f"not usable ({where})"
    major, minor = nvrtc.version()
    return f"usable (NVRTC {major}.{minor}, {where})"


def _launch_path() -> str:
    from .cuda.launch import ENV, launch_path

    env = os.environ.get(ENV)
    return f"{launch_path()} ({ENV}={env})" if env else f"{launch_path()} ({ENV} unset: auto)"


def info() -> str:
    """A multi-line human-readable report of versions and of which backends are usable, and why not.

    Fast (imports CuPy if installed, loads libnvrtc; no compilation) and never raises.
    """
    import numpy as np

    from . import __version__

    lines = [
        f"pyconvnet {__version__} (Python {platform.python_version()}, NumPy {np.__version__})",
        "CPU backend (NumPy reference): usable",
        f"CuPy: {_safe(_cupy)}",
        f"CUDA device: {_safe(_device)}",
        f"extension pyconvnet._cuda: {_safe(_extension)}",
        f"CuPy RawModule path: {_safe(_rawmodule)}",
        f"NVRTC (kernel compile checks): {_safe(_nvrtc)}",
        f"CUDA launch path: {_safe(_launch_path)}",
    ]
    return "\n".join(lines)
