"""Ops over several inputs on the GPU: weighted sum and elementwise max (kernels/elt.cu, either launch
path) and concatenation along axis 0 (one device-to-device copy per input, no kernel of ours).

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.elt`` (whose module
docstring gives the shapes), on C-contiguous float32/float64 CuPy arrays; eltsum and eltmax match it bit
for bit. Extra keyword ``out``: where a function returns an array, a C-contiguous CuPy array of the
result's shape and dtype to write into; where it returns a list, a list of such arrays, one per result.
An ``out`` array may be one of the inputs (e.g. ``eltsum_fwd([a, b], c, out=a)`` adds in place): inputs
that a later launch would read after it was overwritten are copied first. Results never overlap each
other. A launch takes up to 4 inputs; more take several launches that continue the accumulation in order.

The argument checks cost little in the common case: ``device_arrays_like`` and ``finite_numbers`` (also
used by the dropout, softmax and sgd wrappers) accept well-formed arguments in a few attribute reads, and
anything else goes through the reference's checks, which raise its exact messages.
"""
from __future__ import annotations

import math
import sys

from ...ops import elt as ref
from ...ops._check import FLOAT_DTYPES, check_array, check_same_dtype, fail
from ..launch import Kernel, check_device_array, grid_stride_config, launch
from .neuron import _out

MAXK = 4  # inputs (or outputs) per launch: ELT_MAXK in kernels/elt.cu
SUM_FWD = Kernel("elt", "eltsum_fwd", "p" * MAXK + "f" * MAXK + "plii")    # xs, coeffs, y, n, k, acc
SUM_BWD = Kernel("elt", "eltsum_bwd", "p" + "p" * MAXK + "f" * MAXK + "li")  # dy, dxs, coeffs, n, k
MAX_FWD = Kernel("elt", "eltmax_fwd", "p" * MAXK + "plii")                  # xs, y, n, k, acc
MAX_BWD = Kernel("elt", "eltmax_bwd", "pp" + "p" * MAXK + "p" * MAXK + "li")  # dy, y, xs, dxs, n, k


def device_arrays_like(arrays, like) -> bool:
    """True when every one of ``arrays`` is a CuPy ndarray (that very type), C-contiguous, with the shape
    and float dtype of ``like``: the fast acceptance test; False sends the caller to the full checks."""
    nd = getattr(sys.modules.get("cupy"), "ndarray", None)
    try:
        shape, dt = like.shape, like.dtype
        if nd is None or dt not in FLOAT_DTYPES:
            return False
        for a in arrays:
            if type(a) is not nd or a.shape != shape or a.dtype != dt or not a.flags.c_contiguous:
                return False
    except AttributeError:
        return False
    return True


def finite_numbers(values, lo: float | None = None) -> bool:
    """True when every value is a finite Python float or int (not bool), >= ``lo`` when given."""
    for v in values:
        t = type(v)
        if (t is not float and t is not int) or not math.isfinite(v) or (lo is not None and v < lo):
            return False
    return True


def ptr_span(a) -> tuple[int, int]:
    """[start, end) device addresses of a contiguous CuPy array."""
    p = a.data.ptr
    return p, p + a.nbytes


def spans_overlap(s, t) -> bool:
    """Do two [start, end) spans share a byte (empty spans share none)?"""
    return s[0] < s[1] and t[0] < t[1] and s[0] < t[1] and t[0] < s[1]


