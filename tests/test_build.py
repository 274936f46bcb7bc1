"""The installation: info(), the optional pyconvnet._cuda extension, launch-path selection, the kernel
source loader, and what a wheel ships. Runs without a GPU (and without CuPy for the import check)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pyconvnet
from pyconvnet import _info
from pyconvnet.cuda import launch, loader

ROOT = Path(__file__).resolve().parent.parent
EXT, EXT_WHY = launch.extension_status()
needs_extension = pytest.mark.skipif(EXT is None, reason=f"pyconvnet._cuda not importable: {EXT_WHY}")


def _has_device() -> bool:
    if EXT is not None:
        return EXT.runtime_info()["device_count"] > 0
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_info_reports_every_backend_with_a_reason():
    text = _info.info()
    lines = text.splitlines()
    assert lines[0].startswith(f"pyconvnet {pyconvnet.__version__} ")
    for what in ("CPU backend", "CuPy:", "CUDA device:", "extension pyconvnet._cuda:", "CuPy RawModule path:",
                 "NVRTC", "CUDA launch path:"):
        line = next((ln for ln in lines if ln.startswith(what)), None)
        assert line is not None, f"info() has no line for {what!r}:\n{text}"
        state = line.split(":", 1)[1].strip()
        assert state.startswith(("usable", "importable", "not ", "none (", "extension", "rawmodule")) or \
            state[0].isdigit(), line
        if state.startswith(("not ", "none")):
            assert "(" in state, f"no reason given: {line}"
    assert "usable" in next(ln for ln in lines if ln.startswith("CPU backend"))


def test_info_never_raises(monkeypatch):
    def boom():
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(launch, "extension_status", boom)
    monkeypatch.setenv(launch.ENV, "bogus")
    text = _info.info()
    assert "extension pyconvnet._cuda: not usable (RuntimeError: simulated failure)" in text
    assert "CUDA launch path: not usable (ValueError" in text


def test_import_without_cupy_and_info_says_why():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import pyconvnet, pyconvnet.cuda, pyconvnet.cuda.ops.neuron, pyconvnet.cuda.nvrtc\n"
            "from pyconvnet._info import info; print(info())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "CuPy: not usable (ModuleNotFoundError: " in proc.stdout


def test_importing_the_package_does_not_import_cupy():
    code = ("import sys, pyconvnet, pyconvnet.cuda, pyconvnet.cuda.ops.neuron, pyconvnet._info\n"
            "print('cupy' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@needs_extension
def test_extension_registers_exactly_the_kernel_entry_points():
    """The extension's kernel table holds every explicit instantiation of kernels/*.cu (the NVRTC
    name expressions of the RawModule path) and nothing else, so both paths launch the same names."""
    want = sorted(n for cu in loader.kernel_sources() for n in loader.entry_points(cu.read_text()))
    assert sorted(EXT.kernels()) == want
    for name in ("kernels", "kernel", "launch", "set_max_dynamic_shared", "runtime_info"):
        assert len(getattr(EXT, name).__doc__.strip().splitlines()) >= 2, f"{name} has no docstring"
    facts = EXT.runtime_info()
    assert set(facts) == {"runtime_version", "driver_version", "device_count", "error"}
    assert facts["runtime_version"] >= 12000


@needs_extension
def test_extension_launch_errors_are_exceptions():
    h = EXT.kernel("neuron_fwd<float>")
    assert EXT.kernel(" neuron_fwd < float > ") == h
    with pytest.raises(ValueError, match=r"no kernel neuron_fwd<half> \(is it registered"):
        EXT.kernel("neuron_fwd<half>")
    args = (0, 0, 0, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"neuron_fwd<float>: block of 2048 threads \(at most 1024\)"):
        EXT.launch(h, (1, 1, 1), (1024, 2, 1), 0, 0, "pplfff", args)
    with pytest.raises(ValueError, match=r"neuron_fwd<float>: grid 0x1x1 out of range"):
        EXT.launch(h, (0, 1, 1), (128, 1, 1), 0, 0, "pplfff", args)
    with pytest.raises(ValueError, match=r"signature 'ppl' has 3 letters for 6 arguments"):
        EXT.launch(h, (1, 1, 1), (128, 1, 1), 0, 0, "ppl", args)
    with pytest.raises(ValueError, match=r"argument 3 = 4294967296 does not fit int32"):
        EXT.launch(h, (1, 1, 1), (128, 1, 1), 0, 0, "ppliff", (0, 0, 0, 2**32, 0.0, 0.0))
    with pytest.raises(ValueError, match="no kernel with handle 100000"):
        EXT.launch(100000, (1, 1, 1), (1, 1, 1), 0, 0, "", ())
    if _has_device():
        EXT.launch(h, (1, 1, 1), (128, 1, 1), 0, 0, "ppliff", args)  # n = 0: a real launch touching nothing
    else:
        with pytest.raises(RuntimeError, match=r"neuron_fwd<float>: kernel launch failed: cuda\w+: "):
            EXT.launch(h, (1, 1, 1), (128, 1, 1), 0, 0, "ppliff", args)


def test_kernel_instance_names():
    k = launch.Kernel("pool", "pool_fwd", "ppi", template="{T}, {size}")
    assert k.instance(np.float32, size=3) == "pool_fwd<float,3>"
    assert launch.Kernel("neuron", "neuron_fwd", "pp").instance(np.float64) == "neuron_fwd<double>"


def test_launch_path_selection(monkeypatch):
    monkeypatch.delenv(launch.ENV, raising=False)
    assert launch.launch_path() == ("extension" if EXT is not None else "rawmodule")
    monkeypatch.setenv(launch.ENV, "rawmodule")
    assert launch.launch_path() == "rawmodule"
    with launch.use_launch_path("auto"):
        assert launch.launch_path() == ("extension" if EXT is not None else "rawmodule")
        with launch.use_launch_path("rawmodule"):
            assert launch.launch_path() == "rawmodule"
    assert launch.launch_path() == "rawmodule"
    monkeypatch.setenv(launch.ENV, "cuda")
    with pytest.raises(ValueError, match="PYCONVNET_LAUNCHER must be one of auto, extension, rawmodule; got 'cu"):
        launch.launch_path()
    with pytest.raises(ValueError, match="launch path must be one of"):
        with launch.use_launch_path("nvcc"):
            pass


def test_forcing_a_missing_extension_says_why(monkeypatch):
    monkeypatch.setattr(launch, "_extension", [None, "ImportError: no _cuda here"])
    with launch.use_launch_path("auto"):
        assert launch.launch_path() == "rawmodule"
    with launch.use_launch_path("extension"):
        with pytest.raises(RuntimeError, match=r"_cuda does not import \(ImportError: no _cuda here\)"):
            launch.launch_path()


def test_grid_stride_config_is_clamped_to_the_device():
    lim = launch.DeviceLimits(sm_count=4, max_block=512, max_grid_x=100)
    assert launch.grid_stride_config(0, limits=lim) == (1, 256)
    assert launch.grid_stride_config(1000, limits=lim) == (4, 256)
    assert launch.grid_stride_config(10**9, limits=lim) == (100, 256)   # max_grid_x < 4 SMs * 32
    assert launch.grid_stride_config(10**9, block=1024, limits=lim) == (100, 512)
    lim = launch.DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
    assert launch.grid_stride_config(10**9, limits=lim) == (132 * 32, 256)


def test_loader_finds_the_shipped_kernel_sources():
    sources = loader.kernel_sources()
    assert "neuron.cu" in [p.name for p in sources]
    path = loader.kernel_path("neuron")
    assert path.is_file() and path.parent in loader.kernel_dirs()
    if loader.REPO_KERNELS.is_dir():  # source checkout: the copy found is the same text as kernels/
        assert path.read_text() == (loader.REPO_KERNELS / "neuron.cu").read_text()
    assert loader.entry_points(path.read_text()) == [
        "neuron_fwd<float>", "neuron_fwd<double>", "neuron_bwd<float>", "neuron_bwd<double>"]
    with pytest.raises(FileNotFoundError, match="kernel source nope.cu not found in"):
        loader.kernel_path("nope")


def test_loader_prefers_the_package_copy(tmp_path, monkeypatch):
    pkg, repo = tmp_path / "pkg", tmp_path / "repo"
    pkg.mkdir(), repo.mkdir()
    (pkg / "a.cu").write_text("// package\n")
    (repo / "a.cu").write_text("// repo\n")
    (repo / "b.cu").write_text("// repo only\n")
    monkeypatch.setattr(loader, "PACKAGE_KERNELS", pkg)
    monkeypatch.setattr(loader, "REPO_KERNELS", repo)
    assert loader.kernel_path("a") == pkg / "a.cu"
    assert loader.kernel_path("b") == repo / "b.cu"
    monkeypatch.setattr(loader, "PACKAGE_KERNELS", tmp_path / "absent")
    assert loader.kernel_sources() == [repo / "a.cu", repo / "b.cu"]


def _can_build_wheels() -> str | None:
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed"
    major = int(setuptools.__version__.split(".")[0])
    if major < 64:
        return f"setuptools {setuptools.__version__} < 64"
    if major < 71 and importlib.util.find_spec("wheel") is None:
        return "the wheel package is not installed"
    return None


@pytest.mark.slow
def test_wheel_ships_the_kernel_sources(tmp_path):
    """A pure-Python wheel (PYCONVNET_SKIP_CUDA=1) carries kernels/*.cu as pyconvnet/_kernels/."""
    why = _can_build_wheels()
    if why:
        pytest.skip(why)
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build", ".*")
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "CMakeLists.txt"):
        shutil.copy(ROOT / name, src / name)
    for name in ("kernels", "bindings", "pyconvnet"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    env = dict(os.environ, PYCONVNET_SKIP_CUDA="1", PIP_NO_INDEX="1")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    skip_lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "CUDA extension skipped" in ln]
    assert len(skip_lines) == 1 and "PYCONVNET_SKIP_CUDA=1" in skip_lines[0], skip_lines
    (wheel,) = (tmp_path / "dist").glob("pyconvnet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for cu in sorted((ROOT / "kernels").glob("*.cu")):
        assert f"pyconvnet/_kernels/{cu.name}" in names
    assert "pyconvnet/cuda/ops/neuron.py" in names and "pyconvnet/_info.py" in names
    for cfg in sorted((ROOT / "pyconvnet" / "nets").glob("*.cfg")):  # the built-in nets
        assert f"pyconvnet/nets/{cfg.name}" in names
    (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "pyconvnet = pyconvnet.cli:main" in zipfile.ZipFile(wheel).read(ep).decode()
    assert not [n for n in names if n.startswith(("tests/", "kernels/", "bindings/")) or n.endswith(".so")]
