"""Compile CUDA C++ to PTX with NVRTC through ctypes: no GPU, no CuPy, no nvcc needed.

Used to check that every kernels/*.cu file compiles under NVRTC for the architectures we ship
(tests/test_kernels_compile.py) and by ``pyconvnet.info()``. libnvrtc is looked for in the
``nvidia-cuda-nvrtc`` pip package (``nvidia/cu13/lib``), then ``$CUDA_HOME``/``$CUDA_PATH``/
``/usr/local/cuda`` (``lib64``), then the dynamic loader's path.

    ptx = compile_ptx(Path("kernels/neuron.cu").read_text(), arch="compute_90")
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
from pathlib import Path

_lib: list = []  # [CDLL or None, path or reason], filled on first use


class NVRTCError(RuntimeError):
    """NVRTC failed; ``log`` holds NVRTC's compilation log (empty if it failed before compiling)."""

    def __init__(self, msg: str, log: str = ""):
        super().__init__(f"{msg}\n{log}" if log else msg)
        self.log = log


def _candidates() -> list[str]:
    found = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for base in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13/lib", "cuda_nvrtc/lib"):
            found += sorted(glob.glob(os.path.join(base, sub, "libnvrtc.so*")), reverse=True)
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in filter(None, homes):
        found += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")), reverse=True)
    # Skip the builtins library that sits beside libnvrtc; then let the loader search its path.
    found = [f for f in found if "builtins" not in os.path.basename(f)]
    return found + ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]


def load():
    """``(ctypes.CDLL, path)`` of libnvrtc, or ``(None, why not)``; cached, never raises."""
    if not _lib:
        errors = []
        for cand in _candidates():
            try:
                lib = ctypes.CDLL(cand)
                lib.nvrtcGetErrorString.restype = ctypes.c_char_p
                _lib[:] = [lib, cand]
                break
            except OSError as e:
                errors.append(str(e).split(":")[-1].strip() or cand)
        else:
            why = f"libnvrtc not found in {len(errors)} places (pip install nvidia-cuda-nvrtc, or set CUDA_HOME)"
            _lib[:] = [None, why]
    return _lib[0], _lib[1]


def _need():
    lib, why = load()
    if lib is None:
        raise NVRTCError(why)
    return lib


def version() -> tuple[int, int]:
    """NVRTC's (major, minor). Raises NVRTCError when libnvrtc is not found."""
    lib = _need()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _check(lib, code: int, what: str, log: str = "") -> None:
    if code != 0:
        raise NVRTCError(f"{what} failed: {lib.nvrtcGetErrorString(code).decode()} ({code})", log)


def compile_ptx(source: str, arch: str = "compute_90", options=(), name: str = "kernel.cu") -> str:
    """PTX text of ``source`` compiled for virtual ``arch`` (e.g. ``compute_80``, ``compute_90``).

    ``options`` are extra NVRTC options (``-std=c++17`` is always given). Raises NVRTCError carrying
    the compilation log when the source does not compile.
    """
    lib = _need()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", "-std=c++17", *options]
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        code = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        _check(lib, code, f"NVRTC compile of {name} for {arch}", log)
        _check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        buf = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
        return buf.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_file(path, arch: str = "compute_90", options=()) -> str:
    """``compile_ptx`` on the text of file ``path``."""
    path = Path(path)
    return compile_ptx(path.read_text(), arch, options, name=path.name)
