"""Elementwise activations ("neurons") on the GPU: kernels/neuron.cu through either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.neuron`` (which defines
the math, in its docstring), on C-contiguous float32/float64 CuPy arrays of any shape, with one extra
keyword: ``out``, a C-contiguous CuPy array of the result's shape and dtype to write into (it may be
the input itself, for in-place use); by default a new array is returned.
"""
from __future__ import annotations

from ...ops._check import check_array, check_same_dtype
from ...ops.neuron import NEURONS, _params  # noqa: F401  (NEURONS: the same names as the reference)
from ..launch import Kernel, check_device_array, grid_stride_config, launch

# Must match enum NeuronKind in kernels/neuron.cu (tests/test_cuda_neuron.py checks it).
KINDS = {"ident": 0, "relu": 1, "logistic": 2, "tanh": 3, "brelu": 4, "softrelu": 5, "abs": 6,
         "square": 7, "sqrt": 8, "linear": 9}

FWD = Kernel("neuron", "neuron_fwd", "ppliff")  # x, y, n, kind, a, b
BWD = Kernel("neuron", "neuron_bwd", "ppppliff")  # dy, x, y, dx, n, kind, a, b


def neuron_launch_config(n: int, itemsize: int = 4, limits=None) -> tuple[int, int]:
    """``(grid, block)`` for neuron_fwd/neuron_bwd on ``n`` elements of ``itemsize`` bytes.

    Each thread takes 16 bytes per step (4 floats or 2 doubles); see ``grid_stride_config``.
    """
    return grid_stride_config(-(-n // (16 // itemsize)), block=256, limits=limits)


def _out(op: str, out, like, like_name: str):
    """``out`` checked against ``like``, or a new uninitialised array like it."""
    if out is None:
        import cupy
        return cupy.empty_like(like)
    check_device_array(op, "out", out)
    check_array(op, "out", out, shape=like.shape)
    check_same_dtype(op, **{"out": out, like_name: like})
    return out


def _ab(vals: tuple) -> tuple[float, float]:
    return (tuple(vals) + (0.0, 0.0))[:2]


def neuron_fwd(x, name: str, params=(), *, out=None):
    """Apply neuron ``name`` with ``params`` to the CuPy array ``x``; returns ``out`` or a new array."""
    op = "neuron_fwd"
    vals = _params(op, name, params)
    check_device_array(op, "x", x)
    check_array(op, "x", x)
    y = _out(op, out, x, "x")
    if x.size:
        a, b = _ab(vals)
        launch(FWD, x.dtype, *neuron_launch_config(x.size, x.itemsize), x, y, x.size, KINDS[name], a, b)
    return y


def neuron_bwd(dy, x, y, name: str, params=(), *, out=None):
    """Gradient wrt x of neuron ``name`` given dy, x and y (CuPy arrays of one shape and dtype)."""
    op = "neuron_bwd"
    vals = _params(op, name, params)
    for n, arr in (("dy", dy), ("x", x), ("y", y)):
        check_device_array(op, n, arr)
    check_array(op, "dy", dy)
    check_array(op, "x", x, shape=dy.shape)
    check_array(op, "y", y, shape=dy.shape)
    check_same_dtype(op, dy=dy, x=x, y=y)
    dx = _out(op, out, dy, "dy")
    if dy.size:
        a, b = _ab(vals)
        launch(BWD, dy.dtype, *neuron_launch_config(dy.size, dy.itemsize), dy, x, y, dx, dy.size,
               KINDS[name], a, b)
    return dx
