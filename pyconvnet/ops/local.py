"""Locally connected layers (unshared filters): the NumPy reference.

Like a convolution (cross-correlation, implicit zero padding, the same output size rule and groups,
see ``pyconvnet.ops.conv``), but every output position has its own filter bank.

Layouts (C-contiguous, batch innermost):

- images ``x``: (C, H, W, N); outputs ``y``: (K, OH, OW, N);
- filters ``w``: (OH*OW, C/groups, R, R, K), position q = oy*OW + ox first;
- biases ``b``: None or untied (K*OH*OW, 1) (row k*OH*OW + oy*OW + ox).

Method: per chunk of output positions, the windows are copied to a stack (positions, C/g*R*R, N) and
one batched matmul over positions does the work: y_q = w_q.T @ cols_q, dw_q = cols_q @ dy_q.T,
dcols_q = w_q @ dy_q followed by col2im. The tasks of ``pyconvnet.ops._parallel`` are (group, chunk)
pairs, each writing its own positions of y or dw, and for backward-data blocks of channels (each
adding into its own channels of dx); every matmul runs on one BLAS thread. float32 and float64;
outputs have the input dtype.
"""
from __future__ import annotations

import numpy as np

from pyconvnet.ops._parallel import per_worker, run_tasks, single_threaded_blas
from pyconvnet.ops.conv import (_buffer, _channel_blocks, _chunks, _col2im_add, _pad, _window_view,
                                check_bwd_data, check_bwd_filter, check_fwd)


def _local_cols(xp, c0, c1, R, stride, rect, buf):
    """The windows of channels [c0, c1) at the positions of ``rect`` as a contiguous stack
    (positions, (c1-c0)*R*R, N) in the front of ``buf``."""
    v = _window_view(xp, c0, c1, R, stride, *rect).transpose(3, 4, 0, 1, 2, 5)
    cols = buf[:v.size].reshape(v.shape)
    np.copyto(cols, v)
    npos = v.shape[0] * v.shape[1]
    return cols.reshape(npos, (c1 - c0) * R * R, xp.shape[3])


def _positions(rect, OW):
    oy0, oy1, ox0, ox1 = rect
    q0 = oy0 * OW + ox0
    return q0, q0 + (oy1 - oy0) * (ox1 - ox0)


def local_fwd(x, w, b=None, *, padding=0, stride=1, groups=1):
    """Locally connected forward: y (K, OH, OW, N) from x (C, H, W, N) and
    w (OH*OW, C/groups, R, R, K); b None or untied (K*OH*OW, 1). One float dtype throughout."""
    padding, stride, groups, R, (C, H, W, N), Cg, K, OH, OW, b = check_fwd(
        "local_fwd", x, w, b, padding, stride, groups, local=True)

    Kg, CRR = K // groups, Cg * R * R
    xp = _pad(x, padding, (OH - 1) * stride + R, (OW - 1) * stride + R)
    y = np.empty((K, OH, OW, N), dtype=x.dtype)
    y3 = y.reshape(K, OH * OW, N)
    w3 = w.reshape(OH * OW, CRR, K)
    rects = list(_chunks(OH, OW, CRR * N * x.itemsize))
    tasks = [(g, rect) for g in range(groups) for rect in rects]
    scratch = per_worker(len(tasks), lambda: _buffer(rects, CRR, N, x.dtype))

    def task(i, worker):
        g, rect = tasks[i]
        buf = scratch(worker)
        ks = slice(g * Kg, (g + 1) * Kg)
        q0, q1 = _positions(rect, OW)
        cols = _local_cols(xp, g * Cg, (g + 1) * Cg, R, stride, rect, buf)
        np.matmul(w3[q0:q1, :, ks].transpose(0, 2, 1), cols, out=y3[ks, q0:q1].transpose(1, 0, 2))

    with single_threaded_blas():
        run_tasks(task, len(tasks))
    if b is not None:
        y2 = y.reshape(K * OH * OW, N)
        y2 += b
    return y


