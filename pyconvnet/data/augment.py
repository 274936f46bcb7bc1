"""Crops, flips, PCA lighting and pixel statistics, vectorised over the cases of a minibatch.

Images enter as uint8 (n, C, H, W) (case-major, as sources store them) and leave as float32
(C, S, S, n) C-contiguous (cuda-convnet's layout, batch innermost).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def centre_offset(H: int, W: int, S: int) -> tuple[int, int]:
    """Top-left corner (y, x) of the centre S x S crop of an H x W image: ((H-S)//2, (W-S)//2)."""
    return (H - S) // 2, (W - S) // 2


def multiview_offsets(H: int, W: int, S: int) -> list[tuple[int, int]]:
    """Top-left corners of the 5 test views: top-left, top-right, bottom-left, bottom-right, centre.

    The 10 multiview views are these 5 unmirrored, then the same 5 mirrored (view 4 is the
    plain test crop, view 9 its mirror image).
    """
    return [(0, 0), (0, W - S), (H - S, 0), (H - S, W - S), centre_offset(H, W, S)]


def random_crops(n: int, H: int, W: int, S: int, rng: np.random.Generator):
    """Draw n crop corners uniformly in [0, H-S] x [0, W-S] and n fair-coin horizontal flips.

    Returns (oy (n,) intp, ox (n,) intp, flip (n,) bool), drawn in that order from ``rng``.
    """
    oy = rng.integers(0, H - S + 1, size=n).astype(np.intp)
    ox = rng.integers(0, W - S + 1, size=n).astype(np.intp)
    flip = rng.random(n) < 0.5
    return oy, ox, flip


def crop(x: np.ndarray, oy: np.ndarray, ox: np.ndarray, S: int) -> np.ndarray:
    """Gather per-case S x S crops: x (n, C, H, W), oy/ox (n,) -> (n, C, S, S), same dtype.

    Case i is x[i, :, oy[i]:oy[i]+S, ox[i]:ox[i]+S]. Uses a strided window view, so only the crops
    are copied.
    """
    n = x.shape[0]
    win = sliding_window_view(x, (S, S), axis=(2, 3))        # (n, C, H-S+1, W-S+1, S, S)
    return win[np.arange(n), :, oy, ox]                       # advanced dims first -> (n, C, S, S)


def prepare(imgs: np.ndarray, mean: np.ndarray, oy, ox, S: int, flip=None, shift=None):
    """Crop, subtract the mean, mirror, add a colour shift; return float32 (C, S, S, n).

    imgs: uint8 (n, C, H, W); mean: float32 (C, H, W), cropped at the same corner as each image;
    oy, ox: (n,) crop corners; flip: None or (n,) bool, mirror those cases left-right (after the
    mean subtraction, so the mean is mirrored with its pixels); shift: None or (n, C) float32
    added to every pixel of each case (PCA lighting; a constant, so adding it before or after the
    mean subtraction is the same).
    """
    n, C, H, W = imgs.shape
    if S == H and S == W:
        x = imgs.astype(np.float32)
        x -= mean
    else:
        x = crop(imgs, oy, ox, S).astype(np.float32)
        x -= crop(np.broadcast_to(mean, (n,) + mean.shape), oy, ox, S)
    if flip is not None and flip.any():
        x[flip] = x[flip, :, :, ::-1]
    if shift is not None:
        x += shift.astype(np.float32)[:, :, None, None]
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


def pixel_moments(images, chunk: int = 512):
    """Mean image and RGB covariance of uint8 images.

    ``images``: uint8 (n, C, H, W), or an iterable of such chunks. Returns (mean float32 (C, H, W),
    cov float64 (C, C)), where cov is the covariance of the C-vector of one pixel over all pixels of
    all images, on the 0..1 scale (pixel / 255). Sums in float64.
    """
    if isinstance(images, np.ndarray):
        arr = images
        images = (arr[i:i + chunk] for i in range(0, len(arr), chunk))
    total = s = ss = None
    count = 0
    for c in images:
        c = np.asarray(c)
        f = c.astype(np.float64)
        total = f.sum(0) if total is None else total + f.sum(0)
        p = f.transpose(1, 0, 2, 3).reshape(c.shape[1], -1) / 255.0   # (C, pixels)
        s = p.sum(1) if s is None else s + p.sum(1)
        ss = p @ p.T if ss is None else ss + p @ p.T
        count += c.shape[0]
    if count == 0:
        raise ValueError("pixel_moments: no images")
    npix = count * total.shape[1] * total.shape[2]
    mu = s / npix
    cov = ss / npix - np.outer(mu, mu)
    return (total / count).astype(np.float32), cov


def pca(cov: np.ndarray):
    """Eigen-decomposition of a 3x3 RGB covariance: (eigvecs (3, 3) columns p1..p3, eigvals (3,)).

    Eigenvalues are in decreasing order and clipped at 0 (round-off).
    """
    w, v = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    order = np.argsort(w)[::-1]
    return v[:, order], np.clip(w[order], 0.0, None)


def lighting_shift(eigvecs, eigvals, sigma: float, n: int, rng: np.random.Generator):
    """AlexNet's PCA colour noise: (n, 3) float32 RGB shifts on the 0..255 scale.

    For each case draw alpha ~ N(0, sigma^2) (3 values) and return
    255 * [p1 p2 p3] @ [alpha1*l1, alpha2*l2, alpha3*l3], with p, l the eigenvectors and
    eigenvalues of the RGB covariance of pixel values on the 0..1 scale (as in the AlexNet recipe,
    whose ImageNet eigenvalues are about 0.22, 0.019, 0.0045). With sigma = 0.1 a typical shift is a
    few grey levels; eigenvalues taken on the 0..255 scale would give shifts of hundreds of levels.
    """
    alpha = rng.normal(0.0, sigma, size=(n, 3))
    return (255.0 * (alpha * eigvals) @ np.asarray(eigvecs).T).astype(np.float32)


def pack_geometry(oy, ox, flip, H: int, W: int, S: int) -> np.ndarray:
    """Crop corners and flips of n cases as int32 (n, 3) rows (oy, ox, flip 0/1), C-contiguous: the
    ``geom`` argument of ``pyconvnet.cuda.ops.augment.prepare`` (upload it with ``cupy.asarray``).

    oy, ox: (n,) integers with 0 <= oy <= H-S and 0 <= ox <= W-S (as ``random_crops`` draws them);
    flip: None (no case mirrored) or (n,) bool; H, W: the image size; S: the crop size, 1 <= S <=
    min(H, W). This is the only place the offsets are checked (the kernel trusts them): anything else
    raises one ValueError naming the argument and the shapes or values.
    """
    def bad(msg):
        raise ValueError(f"pack_geometry: {msg}")

    for name, v in (("H", H), ("W", W), ("S", S)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            bad(f"{name} must be an integer >= 1, got {v!r}")
    if S > H or S > W:
        bad(f"crop size S={S} must be <= H={H} and <= W={W}")
    oy, ox = np.asarray(oy), np.asarray(ox)
    for name, a in (("oy", oy), ("ox", ox)):
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            bad(f"{name} must be a 1-D integer array, got {a.dtype} with shape {a.shape}")
    if ox.shape != oy.shape:
        bad(f"oy and ox must have one shape (n,), got {oy.shape} and {ox.shape}")
    n = oy.shape[0]
    if flip is not None:
        flip = np.asarray(flip)
        if flip.dtype != np.bool_ or flip.shape != (n,):
            bad(f"flip must be None or a bool array of shape ({n},), got {flip.dtype} with shape {flip.shape}")
    for name, a, hi in (("oy", oy, H - S), ("ox", ox, W - S)):
        if n and (a.min() < 0 or a.max() > hi):
            bad(f"{name} must lie in [0, {hi}] for crops of {S} in {H}x{W} images, "
                f"got values in [{a.min()}, {a.max()}]")
    geom = np.zeros((n, 3), np.int32)
    geom[:, 0] = oy
    geom[:, 1] = ox
    if flip is not None:
        geom[:, 2] = flip
    return geom
