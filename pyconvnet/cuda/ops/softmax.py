"""Softmax and the cost layers on the GPU: kernels/softmax.cu through either launch path.

Same functions, arguments and checks as the NumPy reference ``pyconvnet.ops.softmax`` (whose module
docstring defines the layout (F, N), the clipping at ``tiny`` and the top-k error counting with ties),
on C-contiguous float32/float64 CuPy arrays. Costs come back as host Python numbers: one kernel reduces
each block's cases, one copy brings the per-block partial results to the host, which adds them up in
float64. Extra keyword ``out`` on the functions that return an array: a C-contiguous CuPy array of the
result's shape and dtype to write into (it may be an input, for in-place use); by default a new array.

Labels are an (N,) CuPy array: int32, int64, float32 and float64 are read directly; any other integer
type is converted to int64 first. Their shape, type and contiguity are checked like the reference's.
Their values are checked where that costs no host synchronisation: ``logreg_cost`` (which syncs anyway)
raises the reference's ValueError for a label outside [0, F) or a non-integral float label;
``logreg_bwd`` and ``softmax_logreg_bwd`` do not wait for the device, and write NaN over the column of
a case whose label is invalid (never reading out of range).
"""
from __future__ import annotations

import numpy as np

from ...ops import softmax as ref
from ...ops._check import check_array, check_float, check_int, check_same_dtype, fail
from ..launch import Kernel, check_device_array, device_limits, grid_stride_config, launch
from .elt import device_arrays_like, finite_numbers
from .neuron import _out

FWD = Kernel("softmax", "softmax_fwd", "ppiii")             # x, y, F, N, cache_rows
BWD = Kernel("softmax", "softmax_bwd", "pppiii")            # dy, y, dx, F, N, cache_rows
FWD_PART = Kernel("softmax", "softmax_fwd_part", "ppiiiii")          # x, part, F, N, col0, ncols, rows
FWD_APPLY = Kernel("softmax", "softmax_fwd_apply", "pppiiiii")       # x, y, part, F, N, col0, ncols, rows
BWD_PART = Kernel("softmax", "softmax_bwd_part", "pppiiiii")         # dy, y, part, F, N, col0, ncols, rows
BWD_APPLY = Kernel("softmax", "softmax_bwd_apply", "ppppiiiii")      # dy, y, dx, part, F, N, col0, ncols, rows
COST = Kernel("softmax", "logreg_cost", "ppiiiip")          # probs, labels, kind, F, N, topk, partial
LOGREG_BWD = Kernel("softmax", "logreg_bwd", "ppipiif")     # probs, labels, kind, dprobs, F, N, coeff
SOFTMAX_LOGREG_BWD = Kernel("softmax", "softmax_logreg_bwd", "ppipiif")  # probs, labels, kind, dx, F, N, coeff
SUM2_COST = Kernel("softmax", "sum2_cost", "plp")           # x, n, partial
SUM2_BWD = Kernel("softmax", "sum2_bwd", "pplf")            # x, dx, n, coeff

# label_kind of kernels/softmax.cu (tests/test_cuda_softmax.py checks it against the kernel's switch).
LABEL_KINDS = {np.dtype(np.int32): 0, np.dtype(np.int64): 1, np.dtype(np.float32): 2, np.dtype(np.float64): 3}
_SMEM_OPTIN: dict = {}  # device id -> bytes of shared memory a block may opt into
_COLUMN_CONFIGS: dict = {}  # (F, N, itemsize, kind, device id) -> column_launch_config on that device
_PLANS: dict = {}  # (F, N, itemsize, kind, device id) -> softmax_plan on that device
_L2: dict = {}  # device id -> L2 cache bytes

# The split path (two kernels over row tiles) serves arrays whose inputs are too big for one launch of the
# column kernel to keep every row on chip; SMALL_BYTES and below always take the column kernel (one
# launch: at that size launch latency, not bandwidth, sets the time). Pass 2 re-reads the inputs, which
# should still be in L2: the columns are cut into waves whose inputs fill at most L2_FRACTION of L2.
SMALL_BYTES = 4 << 20
COLUMN_GRID_PER_SM = 2   # the column kernel also serves arrays it caches whole with this many blocks per SM
L2_FRACTION = 0.8
SPLIT_BLOCK = 256        # threads per split block: C = 32 columns (a 128-byte line of floats) x R rows
SPLIT_MAX = 32           # at most this many row tiles per column (pass 2 reads all their statistics)
SPLIT_BLOCKS_PER_SM = 8  # the split grid aims at this many blocks per multiprocessor per wave


