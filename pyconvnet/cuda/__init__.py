"""CUDA backend: the ops of ``pyconvnet.ops`` on CuPy arrays, running the kernels/*.cu sources.

``pyconvnet.cuda.ops.<family>`` has the same functions as ``pyconvnet.ops.<family>``. Launches go
through ``pyconvnet._cuda`` (nvcc-built, when installed with nvcc) or CuPy RawModule (NVRTC at run
time); ``launch`` says how the path is chosen and how to force one (``use_launch_path``,
``$PYCONVNET_LAUNCHER``). Importing this package does not import CuPy or touch a GPU.
"""
from .launch import PATHS, extension_status, launch_path, use_launch_path

__all__ = ["PATHS", "extension_status", "launch_path", "use_launch_path"]