def elt_launch_config(n: int, itemsize: int = 4, limits=None) -> tuple[int, int]:
    """``(grid, block)`` for the elt kernels on ``n`` elements of ``itemsize`` bytes: 16-byte packs
    (4 floats or 2 doubles) per thread and step, see ``grid_stride_config``."""
    return grid_stride_config(-(-n // (16 // itemsize)), block=256, limits=limits)


def _chunks(k: int):
    """(start, stop) of each launch's inputs: [0, 4), [4, 8), ..."""
    return [(a, min(a + MAXK, k)) for a in range(0, k, MAXK)]


def _pad(items: list, fill) -> list:
    return list(items) + [fill] * (MAXK - len(items))


def _unalias(inputs: list, outputs: list) -> list:
    """``inputs`` [(array, last launch reading it)], ``outputs`` [(array, first launch writing it)]: the
    input arrays, each copied when an output overlaps it unless the output is the very same memory and
    is first written no earlier than the input's last read (elementwise kernels read an element before
    writing it in the same thread, and launches run in stream order)."""
    outs = [(ptr_span(o), w) for o, w in outputs]
    arrays = []
    for a, last_read in inputs:
        s = ptr_span(a)
        if any(spans_overlap(s, t) and not (s == t and last_read <= w) for t, w in outs):
            a = a.copy()
        arrays.append(a)
    return arrays


def _result(op: str, out, like, name: str):
    """``out`` (checked) or a new array like ``like``."""
    if out is not None and device_arrays_like((out,), like):
        return out
    return _out(op, out, like, name)


def _outs(op: str, out, like, name: str, k: int) -> list:
    """``out`` checked as a list of ``k`` arrays like ``like`` that do not overlap, or k new arrays."""
    if out is None:
        return [_out(op, None, like, name) for _ in range(k)]
    if not isinstance(out, (list, tuple)) or len(out) != k:
        fail(op, f"out must be a list of {k} arrays, got {type(out).__name__}"
                 + (f" of length {len(out)}" if isinstance(out, (list, tuple)) else ""))
    outs = list(out) if device_arrays_like(out, like) else [_out(op, o, like, name) for o in out]
    spans = [ptr_span(o) for o in outs]
    for i in range(k):
        for j in range(i):
            if spans_overlap(spans[i], spans[j]):
                fail(op, f"out[{j}] and out[{i}] overlap in memory")
    return outs


def _inputs(op: str, xs):
    """xs as a list, after the reference's checks (or the fast test that they would pass)."""
    if isinstance(xs, (list, tuple)) and xs and device_arrays_like(xs, xs[0]):
        return list(xs)
    ref._check_list(op, xs, True)
    for i, x in enumerate(xs):
        check_device_array(op, f"xs[{i}]", x)
    return list(xs)


def _coeffs(op: str, coeffs, n: int | None) -> list:
    if isinstance(coeffs, (list, tuple)) and (len(coeffs) == n if n is not None else coeffs) and \
            finite_numbers(coeffs):
        return [float(c) for c in coeffs]
    return ref._check_coeffs(op, coeffs, n)


def eltsum_fwd(xs, coeffs, *, out=None):
    """y = sum_i coeffs[i] * xs[i], accumulated in input order in the inputs' dtype; y like xs[0]."""
    op = "eltsum_fwd"
    xs = _inputs(op, xs)
    cs = _coeffs(op, coeffs, len(xs))
    y = _result(op, out, xs[0], "xs[0]")
    n = y.size
    if n == 0:
        return y
    chunks = _chunks(len(xs))
    if out is not None:
        xs = _unalias([(x, i // MAXK) for i, x in enumerate(xs)], [(y, 0)])  # y: written by every launch
    cfg = elt_launch_config(n, y.itemsize)
    for c, (a, b) in enumerate(chunks):
        launch(SUM_FWD, y.dtype, *cfg, *_pad(xs[a:b], xs[a]), *_pad(cs[a:b], 0.0), y, n, b - a, int(c > 0))
    return y


def eltsum_bwd(dy, coeffs, *, out=None):
    """[coeffs[i] * dy for each input]: a list of arrays shaped like dy."""
    op = "eltsum_bwd"
    if not device_arrays_like((dy,), dy):
        check_device_array(op, "dy", dy)
        check_array(op, "dy", dy)
    cs = _coeffs(op, coeffs, None)
    dxs = _outs(op, out, dy, "dy", len(cs))
    if dy.size == 0:
        return dxs
    chunks = _chunks(len(cs))
    if out is not None:
        (dy,) = _unalias([(dy, len(chunks) - 1)], [(o, i // MAXK) for i, o in enumerate(dxs)])
    cfg = elt_launch_config(dy.size, dy.itemsize)
    for a, b in chunks:
        launch(SUM_BWD, dy.dtype, *cfg, dy, *_pad(dxs[a:b], dxs[a]), *_pad(cs[a:b], 0.0), dy.size, b - a)
    return dxs


def eltmax_fwd(xs, *, out=None):
    """y = elementwise max over the inputs (NaN propagates, as NumPy's maximum); y like xs[0]."""
    op = "eltmax_fwd"
    xs = _inputs(op, xs)
    y = _result(op, out, xs[0], "xs[0]")
    n = y.size
    if n == 0:
        return y
    chunks = _chunks(len(xs))
    if out is not None:
        xs = _unalias([(x, i // MAXK) for i, x in enumerate(xs)], [(y, 0)])
    cfg = elt_launch_config(n, y.itemsize)
    for c, (a, b) in enumerate(chunks):
        launch(MAX_FWD, y.dtype, *cfg, *_pad(xs[a:b], xs[a]), y, n, b - a, int(c > 0))
    return y


def eltmax_bwd(dy, xs, y, *, out=None):
    """[dy * (xs[i] == y) for each input]: every input equal to the max gets the gradient (ties all
    receive it); a list of arrays shaped like dy."""
    op = "eltmax_bwd"
    xs = _inputs(op, xs)
    if not device_arrays_like((dy, y), xs[0]):
        check_device_array(op, "dy", dy)
        check_device_array(op, "y", y)
        check_array(op, "dy", dy, shape=xs[0].shape)
        check_array(op, "y", y, shape=xs[0].shape)
        check_same_dtype(op, dy=dy, y=y, xs=xs[0])
    dxs = _outs(op, out, dy, "dy", len(xs))
    if dy.size == 0:
        return dxs
    chunks = _chunks(len(xs))
    if out is not None:
        last = len(chunks) - 1
        writes = [(o, i // MAXK) for i, o in enumerate(dxs)]
        dy, y, *xs = _unalias([(dy, last), (y, last)] + [(x, i // MAXK) for i, x in enumerate(xs)], writes)
    cfg = elt_launch_config(dy.size, dy.itemsize)
    for a, b in chunks:
        launch(MAX_BWD, dy.dtype, *cfg, dy, y, *_pad(xs[a:b], xs[a]), *_pad(dxs[a:b], dxs[a]), dy.size, b - a)
    return dxs


def _copy(dst, src) -> None:
    """Device-to-device copy of all of ``src`` into the start of ``dst`` (contiguous), on the current stream."""
    if src.nbytes and dst.data.ptr != src.data.ptr:
        dst.data.copy_from_device_async(src.data, src.nbytes)


def concat_fwd(xs, *, out=None):
    """Concatenate xs along axis 0 (see the module docstring for shapes); a new array unless ``out``.

    An input that already sits at its place in ``out`` (a view of it) is not copied; any other overlap
    between ``out`` and an input is an error.
    """
    op = "concat_fwd"
    ref._check_list(op, xs, False)
    for i, x in enumerate(xs):
        check_device_array(op, f"xs[{i}]", x)
    rest = xs[0].shape[1:]
    if xs[0].ndim < 2:
        fail(op, f"inputs must be (F, N) or (C, H, W, N), got xs[0] of shape {tuple(xs[0].shape)}")
    for i, x in enumerate(xs):
        if x.ndim != xs[0].ndim or x.shape[1:] != rest:
            fail(op, f"xs[{i}] has shape {tuple(x.shape)}; all inputs must match xs[0] "
                     f"{tuple(xs[0].shape)} in every dimension but the first")
    rows = sum(x.shape[0] for x in xs)
    if out is None:
        import cupy
        y = cupy.empty((rows,) + tuple(rest), xs[0].dtype)
    else:
        check_device_array(op, "out", out)
        check_array(op, "out", out, shape=(rows,) + tuple(rest))
        check_same_dtype(op, out=out, xs=xs[0])
        y = out
    a = 0
    for i, x in enumerate(xs):
        dst = y[a:a + x.shape[0]]
        if spans_overlap(ptr_span(y), ptr_span(x)) and ptr_span(dst) != ptr_span(x):
            fail(op, f"out overlaps xs[{i}] without being its place in the result")
        _copy(dst, x)
        a += x.shape[0]
    return y


def concat_bwd(dy, sizes, *, out=None):
    """Split dy along axis 0 into pieces of sizes[i] rows (channels); a list of new contiguous arrays
    (or ``out``), the inverse of concat_fwd. sum(sizes) must equal dy.shape[0]."""
    op = "concat_bwd"
    check_device_array(op, "dy", dy)
    sizes = ref.check_concat_bwd(dy, sizes)
    pieces, a = [], 0
    for s in sizes:
        pieces.append(dy[a:a + s])
        a += s
    if out is None:
        import cupy
        outs = [cupy.empty(p.shape, dy.dtype) for p in pieces]
    else:
        if not isinstance(out, (list, tuple)) or len(out) != len(sizes):
            fail(op, f"out must be a list of {len(sizes)} arrays, got {type(out).__name__}"
                     + (f" of length {len(out)}" if isinstance(out, (list, tuple)) else ""))
        outs = []
        for i, (o, p) in enumerate(zip(out, pieces)):
            check_device_array(op, f"out[{i}]", o)
            check_array(op, f"out[{i}]", o, shape=p.shape)
            check_same_dtype(op, **{f"out[{i}]": o, "dy": dy})
            if spans_overlap(ptr_span(o), ptr_span(dy)) and ptr_span(o) != ptr_span(p):
                fail(op, f"out[{i}] overlaps dy without being its piece")
            outs.append(o)
    for o, p in zip(outs, pieces):
        _copy(o, p)
    return outs