def max_shared_bytes() -> int:
    """Dynamic shared memory one block may use on CuPy's current device (the opt-in maximum); cached."""
    import cupy

    rt = cupy.cuda.runtime
    dev = rt.getDevice()
    if dev not in _SMEM_OPTIN:
        _SMEM_OPTIN[dev] = int(rt.deviceGetAttribute(rt.cudaDevAttrMaxSharedMemoryPerBlockOptin, dev))
    return _SMEM_OPTIN[dev]


def _pow2_floor(v: int) -> int:
    return 1 << (max(1, v).bit_length() - 1)


def _pow2_ceil(v: int) -> int:
    return 1 << (max(1, v) - 1).bit_length()


def column_launch_config(F: int, N: int, itemsize: int, kind: str, limits=None, smem: int | None = None):
    """``(grid, block, shmem, cache_rows)`` for the column kernels on (F, N) arrays of ``itemsize``.

    kind: ``"fwd"`` (softmax_fwd), ``"bwd"`` (softmax_bwd) or ``"cost"`` (logreg_cost). A block owns C
    consecutive cases (8 = one 32-byte sector per row, fewer when N is too small to give every
    multiprocessor a block) times R row slices (a power of two, ~4 rows per thread, C*R <= 1024); the
    grid has a block per C cases. The softmax kernels keep the first ``cache_rows`` rows of their
    inputs in shared memory, as many as ``smem`` bytes (default: the device's opt-in maximum) allow.
    """
    if limits is None and smem is None:
        import cupy
        key = (F, N, itemsize, kind, cupy.cuda.runtime.getDevice())
        hit = _COLUMN_CONFIGS.get(key)
        if hit is None:
            hit = _COLUMN_CONFIGS[key] = column_launch_config(F, N, itemsize, kind, device_limits(),
                                                              max_shared_bytes())
        return hit
    lim = limits if limits is not None else device_limits()
    if smem is None:
        smem = max_shared_bytes()
    C = 8 if N >= 4 * lim.sm_count else min(8, _pow2_floor(N // lim.sm_count))
    C = min(C, _pow2_ceil(N))
    R = max(1, min(lim.max_block // C, _pow2_ceil(-(-F // 4))))
    grid = -(-N // C)
    if kind == "cost":
        return grid, (C, R), 32 * C + 4 * C * R, 0
    arrays = 1 if kind == "fwd" else 2
    scratch = (2 if kind == "fwd" else 1) * C * R * itemsize
    cache_rows = max(0, min(F, (smem - scratch) // (arrays * C * itemsize)))
    return grid, (C, R), scratch + cache_rows * arrays * C * itemsize, cache_rows


def l2_bytes() -> int:
    """L2 cache bytes of CuPy's current device; cached."""
    import cupy

    rt = cupy.cuda.runtime
    dev = rt.getDevice()
    if dev not in _L2:
        _L2[dev] = int(rt.deviceGetAttribute(rt.cudaDevAttrL2CacheSize, dev))
    return _L2[dev]


def split_launch_config(F: int, N: int, itemsize: int, kind: str, limits=None, l2: int | None = None):
    """``(block, shmem, rows, splits, waves)`` for the split kernels (softmax_{fwd,bwd}_{part,apply}).

    kind ``"fwd"`` or ``"bwd"``. A block (C, R) covers a tile of C = 32 consecutive columns (fewer when N
    is smaller) by ``rows`` rows, R = 256 / C row slices; ``splits`` = S tiles per column (S <= 32), as
    many as bring each wave to ~8 blocks per multiprocessor while every thread keeps >= 8 rows. ``waves``
    is a tuple of column ranges (col0, ncols), each launched as pass 1 then pass 2 on a grid
    (ceil(ncols / C), S), so that one wave's inputs fill at most L2_FRACTION of the L2 (``l2`` bytes).
    """
    lim = limits if limits is not None else device_limits()
    if l2 is None:
        l2 = l2_bytes()
    arrays = 1 if kind == "fwd" else 2
    C = min(32, _pow2_ceil(N))
    R = max(1, min(SPLIT_BLOCK, lim.max_block) // C)
    nwaves = max(1, min(-(-N // C), -(-(arrays * F * N * itemsize) // max(1, int(l2 * L2_FRACTION)))))
    width = -(-(-(-N // nwaves)) // C) * C  # columns per wave, a multiple of C
    waves = tuple((c0, min(width, N - c0)) for c0 in range(0, N, width))
    groups = -(-width // C)
    S = -(-(SPLIT_BLOCKS_PER_SM * lim.sm_count) // groups)
    S = max(1, min(S, SPLIT_MAX, F // (8 * R)))
    rows = -(-F // S)
    S = -(-F // rows)  # no empty tile
    shmem = (2 if kind == "fwd" else 1) * C * R * itemsize
    return (C, R), shmem, rows, S, waves


def softmax_plan(F: int, N: int, itemsize: int, kind: str, limits=None, smem: int | None = None,
                 l2: int | None = None):
    """How softmax_fwd / softmax_bwd (``kind``) run on an (F, N) array: ``("column", config)`` with
    ``column_launch_config``'s tuple (one launch; when the inputs are at most SMALL_BYTES, or its
    shared-memory cache holds every row and the grid has >= 2 blocks per multiprocessor), else
    ``("split", config)`` with ``split_launch_config``'s tuple. Cached per device when ``limits``,
    ``smem`` and ``l2`` are all left out."""
    if limits is None and smem is None and l2 is None:
        import cupy
        key = (F, N, itemsize, kind, cupy.cuda.runtime.getDevice())
        hit = _PLANS.get(key)
        if hit is None:
            hit = _PLANS[key] = softmax_plan(F, N, itemsize, kind, device_limits(), max_shared_bytes(), l2_bytes())
        return hit
    lim = limits if limits is not None else device_limits()
    col = column_launch_config(F, N, itemsize, kind, lim, smem)
    arrays = 1 if kind == "fwd" else 2
    if arrays * F * N * itemsize <= SMALL_BYTES or (col[3] == F and col[0] >= COLUMN_GRID_PER_SM * lim.sm_count):
        return "column", col
    return "split", split_launch_config(F, N, itemsize, kind, lim, l2)


def elementwise_launch_config(n: int, itemsize: int, limits=None) -> tuple[int, int]:
    """``(grid, block)`` for logreg_bwd, softmax_logreg_bwd and sum2_bwd on ``n`` elements: 16-byte
    packs (4 floats or 2 doubles) per thread and step, see ``grid_stride_config``."""
    return grid_stride_config(-(-n // (16 // itemsize)), block=256, limits=limits)


def sum2_launch_config(n: int, itemsize: int, limits=None) -> tuple[int, int, int]:
    """``(grid, block, shmem)`` for sum2_cost: at most 4 blocks per multiprocessor (each block returns
    one partial sum), blockDim.x doubles of shared memory for the block's tree."""
    grid, block = grid_stride_config(-(-n // (16 // itemsize)), block=256, blocks_per_sm=4, limits=limits)
    return grid, block, 8 * block


def _labels(op: str, labels, probs):
    """(labels as a kind the kernels read, its label_kind), after the reference's host-side checks."""
    f, n = probs.shape
    kind = LABEL_KINDS.get(getattr(labels, "dtype", None))
    if kind is not None and type(labels) is type(probs) and labels.shape == (n,) and labels.flags.c_contiguous:
        return labels, kind  # the common case (probs already passed as a CuPy array)
    check_device_array(op, "labels", labels)
    if not hasattr(labels, "dtype") or not hasattr(labels, "shape"):
        fail(op, f"labels must be an array, got {type(labels).__name__}")
    if labels.shape != (n,):
        fail(op, f"labels must have shape ({n},) to match probs {tuple(probs.shape)}, got {tuple(labels.shape)}")
    if not labels.flags.c_contiguous:
        fail(op, f"labels must be C-contiguous, got strides {labels.strides}")
    if labels.dtype.kind not in "iuf" or labels.dtype.itemsize > 8:
        fail(op, f"labels must be integers (or integral floats), got {labels.dtype}")
    kind = LABEL_KINDS.get(np.dtype(labels.dtype))
    if kind is None:  # float16 to float32 (exact); int8/16, uint8/16/32/64 to int64 (uint64 beyond
        wide = np.float32 if labels.dtype.kind == "f" else np.int64  # 2**63 wraps negative: invalid)
        labels = labels.astype(wide)
        kind = LABEL_KINDS[np.dtype(wide)]
    return labels, kind


def _result(op: str, out, like, name: str):
    """``out`` (checked) or a new array like ``like``."""
    if out is not None and device_arrays_like((out,), like):
        return out
    return _out(op, out, like, name)


def _probs(op: str, name: str, probs):
    if not (device_arrays_like((probs,), probs) and probs.ndim == 2):
        check_device_array(op, name, probs)
        check_array(op, name, probs, ndim=2)
    f, n = probs.shape
    if f >= 2**31 or n >= 2**31:
        fail(op, f"{name} must have fewer than 2**31 rows and columns, got shape {tuple(probs.shape)}")
    return f, n


def softmax_fwd(x, *, out=None):
    """y[:, n] = exp(x[:, n] - max x[:, n]) / sum(...) for x (F, N); returns y (F, N) like x."""
    op = "softmax_fwd"
    F, N = _probs(op, "x", x)
    if F == 0:
        fail(op, f"x must have at least one row (class), got shape {tuple(x.shape)}")
    y = _result(op, out, x, "x")
    if N:
        how, cfg = softmax_plan(F, N, x.itemsize, "fwd")
        if how == "column":
            grid, block, shmem, cache = cfg
            launch(FWD, x.dtype, grid, block, x, y, F, N, cache, shmem=shmem)
        else:
            import cupy

            block, shmem, rows, S, waves = cfg
            part = cupy.empty((2 * S, N), x.dtype)
            for col0, ncols in waves:
                grid = (-(-ncols // block[0]), S)
                launch(FWD_PART, x.dtype, grid, block, x, part, F, N, col0, ncols, rows, shmem=shmem)
                launch(FWD_APPLY, x.dtype, grid, block, x, y, part, F, N, col0, ncols, rows, shmem=shmem)
    return y


def softmax_bwd(dy, y, *, out=None):
    """dx = y * (dy - sum_f(dy * y)) for dy, y (F, N) (softmax output y); returns dx (F, N)."""
    op = "softmax_bwd"
    F, N = _probs(op, "dy", dy)
    if not device_arrays_like((y,), dy):
        check_device_array(op, "y", y)
        check_array(op, "y", y, shape=dy.shape)
        check_same_dtype(op, dy=dy, y=y)
    dx = _result(op, out, dy, "dy")
    if F and N:
        how, cfg = softmax_plan(F, N, dy.itemsize, "bwd")
        if how == "column":
            grid, block, shmem, cache = cfg
            launch(BWD, dy.dtype, grid, block, dy, y, dx, F, N, cache, shmem=shmem)
        else:
            import cupy

            block, shmem, rows, S, waves = cfg
            part = cupy.empty((S, N), dy.dtype)
            for col0, ncols in waves:
                grid = (-(-ncols // block[0]), S)
                launch(BWD_PART, dy.dtype, grid, block, dy, y, part, F, N, col0, ncols, rows, shmem=shmem)
                launch(BWD_APPLY, dy.dtype, grid, block, dy, y, dx, part, F, N, col0, ncols, rows, shmem=shmem)
    return dx


def logreg_cost(probs, labels, *, topk=1, device=False):
    """(cost, nerr, nerr_topk) for probs (F, N) and labels (N,): a float and two ints on the host.

    As the reference: cost = sum_n -log(max(probs[label_n, n], tiny)), nerr / nerr_topk = cases wrong
    at top-1 / top-k (ties count as wrong); 1 <= topk <= F. Invalid label values raise ValueError.
    ``device=True``: a float64 CuPy array [cost, nerr, nerr_topk, invalid labels], with no host
    synchronisation (capturable in a CUDA graph) and no label check (the caller looks at entry 3).
    Both forms reduce the blocks' partial sums on the device in the same order: equal results.
    """
    op = "logreg_cost"
    F, N = _probs(op, "probs", probs)
    lab, kind = _labels(op, labels, probs)
    topk = check_int(op, "topk", topk, lo=1)
    if topk > F:
        fail(op, f"topk must be <= the number of classes {F}, got {topk}")
    import cupy

    if N == 0:
        return cupy.zeros(4, np.float64) if device else (0.0, 0, 0)
    grid, block, shmem, _ = column_launch_config(F, N, probs.itemsize, "cost")
    partial = cupy.empty((grid, 4), np.float64)
    launch(COST, probs.dtype, grid, block, probs, lab, kind, F, N, topk, partial, shmem=shmem)
    total = partial.sum(axis=0)
    total[0] = 0.0 - total[0]  # the cost (0.0, not -0.0)
    if device:
        return total
    total = total.get()
    if total[3]:  # invalid labels: the reference's check on a host copy gives its exact message
        ref._check_labels(op, labels.get(), probs)
        fail(op, f"labels must be integral values in [0, {F})")  # not reached
    return float(total[0]), int(total[1]), int(total[2])


def _cost_grad(op: str, kernel: Kernel, probs, labels, coeff, out):
    F, N = _probs(op, "probs", probs)
    lab, kind = _labels(op, labels, probs)
    if not finite_numbers((coeff,)):
        coeff = check_float(op, "coeff", coeff)
    d = _result(op, out, probs, "probs")
    if probs.size:
        launch(kernel, probs.dtype, *elementwise_launch_config(probs.size, probs.itemsize), probs, lab, kind, d,
               F, N, coeff)
    return d


def logreg_bwd(probs, labels, *, coeff=1.0, out=None):
    """d cost / d probs for cost = coeff * sum -log p[label]: -coeff / max(p, tiny) at the label, 0
    elsewhere; probs (F, N), labels (N,); returns (F, N) like probs (NaN columns for invalid labels)."""
    return _cost_grad("logreg_bwd", LOGREG_BWD, probs, labels, coeff, out)


def softmax_logreg_bwd(probs, labels, *, coeff=1.0, out=None):
    """Gradient wrt the softmax input of coeff * sum -log softmax(x)[label], given the softmax output
    probs (F, N): coeff * (probs - onehot(labels)) (NaN columns for invalid labels)."""
    return _cost_grad("softmax_logreg_bwd", SOFTMAX_LOGREG_BWD, probs, labels, coeff, out)


def sum2_cost(x, *, device=False):
    """0.5 * sum(x**2) over all elements of x (any shape), summed in float64; a host Python float
    (``device=True``: a float64 CuPy array (1,), no host synchronisation; the same value)."""
    op = "sum2_cost"
    check_device_array(op, "x", x)
    check_array(op, "x", x)
    import cupy

    if x.size == 0:
        return cupy.zeros(1, np.float64) if device else 0.0
    grid, block, shmem = sum2_launch_config(x.size, x.itemsize)
    partial = cupy.empty(grid, np.float64)
    launch(SUM2_COST, x.dtype, grid, block, x, x.size, partial, shmem=shmem)
    v = 0.5 * partial.sum(keepdims=True)
    return v if device else float(v.get()[0])


def sum2_bwd(x, *, coeff=1.0, out=None):
    """coeff * x: the gradient of coeff * sum2_cost(x); same shape and dtype as x."""
    op = "sum2_bwd"
    if not device_arrays_like((x,), x):
        check_device_array(op, "x", x)
        check_array(op, "x", x)
    if not finite_numbers((coeff,)):
        coeff = check_float(op, "coeff", coeff)
    dx = _result(op, out, x, "x")
    if x.size:
        launch(SUM2_BWD, x.dtype, *elementwise_launch_config(x.size, x.itemsize), x, dx, x.size, coeff)
    return dx
