"""cuda-convnet's learning rule on the GPU: kernels/sgd.cu (fused, in place) through either launch path.

Same function, arguments and checks as the NumPy reference ``pyconvnet.ops.sgd``: ``sgd_update``
updates ``w`` and ``inc`` (C-contiguous float32/float64 CuPy arrays of one shape) in place in one pass
that reads w, inc and grad once and writes w and inc once, with every operation rounded to the dtype in
the reference's order (bit-identical results).
"""
from __future__ import annotations

from ...ops import sgd as ref
from ...ops._check import fail
from ..launch import Kernel, check_device_array, grid_stride_config, launch
from .elt import device_arrays_like, finite_numbers, ptr_span, spans_overlap

UPDATE = Kernel("sgd", "sgd_update", "ppplffffii")  # w, inc, grad, n_elems, eps, mom, wc, n, use_wc, use_n


def sgd_launch_config(n: int, itemsize: int = 4, limits=None) -> tuple[int, int]:
    """``(grid, block)`` for sgd_update on ``n`` elements of ``itemsize`` bytes: 16-byte packs (4 floats
    or 2 doubles) per thread and step, see ``grid_stride_config``."""
    return grid_stride_config(-(-n // (16 // itemsize)), block=256, limits=limits)


def sgd_update(w, inc, grad, *, eps, mom, wc, n=1):
    """Update ``w`` and ``inc`` in place: inc = mom*inc - eps*(grad/n + wc*w); w += inc. Returns None.

    eps, mom, wc: finite numbers >= 0; n: integer >= 1 (the number of cases grad is summed over).
    w and inc must not overlap in memory; grad may be either of them but not overlap them partly.
    """
    op = "sgd_update"
    if device_arrays_like((w, inc, grad), w) and finite_numbers((eps, mom, wc), lo=0.0) and type(n) is int \
            and n >= 1:
        eps, mom, wc = float(eps), float(mom), float(wc)
    else:
        for name, a in (("w", w), ("inc", inc), ("grad", grad)):
            check_device_array(op, name, a)
        eps, mom, wc, n = ref.check_sgd_update(w, inc, grad, eps, mom, wc, n)
    sw, si, sg = ptr_span(w), ptr_span(inc), ptr_span(grad)
    if spans_overlap(sw, si):
        fail(op, "w and inc must not overlap in memory")
    for name, s in (("w", sw), ("inc", si)):  # the very same memory is fine: read before written
        if spans_overlap(s, sg) and s != sg:
            fail(op, f"{name} and grad must not partly overlap in memory")
    if w.size:
        launch(UPDATE, w.dtype, *sgd_launch_config(w.size, w.itemsize), w, inc, grad, w.size, eps, mom, wc,
               float(w.dtype.type(n)) if n != 1 else 1.0, int(wc != 0.0), int(n != 1))
