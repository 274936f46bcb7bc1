"""A built-in CIFAR-shaped data set generated from a seed, so training works offline with no data.

Ten classes of 3 x 32 x 32 uint8 images, each a pattern drawn over a random background:

====  ==============================  ====  ==============================
0     stripes at 0 degrees            5     concentric rings
1     stripes at 45 degrees           6     filled disc
2     stripes at 90 degrees           7     ring outline (annulus)
3     stripes at 135 degrees          8     plus sign
4     checkerboard                    9     square outline
====  ==============================  ====  ==============================

Everything else is random per image: the pattern's centre, size, stripe period and phase, a few
degrees of rotation, foreground and background colours (either may be the brighter one), a colour
gradient over the background, one or two distractor rectangles and pixel noise. Colour and position
therefore carry no class information: class-mean templates on raw pixels are nearly flat, so a
linear classifier on pixels does poorly, while a small convnet (oriented filters, pooling) learns
the classes well.

The set is split into numbered batches of ``batch_size`` cases (default 1000) like CIFAR: batch k is
generated from ``SeedSequence([seed, k])`` and holds every class equally often (batch_size // 10
each, the remainder spread over the first classes). The usual ranges ``1-5`` / ``6`` give 5,000
training and 1,000 test cases; generating them takes well under a second.
"""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
LABEL_NAMES = ["stripes-0", "stripes-45", "stripes-90", "stripes-135", "checker",
               "rings", "disc", "annulus", "plus", "square"]


def _soft(d):
    """Anti-aliased step: 1 where d >> 0, 0 where d << 0, linear over one pixel."""
    return np.clip(d + 0.5, 0.0, 1.0)


def _pattern(cls: int, u, v, R, period, phase):
    """Coverage (0..1) of class ``cls``'s pattern at coordinates (u, v) (rotated, centred).

    u, v: (m, S, S) float32; R, period, phase: (m, 1, 1).
    """
    r = np.sqrt(u * u + v * v)
    k = 2 * np.pi / period
    inside = _soft(R - r)
    if cls < 4:
        a = np.deg2rad(45.0 * cls)
        t = u * np.cos(a) + v * np.sin(a)
        return inside * _soft(3.0 * np.sin(k * t + phase))
    if cls == 4:
        return inside * _soft(3.0 * np.sin(k * u + phase) * np.sin(k * v + phase))
    if cls == 5:
        return inside * _soft(3.0 * np.sin(k * r + phase))
    if cls == 6:
        return inside
    if cls == 7:
        return _soft(0.18 * R - np.abs(r - 0.7 * R))
    cheb = np.maximum(np.abs(u), np.abs(v))
    if cls == 8:
        arm = _soft(0.22 * R - np.minimum(np.abs(u), np.abs(v)))
        return arm * _soft(R - cheb)
    return _soft(0.16 * R - np.abs(cheb - 0.7 * R))


def make_synthetic_batch(k: int, batch_size: int = 1000, seed: int = 0, size: int = 32):
    """Batch ``k`` of the synthetic set: (images uint8 (batch_size, 3, size, size), labels int64).

    A pure function of (k, batch_size, seed, size).
    """
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, k])))
    n = batch_size
    labels = g.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    f32 = np.float32
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(f32) - f32(c)
    # pattern geometry
    cy = g.uniform(-0.2, 0.2, (n, 1, 1)).astype(f32) * size
    cx = g.uniform(-0.2, 0.2, (n, 1, 1)).astype(f32) * size
    R = g.uniform(0.25, 0.42, (n, 1, 1)).astype(f32) * size
    rot = np.deg2rad(g.uniform(-12, 12, (n, 1, 1))).astype(f32)
    period = g.uniform(4.0, 7.0, (n, 1, 1)).astype(f32)
    phase = g.uniform(0, 2 * np.pi, (n, 1, 1)).astype(f32)
    du, dv = xx - cx, yy - cy
    u = du * np.cos(rot) + dv * np.sin(rot)
    v = -du * np.sin(rot) + dv * np.cos(rot)
    cover = np.empty((n, size, size), f32)
    for cls in range(NUM_CLASSES):
        sel = labels == cls
        cover[sel] = _pattern(cls, u[sel], v[sel], R[sel], period[sel], phase[sel])
    # colours: background with a linear gradient; foreground differs in brightness by 70..150
    bg = g.uniform(30, 225, (n, 3, 1, 1)).astype(f32)
    grad = g.normal(0, 1.5, (n, 3, 2, 1, 1)).astype(f32)
    back = bg + grad[:, :, 0] * xx + grad[:, :, 1] * yy
    sign = np.where(g.random((n, 1, 1, 1)) < 0.5, -1, 1).astype(f32)
    fg = bg + sign * g.uniform(70, 150, (n, 1, 1, 1)).astype(f32) \
        + g.normal(0, 25, (n, 3, 1, 1)).astype(f32)
    img = back + (fg - back) * cover[:, None]
    # distractors: two rectangles of random colour, the second on half of the images
    for j in range(2):
        y0, x0 = (g.integers(0, size - 4, (n, 1, 1)) for _ in range(2))
        h, w = (g.integers(3, 8, (n, 1, 1)) for _ in range(2))
        box = ((yy + c >= y0) & (yy + c < y0 + h) & (xx + c >= x0) & (xx + c < x0 + w))
        if j == 1:
            box &= g.random((n, 1, 1)) < 0.5
        col = g.uniform(0, 255, (n, 3, 1, 1)).astype(f32)
        img = np.where(box[:, None], col, img)
    img += f32(12) * g.standard_normal(img.shape, dtype=f32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels


def make_synthetic(batches=(1, 2, 3, 4, 5), batch_size: int = 1000, seed: int = 0,
                   size: int = 32):
    """Concatenate synthetic batches: (images uint8 (N, 3, size, size), labels int64 (N,))."""
    parts = [make_synthetic_batch(k, batch_size, seed, size) for k in batches]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
