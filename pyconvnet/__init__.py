"""pyconvnet: cuda-convnet rebuilt for today's GPUs and Python 3.

    >>> import pyconvnet; print(pyconvnet.info())   # which backends are usable here, and why not

The ops are in ``pyconvnet.ops`` (NumPy reference) and ``pyconvnet.cuda.ops`` (CUDA kernels), behind
one interface (``pyconvnet.backend.get_backend``); ``pyconvnet train`` is the command line.
"""
__version__ = "0.1.0"


def info() -> str:
    """Which backends and tools are usable here, and why not (``pyconvnet._info.info``)."""
    from ._info import info as _info
    return _info()
