"""Convolution (cross-correlation, no filter flip): the NumPy reference.

Layouts (cuda-convnet's, C-contiguous, batch innermost):

- images ``x``: (C, H, W, N); outputs ``y``: (K, OH, OW, N);
- filters ``w``: (C/groups, R, R, K), K = all filters of all groups; group j reads channels
  [j*C/g, (j+1)*C/g) and owns filters [j*K/g, (j+1)*K/g);
- biases ``b``: (K, 1) shared over positions, or (K*OH*OW, 1) untied (row k*OH*OW + oy*OW + ox).

Output size per dimension: ``1 + ceil((2*padding + img - R) / stride)``. Taps outside the image read
zero: the implicit padding of ``padding`` on every side, and on the bottom/right as much more as the
last window needs when it overhangs the padded border.

Method: pad ``x`` once into ``xp`` (C, Hp, Wp, N). Because the batch is innermost, an im2col matrix
is a strided view of ``xp`` of shape (C, R, R, OH, OW, N) copied to (C*R*R, OH*OW*N), and then
``y = w2.T @ cols`` (w2 = w as (C*R*R, K)) is already in (K, OH, OW, N) order. The output positions
are processed in chunks of a few MiB so that each chunk of ``cols`` is still in cache when the
matmul reads it (the whole im2col matrix of a CIFAR layer is tens of MiB), and the chunks are the
tasks of ``pyconvnet.ops._parallel``: each thread copies a chunk's windows and runs its matmul on
one BLAS thread. Backward-filter is ``cols @ dy2.T`` summed over chunks (in chunk order, so the
result does not depend on the thread count). Backward-data with stride 1 (and enough channels) is
the forward convolution of ``dy`` with the flipped, transposed filters; otherwise it is
``w2 @ dy2`` followed by col2im, R*R strided slice-adds into a padded ``dx`` (its tasks are blocks
of channels). float32 and float64 are both supported; the output has the input dtype.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pyconvnet.ops._check import check_array, check_int, check_same_dtype, fail
from pyconvnet.ops._parallel import OrderedSum, blocks, per_worker, run_tasks, single_threaded_blas

# Bytes of one im2col chunk: large enough for efficient matmuls, small enough to stay in cache while
# its matmul reads it (here 1 MiB of L2 per core and a shared 32 MiB L3; the 18pct step times the same,
# within noise, for chunks of 1 to 4 MiB); one chunk per thread at a time.
CHUNK_BYTES = 2 << 20
# conv_bwd_data's col2im method splits each group's channels into this many blocks (its tasks).
BWD_DATA_BLOCKS = 4
# conv_bwd_data with stride 1 runs as a forward convolution from this many channels per group on.
TRANSPOSED_MIN_CHANNELS = 16


def _out_size(op: str, img: int, filter_size: int, padding: int, stride: int, what: str,
              ctx: str = "") -> int:
    span = 2 * padding + img - filter_size
    out = 1 + -(-span // stride)  # ceil division, also right for negative span
    if out < 1:
        fail(op, f"output {what} would be {out} < 1 (image {what} {img}, "
                 f"filter_size {filter_size}, padding {padding}, stride {stride}"
                 f"{'; ' + ctx if ctx else ''})")
    return out


def conv_out_size(img, filter_size, padding, stride) -> int:
    """Output positions along one dimension: 1 + ceil((2*padding + img - filter_size) / stride).

    All arguments are integers (img, filter_size, stride >= 1, padding >= 0); raises ValueError when
    the result would be smaller than 1.
    """
    op = "conv_out_size"
    img = check_int(op, "img", img, 1)
    filter_size = check_int(op, "filter_size", filter_size, 1)
    padding = check_int(op, "padding", padding, 0)
    stride = check_int(op, "stride", stride, 1)
    return _out_size(op, img, filter_size, padding, stride, "size")


def _geometry(op, padding, stride, groups, filter_size=None):
    padding = check_int(op, "padding", padding, 0)
    stride = check_int(op, "stride", stride, 1)
    groups = check_int(op, "groups", groups, 1)
    if filter_size is not None:
        filter_size = check_int(op, "filter_size", filter_size, 1)
    return padding, stride, groups, filter_size


def _img_size(op, img_size):
    if isinstance(img_size, (str, bytes)) or not hasattr(img_size, "__len__") or len(img_size) != 2:
        fail(op, f"img_size must be a pair (H, W), got {img_size!r}")
    return (check_int(op, "img_size[0]", img_size[0], 1),
            check_int(op, "img_size[1]", img_size[1], 1))


def _check_groups(op, C, K, Cg, groups, xname, x_shape, w_shape):
    if C % groups:
        fail(op, f"channels {C} of {xname} {x_shape} are not divisible by groups={groups}")
    if K % groups:
        fail(op, f"filters K={K} of w {w_shape} are not divisible by groups={groups}")
    if Cg * groups != C:
        fail(op, f"w {w_shape} has {Cg} channels per group, but {xname} {x_shape} with "
                 f"groups={groups} has {C // groups}")


def _check_filters(op, w, ndim):
    """Check the filter array's rank and square R x R taps; returns R."""
    check_array(op, "w", w, ndim)
    if w.shape[-2] != w.shape[-3]:
        fail(op, f"filters must be square, w has shape {w.shape}")
    return w.shape[-2]


