"""Shared pytest fixtures and markers.

Tests marked ``gpu`` run only where a CUDA device is usable through CuPy; elsewhere they are skipped
with the reason. Tests that read the real data in ``../shared/data`` use the ``shared_data`` fixture,
which skips with a clear message where that folder is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PYCONVNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _gpu_reason():
    try:
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no CuPy, no driver, no device
        return f"no usable CUDA device ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None if n > 0 else "no CUDA device"


_GPU_SKIP = _gpu_reason()


def pytest_collection_modifyitems(config, items):
    if _GPU_SKIP is None:
        return
    skip = pytest.mark.skip(reason=_GPU_SKIP)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data():
    """Path of ../shared/data (real CIFAR-10 subset and cuda-convnet layer files), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set PYCONVNET_SHARED_DATA)")
    return SHARED_DATA