def local_bwd_data(dy, w, img_size, *, padding=0, stride=1, groups=1):
    """Locally connected backward w.r.t. the images: dx (C, H, W, N) from dy (K, OH, OW, N) and
    w (OH*OW, C/groups, R, R, K); img_size = (H, W). dx has the dtype of dy and w."""
    padding, stride, groups, R, (H, W), N, Cg, K, OH, OW = check_bwd_data(
        "local_bwd_data", dy, w, img_size, padding, stride, groups, local=True)

    Kg, CRR = K // groups, Cg * R * R
    Hp, Wp = (OH - 1) * stride + R, (OW - 1) * stride + R
    dxp = np.zeros((Cg * groups, Hp, Wp, N), dtype=dy.dtype)
    dy3 = dy.reshape(K, OH * OW, N)
    w3 = w.reshape(OH * OW, CRR, K)
    rects = list(_chunks(OH, OW, CRR * N * dy.itemsize))
    tasks, cb = _channel_blocks(groups, Cg)
    scratch = per_worker(len(tasks), lambda: _buffer(rects, cb * R * R, N, dy.dtype))

    def task(i, worker):
        g, c0, c1 = tasks[i]
        buf = scratch(worker)
        ks = slice(g * Kg, (g + 1) * Kg)
        rows = slice(c0 * R * R, c1 * R * R)
        for rect in rects:
            oy0, oy1, ox0, ox1 = rect
            q0, q1 = _positions(rect, OW)
            dcols = buf[:(q1 - q0) * (c1 - c0) * R * R * N].reshape(q1 - q0, -1, N)
            np.matmul(w3[q0:q1, rows, ks], dy3[ks, q0:q1].transpose(1, 0, 2), out=dcols)
            d6 = dcols.reshape(oy1 - oy0, ox1 - ox0, c1 - c0, R, R, N).transpose(2, 3, 4, 0, 1, 5)
            _col2im_add(dxp, g * Cg + c0, g * Cg + c1, R, stride, rect, d6)

    with single_threaded_blas():
        run_tasks(task, len(tasks))
    if padding == 0 and Hp == H and Wp == W:
        return dxp
    return np.ascontiguousarray(dxp[:, padding:padding + H, padding:padding + W])


def local_bwd_filter(dy, x, filter_size, *, padding=0, stride=1, groups=1):
    """Locally connected backward w.r.t. the filters: dw (OH*OW, C/groups, R, R, K) from
    dy (K, OH, OW, N) and x (C, H, W, N), R = filter_size. dw has the dtype of dy and x."""
    op = "local_bwd_filter"
    padding, stride, groups, R, (C, H, W, N), K, OH, OW = check_bwd_filter(
        op, dy, x, filter_size, padding, stride, groups)

    Cg, Kg = C // groups, K // groups
    CRR = Cg * R * R
    xp = _pad(x, padding, (OH - 1) * stride + R, (OW - 1) * stride + R)
    dw = np.empty((OH * OW, Cg, R, R, K), dtype=x.dtype)
    dw3 = dw.reshape(OH * OW, CRR, K)
    dy3 = dy.reshape(K, OH * OW, N)
    rects = list(_chunks(OH, OW, CRR * N * x.itemsize))
    tasks = [(g, rect) for g in range(groups) for rect in rects]
    scratch = per_worker(len(tasks), lambda: _buffer(rects, CRR, N, x.dtype))

    def task(i, worker):
        g, rect = tasks[i]
        buf = scratch(worker)
        ks = slice(g * Kg, (g + 1) * Kg)
        q0, q1 = _positions(rect, OW)
        cols = _local_cols(xp, g * Cg, (g + 1) * Cg, R, stride, rect, buf)
        np.matmul(cols, dy3[ks, q0:q1].transpose(1, 2, 0), out=dw3[q0:q1, :, ks])

    with single_threaded_blas():
        run_tasks(task, len(tasks))
    return dw