def _check_out(op, dy, K, OH, OW, N, dy_shape_hint):
    want = (K, OH, OW, N)
    if dy.shape != want:
        fail(op, f"dy must have shape {want} {dy_shape_hint}, got {dy.shape}")


def _pad(x, padding, Hp, Wp):
    """x (C, H, W, N) -> (C, Hp, Wp, N) holding x at offset ``padding`` (negative: x is cropped)
    and zeros elsewhere. Returns x itself when nothing changes."""
    C, H, W, N = x.shape
    if padding == 0 and Hp == H and Wp == W:
        return x
    xp = np.empty((C, Hp, Wp, N), dtype=x.dtype)
    p = padding
    y0, y1 = max(p, 0), min(Hp, p + H)
    x0, x1 = max(p, 0), min(Wp, p + W)
    xp[:, :y0] = 0
    xp[:, y1:] = 0
    xp[:, y0:y1, :x0] = 0
    xp[:, y0:y1, x1:] = 0
    xp[:, y0:y1, x0:x1] = x[:, y0 - p:y1 - p, x0 - p:x1 - p]
    return xp


def _channel_blocks(groups, Cg):
    """The tasks of a col2im backward-data: the windows of neighbouring chunks overlap in dx, so each
    task is a block of channels [c0, c1) of group g, adding into its own channels of dx chunk after
    chunk as on one thread. Returns ([(g, c0, c1)], the largest block's channel count)."""
    tasks = [(g, c0, c1) for g in range(groups) for c0, c1 in blocks(Cg, -(-Cg // BWD_DATA_BLOCKS))]
    return tasks, tasks[0][2] - tasks[0][1]


def _chunks(OH, OW, pos_bytes, chunk_bytes=None):
    """Split the OH x OW output positions into rectangles (oy0, oy1, ox0, ox1) of about
    ``chunk_bytes`` of im2col each, either whole rows or a part of one row, in row-major order
    (so each rectangle's columns of the (K, OH*OW*N) output are one contiguous range)."""
    per = max(1, (chunk_bytes or CHUNK_BYTES) // max(pos_bytes, 1))
    if per >= OW:
        rows = per // OW
        for oy in range(0, OH, rows):
            yield oy, min(OH, oy + rows), 0, OW
    else:
        per = -(-OW // -(-OW // per))  # balance the pieces of a row
        for oy in range(OH):
            for ox in range(0, OW, per):
                yield oy, oy + 1, ox, min(OW, ox + per)


def _window_view(xp, c0, c1, R, stride, oy0, oy1, ox0, ox1):
    """Read-only view (Cg, R, R, oy1-oy0, ox1-ox0, N) of xp: [c, i, j, oy, ox, n] is
    xp[c0 + c, oy*stride + i, ox*stride + j, n] (oy, ox relative to oy0, ox0)."""
    sub = xp[c0:c1, oy0 * stride:, ox0 * stride:]
    sc, sh, sw, sn = sub.strides
    shape = (c1 - c0, R, R, oy1 - oy0, ox1 - ox0, xp.shape[3])
    return as_strided(sub, shape, (sc, sh, sw, sh * stride, sw * stride, sn), writeable=False)


def _im2col(xp, c0, c1, R, stride, rect, buf):
    """Copy the windows of channels [c0, c1) at the output rectangle ``rect`` into the front of
    ``buf`` (flat); returns it as the matrix ((c1-c0)*R*R, positions*N)."""
    oy0, oy1, ox0, ox1 = rect
    v = _window_view(xp, c0, c1, R, stride, oy0, oy1, ox0, ox1)
    cols = buf[:v.size].reshape(v.shape)
    np.copyto(cols, v)
    return cols.reshape((c1 - c0) * R * R, -1)


def _col2im_add(dxp, c0, c1, R, stride, rect, d6):
    """Add d6 (c1-c0, R, R, oy1-oy0, ox1-ox0, N), window taps of the output rectangle ``rect``,
    back into channels [c0, c1) of the padded dxp (the adjoint of ``_window_view``)."""
    oy0, oy1, ox0, ox1 = rect
    nr, nc = oy1 - oy0, ox1 - ox0
    for i in range(R):
        ys = slice(oy0 * stride + i, oy0 * stride + i + (nr - 1) * stride + 1, stride)
        for j in range(R):
            xs = slice(ox0 * stride + j, ox0 * stride + j + (nc - 1) * stride + 1, stride)
            dst = dxp[c0:c1, ys, xs]
            np.add(dst, d6[:, i, j], out=dst)


def _check_bias(op, b, K, OH, OW, shared_ok=True):
    """Shape of an already checked bias array: (K, 1) shared (if allowed) or (K*OH*OW, 1)."""
    if b is None:
        return None
    shapes = ([(K, 1)] if shared_ok else []) + [(K * OH * OW, 1)]
    if b.shape not in shapes:
        what = " or ".join(str(s) for s in shapes)
        fail(op, f"b must have shape {what} (K={K}, OH={OH}, OW={OW}), got {b.shape}")
    return b


def _buffer(rects, rows, N, dtype):
    """Scratch space for the largest chunk of an im2col matrix with ``rows`` rows."""
    return np.empty(max((r[1] - r[0]) * (r[3] - r[2]) for r in rects) * rows * N, dtype=dtype)


def _fwd_padded(xp, w, b, groups, stride, OH, OW):
    """y (K, OH, OW, N) = conv of the already padded xp (C, Hp, Wp, N), Hp >= (OH-1)*stride + R,
    with w (C/groups, R, R, K), plus b (None, (K, 1) or (K*OH*OW, 1)), chunk by chunk: every
    (group, chunk) is one task writing its own columns of y."""
    Cg, R, K = w.shape[0], w.shape[1], w.shape[3]
    N = xp.shape[3]
    Kg = K // groups
    y = np.empty((K, OH, OW, N), dtype=xp.dtype)
    y2 = y.reshape(K, OH * OW * N)
    w2 = w.reshape(Cg * R * R, K)
    b3 = None if b is None else b.reshape(K, -1, 1)  # (K, 1, 1) shared, (K, OH*OW, 1) untied
    rects = list(_chunks(OH, OW, Cg * R * R * N * xp.itemsize))
    tasks = [(g, rect) for g in range(groups) for rect in rects]
    scratch = per_worker(len(tasks), lambda: _buffer(rects, Cg * R * R, N, xp.dtype))

    def task(i, worker):
        g, rect = tasks[i]
        buf = scratch(worker)
        ks = slice(g * Kg, (g + 1) * Kg)
        oy0, oy1, ox0, ox1 = rect
        cols = _im2col(xp, g * Cg, (g + 1) * Cg, R, stride, rect, buf)
        q0, q1 = oy0 * OW + ox0, oy0 * OW + ox0 + (oy1 - oy0) * (ox1 - ox0)
        out = y2[ks, q0 * N:q1 * N]
        np.matmul(w2[:, ks].T, cols, out=out)
        if b3 is not None:  # add the bias while the chunk is in cache
            out3 = out.reshape(Kg, q1 - q0, N)
            out3 += b3[ks] if b3.shape[1] == 1 else b3[ks, q0:q1]

    with single_threaded_blas():
        run_tasks(task, len(tasks))
    return y


def conv_fwd(x, w, b=None, *, padding=0, stride=1, groups=1):
    """Convolution forward: y (K, OH, OW, N) from x (C, H, W, N) and w (C/groups, R, R, K).

    ``b`` is None, shared (K, 1) or untied (K*OH*OW, 1). All arrays share one float dtype (float32
    or float64) and are C-contiguous; y has that dtype.
    """
    padding, stride, groups, R, _, _, _, OH, OW, b = check_fwd("conv_fwd", x, w, b, padding, stride, groups)
    xp = _pad(x, padding, (OH - 1) * stride + R, (OW - 1) * stride + R)
    return _fwd_padded(xp, w, b, groups, stride, OH, OW)


def _flip_filters(w, groups):
    """Filters of the transposed convolution: w (C/g, R, R, K) -> wf (K/g, R, R, C) with
    wf[k, i, j, g*C/g + c] = w[c, R-1-i, R-1-j, g*K/g + k]."""
    Cg, R, K = w.shape[0], w.shape[1], w.shape[3]
    Kg = K // groups
    wf = np.empty((Kg, R, R, Cg * groups), dtype=w.dtype)
    for g in range(groups):
        wf[..., g * Cg:(g + 1) * Cg] = w[:, ::-1, ::-1, g * Kg:(g + 1) * Kg].transpose(3, 1, 2, 0)
    return wf


def conv_bwd_data(dy, w, img_size, *, padding=0, stride=1, groups=1):
    """Convolution backward w.r.t. the images: dx (C, H, W, N) from dy (K, OH, OW, N) and
    w (C/groups, R, R, K); img_size = (H, W). dx has the dtype of dy and w (which must agree).

    With stride 1 and at least ``TRANSPOSED_MIN_CHANNELS`` channels per group this is a forward
    convolution of dy (padded by R-1-padding) with the flipped, transposed filters (one matmul per
    chunk, no scatter); otherwise w2 @ dy2 followed by col2im (the better choice when the matmul
    would have few rows, as for 3 input channels, and the only one for stride > 1).
    """
    padding, stride, groups, R, (H, W), N, Cg, K, OH, OW = check_bwd_data(
        "conv_bwd_data", dy, w, img_size, padding, stride, groups)
    C = Cg * groups
    if stride == 1 and Cg >= TRANSPOSED_MIN_CHANNELS:
        dyp = _pad(dy, R - 1 - padding, H + R - 1, W + R - 1)
        return _fwd_padded(dyp, _flip_filters(w, groups), None, groups, 1, H, W)

    Hp, Wp = (OH - 1) * stride + R, (OW - 1) * stride + R
    dxp = np.zeros((C, Hp, Wp, N), dtype=dy.dtype)
    dy2 = dy.reshape(K, OH * OW * N)
    w2 = w.reshape(Cg * R * R, K)
    Kg = K // groups
    rects = list(_chunks(OH, OW, Cg * R * R * N * dy.itemsize))
    tasks, cb = _channel_blocks(groups, Cg)
    scratch = per_worker(len(tasks), lambda: _buffer(rects, cb * R * R, N, dy.dtype))

    def task(i, worker):
        g, c0, c1 = tasks[i]
        buf = scratch(worker)
        wg = w2[c0 * R * R:c1 * R * R, g * Kg:(g + 1) * Kg]
        for rect in rects:
            oy0, oy1, ox0, ox1 = rect
            q0 = (oy0 * OW + ox0) * N
            q1 = q0 + (oy1 - oy0) * (ox1 - ox0) * N
            dcols = buf[:(c1 - c0) * R * R * (q1 - q0)].reshape((c1 - c0) * R * R, q1 - q0)
            np.matmul(wg, dy2[g * Kg:(g + 1) * Kg, q0:q1], out=dcols)
            d6 = dcols.reshape(c1 - c0, R, R, oy1 - oy0, ox1 - ox0, N)
            _col2im_add(dxp, g * Cg + c0, g * Cg + c1, R, stride, rect, d6)

    with single_threaded_blas():
        run_tasks(task, len(tasks))
    if padding == 0 and Hp == H and Wp == W:
        return dxp
    return np.ascontiguousarray(dxp[:, padding:padding + H, padding:padding + W])


def _check_banks(op, w, OH, OW):
    """A local layer's w (OH*OW, C/groups, R, R, K) must hold one filter bank per output position."""
    if w.shape[0] != OH * OW:
        fail(op, f"w {w.shape} must have OH*OW = {OH}*{OW} = {OH * OW} filter banks in its first "
                 f"dimension")


def _filter_dims(op, w, local):
    """R, C/groups and K of w: (C/groups, R, R, K) for conv, (OH*OW, C/groups, R, R, K) for local."""
    R = _check_filters(op, w, 5 if local else 4)
    return R, w.shape[-4], w.shape[-1]


def check_fwd(op, x, w, b, padding, stride, groups, *, local=False, arrays=None):
    """The argument checks of a forward op (conv, or local with ``local=True``; both backends):
    returns padding, stride, groups, R, x.shape, C/groups, K, OH, OW and the checked b.
    ``arrays`` (the CUDA backend's device check) runs after the scalar arguments' checks."""
    padding, stride, groups, _ = _geometry(op, padding, stride, groups)
    if arrays is not None:
        arrays()
    check_array(op, "x", x, 4)
    R, Cg, K = _filter_dims(op, w, local)
    if b is not None:
        check_array(op, "b", b, 2)
    check_same_dtype(op, x=x, w=w, b=b)
    C, H, W, N = x.shape
    _check_groups(op, C, K, Cg, groups, "x", x.shape, w.shape)
    OH = _out_size(op, H, R, padding, stride, "height", f"x {x.shape}, w {w.shape}")
    OW = _out_size(op, W, R, padding, stride, "width", f"x {x.shape}, w {w.shape}")
    if local:
        _check_banks(op, w, OH, OW)
    b = _check_bias(op, b, K, OH, OW, shared_ok=not local)
    return padding, stride, groups, R, (C, H, W, N), Cg, K, OH, OW, b


def check_bwd_data(op, dy, w, img_size, padding, stride, groups, *, local=False, arrays=None):
    """The argument checks of a backward-data op (conv, or local with ``local=True``; both
    backends): returns padding, stride, groups, R, (H, W), N, C/groups, K, OH, OW. ``arrays`` as
    in `check_fwd`."""
    padding, stride, groups, _ = _geometry(op, padding, stride, groups)
    H, W = _img_size(op, img_size)
    if arrays is not None:
        arrays()
    check_array(op, "dy", dy, 4)
    R, Cg, K = _filter_dims(op, w, local)
    check_same_dtype(op, dy=dy, w=w)
    N = dy.shape[3]
    if K % groups:
        fail(op, f"filters K={K} of w {w.shape} are not divisible by groups={groups}")
    OH = _out_size(op, H, R, padding, stride, "height", f"img_size {(H, W)}, w {w.shape}")
    OW = _out_size(op, W, R, padding, stride, "width", f"img_size {(H, W)}, w {w.shape}")
    if local:
        _check_banks(op, w, OH, OW)
    _check_out(op, dy, K, OH, OW, N, f"for img_size {(H, W)}, w {w.shape}, padding {padding}, "
                                     f"stride {stride}")
    return padding, stride, groups, R, (H, W), N, Cg, K, OH, OW


def check_bwd_filter(op, dy, x, filter_size, padding, stride, groups, *, arrays=None):
    """The argument checks of a backward-filter op (conv and local, both backends): returns
    padding, stride, groups, R, x.shape, K, OH, OW. ``arrays`` as in `check_fwd`."""
    padding, stride, groups, R = _geometry(op, padding, stride, groups, filter_size)
    if arrays is not None:
        arrays()
    check_array(op, "dy", dy, 4)
    check_array(op, "x", x, 4)
    check_same_dtype(op, dy=dy, x=x)
    C, H, W, N = x.shape
    K = dy.shape[0]
    if C % groups:
        fail(op, f"channels {C} of x {x.shape} are not divisible by groups={groups}")
    if K % groups:
        fail(op, f"filters K={K} of dy {dy.shape} are not divisible by groups={groups}")
    OH = _out_size(op, H, R, padding, stride, "height", f"x {x.shape}, filter_size {R}")
    OW = _out_size(op, W, R, padding, stride, "width", f"x {x.shape}, filter_size {R}")
    _check_out(op, dy, K, OH, OW, N, f"for x {x.shape}, filter_size {R}, padding {padding}, "
                                     f"stride {stride}")
    return padding, stride, groups, R, (C, H, W, N), K, OH, OW


def conv_bwd_filter(dy, x, filter_size, *, padding=0, stride=1, groups=1):
    """Convolution backward w.r.t. the filters: dw (C/groups, R, R, K) from dy (K, OH, OW, N) and
    x (C, H, W, N), R = filter_size. dw has the dtype of dy and x (which must agree)."""
    op = "conv_bwd_filter"
    padding, stride, groups, R, (C, H, W, N), K, OH, OW = check_bwd_filter(
        op, dy, x, filter_size, padding, stride, groups)

    Cg, Kg = C // groups, K // groups
    xp = _pad(x, padding, (OH - 1) * stride + R, (OW - 1) * stride + R)
    dw = np.empty((Cg, R, R, K), dtype=x.dtype)
    dw2 = dw.reshape(Cg * R * R, K)
    dy2 = dy.reshape(K, OH * OW * N)
    rects = list(_chunks(OH, OW, Cg * R * R * N * x.itemsize))
    tasks = [(g, j, rect) for g in range(groups) for j, rect in enumerate(rects)]
    scratch = per_worker(len(tasks), lambda: _buffer(rects, Cg * R * R, N, x.dtype))
    total = OrderedSum(len(tasks))  # each group's partials added in chunk order

    def task(i, worker):
        g, j, rect = tasks[i]
        buf = scratch(worker)
        dwg = dw2[:, g * Kg:(g + 1) * Kg]
        cols = _im2col(xp, g * Cg, (g + 1) * Cg, R, stride, rect, buf)
        q0 = (rect[0] * OW + rect[2]) * N
        dyg = dy2[g * Kg:(g + 1) * Kg, q0:q0 + cols.shape[1]].T
        if j == 0:  # the first partial goes straight into dw (= 0 + partial)
            np.matmul(cols, dyg, out=dwg)
            total.add(i, None, None)
        else:
            total.add(i, dwg, np.matmul(cols, dyg))

    with single_threaded_blas():
        run_tasks(task, len(tasks))
    assert total.done()
    return dw


def bias_bwd(dy, shared):
    """Bias gradient. dy (K, OH, OW, N): shared -> (K, 1) summed over OH, OW and N; untied ->
    (K*OH*OW, 1) summed over N. dy (F, N) (fully connected) -> (F, 1) summed over N either way.
    The result has the dtype of dy."""
    op = "bias_bwd"
    check_array(op, "dy", dy)
    if dy.ndim not in (2, 4):
        fail(op, f"dy must be (F, N) or (K, OH, OW, N), got shape {dy.shape}")
    if not isinstance(shared, (bool, np.bool_)):
        fail(op, f"shared must be a bool, got {shared!r}")
    rows = dy.shape[0] if (shared and dy.ndim == 4) else dy.size // dy.shape[-1]
    return dy.reshape(rows, -1).sum(axis=1, keepdims=True, dtype=dy.dtype)
