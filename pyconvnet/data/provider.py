"""The provider every data source shares: batching, shuffling, augmentation, state, prefetch.

A *source* holds the cases: ``num_cases``, ``labels`` (int64, (num_cases,)), ``image_shape``
(C, H, W) and ``load(indices) -> uint8 (n, C, H, W)``. :class:`Provider` turns it into minibatches
of float32 (C, S, S, n) images, mean-subtracted, C-contiguous, plus int64 (n,) labels.

Determinism: the case order of training epoch ``e`` is a permutation drawn from
``SeedSequence([seed, e])``; the crops, flips and colour noise of minibatch ``b`` (0-based) of epoch
``e`` come from ``SeedSequence([seed, e, b])`` (two spawned streams: geometry, then colour, so
turning colour noise on does not change the crops). Nothing reads global random state, so a batch
is a pure function of (seed, epoch, position) and prefetching in a background thread cannot change
it.
"""
from __future__ import annotations

import re
import threading
from collections import namedtuple
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from . import augment


class DataError(ValueError):
    """Bad data or bad data options; the message is one line and names the file or option."""


Batch = namedtuple("Batch", "epoch batch_idx data")
Batch.__doc__ = """One minibatch: ``epoch`` (1-based), ``batch_idx`` (1-based within the epoch) and
``data`` = [images, labels]: images float32 (C, S, S, n) C-contiguous and mean-subtracted (with
multiview testing, a list of 10 such arrays, one per view), labels int64 (n,). With ``raw=True``
``data`` is a `RawBatch` instead."""

RawBatch = namedtuple("RawBatch", "images labels views")
RawBatch.__doc__ = """A minibatch before cropping and mean subtraction (what the GPU feed uploads):
``images`` uint8 (n, C, H, W) as the source stores them, ``labels`` int64 (n,), ``views`` a list of
``(geometry, shift)``: geometry int32 (n, 3) rows (crop top, crop left, mirror 0/1) of
`augment.pack_geometry`, shift None or float32 (n, C) colour shifts. One view for training and plain
testing, the 10 of multiview testing otherwise. `Provider.finish` turns it into the float data."""

_RANGE_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_range(text) -> list[int]:
    """Parse a batch range: "1-5" -> [1, 2, 3, 4, 5]; "6" -> [6]; "1-3,5" -> [1, 2, 3, 5].

    A list/tuple of non-negative ints is returned as a list. Raises :class:`DataError` on a
    malformed part, a decreasing range (``"5-1"``), a duplicate batch or an empty range.
    """
    if isinstance(text, (list, tuple, range)):
        vals = list(text)
        if not vals or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               and v >= 0 for v in vals):
            raise DataError(f"bad range {vals!r}: expected a non-empty list of batch numbers >= 0")
        out = [int(v) for v in vals]
    elif isinstance(text, str):
        out = []
        for part in text.split(","):
            m = _RANGE_PART.match(part)
            if m is None:
                raise DataError(f"bad range {text!r}: part {part.strip()!r} is not N or N-M "
                                f"(expected e.g. '1-5', '6' or '1-3,5')")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise DataError(f"bad range {text!r}: {lo}-{hi} is decreasing")
            out.extend(range(lo, hi + 1))
    else:
        raise DataError(f"bad range {text!r}: expected a string like '1-5' or a list of ints")
    if len(set(out)) != len(out):
        raise DataError(f"bad range {text!r}: a batch appears twice")
    return out


class ArraySource:
    """In-memory source: uint8 images (N, C, H, W) and int labels (N,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"ArraySource: images must be uint8 (N, C, H, W), got {images.dtype} "
                            f"{images.shape}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"ArraySource: labels must have shape ({images.shape[0]},), got "
                            f"{labels.shape}")
        self.images = np.ascontiguousarray(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_cases = images.shape[0]
        self.image_shape = images.shape[1:]

    def load(self, idx) -> np.ndarray:
        """uint8 (n, C, H, W) images of the cases ``idx``."""
        return self.images[idx]


class Provider:
    """Minibatches over one source, for training (shuffled, augmented) or testing (in order).

    Attributes: ``data_dims`` {0: (C, S, S), 1: ()}; ``num_classes``; ``label_names`` (list of str
    or None); ``num_cases``; ``batches_per_epoch``; ``mean`` float32 (C, H, W), the per-pixel
    training mean at full image size; ``epoch`` (1-based) and ``position`` (minibatches already
    read in it).

    Pixels are float32 in 0..255 minus the mean. With ``inner_size`` S < H the mean is cropped at
    the same position as the image (and mirrored with it), so every pixel has exactly its own mean
    subtracted. Training: random S x S crop and random horizontal flip per case (only when
    ``inner_size`` is set); colour noise (``color_noise`` sigma > 0 with ``pca`` given) adds a
    per-image RGB shift, see :func:`augment.lighting_shift`. Testing: the centre crop, or with
    ``multiview`` the 10 views of :func:`augment.multiview_offsets`.
    """

    PREFETCH = 2  # minibatches built ahead of next_batch, each in its own background thread

    def __init__(self, source, *, mean, train, inner_size=0, color_noise=0.0, pca=None,
                 multiview=False, seed=0, mini=128, workers=2, label_names=None,
                 num_classes=None, name="data"):
        C, H, W = source.image_shape
        self.name = name
        if not isinstance(mini, (int, np.integer)) or mini < 1:
            raise DataError(f"{name}: mini must be an int >= 1, got {mini!r}")
        if not isinstance(inner_size, (int, np.integer)) or not 0 <= inner_size <= min(H, W):
            raise DataError(f"{name}: inner_size must be 0 (no cropping) or 1..{min(H, W)} for "
                            f"{H}x{W} images, got {inner_size!r}")
        if color_noise < 0:
            raise DataError(f"{name}: color_noise must be >= 0, got {color_noise}")
        if color_noise > 0 and C != 3:
            raise DataError(f"{name}: color_noise needs RGB images, got {C} channels")
        if multiview and not (0 < inner_size):
            raise DataError(f"{name}: multiview testing needs inner_size (the crop size) to be set")
        if not isinstance(workers, (int, np.integer)) or workers < 0:
            raise DataError(f"{name}: workers must be an int >= 0, got {workers!r}")
        if source.num_cases == 0:
            raise DataError(f"{name}: no cases")
        self.source = source
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        if self.mean.shape != (C, H, W):
            raise DataError(f"{name}: mean has shape {self.mean.shape}, images are {(C, H, W)}")
        self.train = bool(train)
        self.crop = int(inner_size) > 0
        self.size = int(inner_size) if self.crop else H
        self.color_noise = float(color_noise) if self.train else 0.0
        self.pca = pca
        if self.color_noise > 0 and pca is None:
            raise DataError(f"{name}: color_noise needs the PCA of the training pixels")
        self.multiview = bool(multiview) and not self.train
        self.seed = int(seed)
        self.mini = int(mini)
        self.label_names = None if label_names is None else [str(s) for s in label_names]
        self.num_classes = int(num_classes if num_classes is not None else
                               (len(self.label_names) if self.label_names else
                                int(source.labels.max()) + 1))
        self.data_dims = {0: (C, self.size, self.size), 1: ()}
        self.epoch, self.position = 1, 0
        self._perm = (None, None)                 # (epoch, permutation) cache
        self._prefetcher = ThreadPoolExecutor(self.PREFETCH, thread_name_prefix="pyconvnet-prefetch") \
            if workers > 0 else None
        self._pending = {}                         # (epoch, position, raw) -> Future, in order
        self._lock = threading.Lock()

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def num_cases(self) -> int:
        return self.source.num_cases

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.num_cases // self.mini)

    # -- batch construction (pure function of seed, epoch, position) -----------------------------
    def _indices(self, epoch, b):
        lo, hi = b * self.mini, min((b + 1) * self.mini, self.num_cases)
        if not self.train:
            return np.arange(lo, hi)
        with self._lock:
            e, perm = self._perm
            if e != epoch:
                perm = np.random.Generator(np.random.PCG64(
                    np.random.SeedSequence([self.seed, epoch]))).permutation(self.num_cases)
                self._perm = (epoch, perm)
        return perm[lo:hi]

    def make_raw(self, epoch: int, b: int) -> RawBatch:
        """The `RawBatch` of minibatch ``b`` (0-based) of ``epoch``, without moving."""
        idx = self._indices(epoch, b)
        imgs = self.source.load(idx)
        labels = np.asarray(self.source.labels[idx], dtype=np.int64)
        n, C, H, W = imgs.shape
        S = self.size

        def geometry(oy, ox, flip):
            return augment.pack_geometry(oy, ox, flip, H, W, S)

        if self.train:
            geo, col = (np.random.Generator(np.random.PCG64(s))
                        for s in np.random.SeedSequence([self.seed, epoch, b]).spawn(2))
            if self.crop:
                oy, ox, flip = augment.random_crops(n, H, W, S, geo)
            else:
                oy = ox = np.zeros(n, dtype=np.intp)
                flip = None
            shift = None
            if self.color_noise > 0:
                shift = augment.lighting_shift(*self.pca, self.color_noise, n, col)
            return RawBatch(imgs, labels, [(geometry(oy, ox, flip), shift)])
        if self.multiview:
            views = []
            for mirror in (False, True):
                for y, x in augment.multiview_offsets(H, W, S):
                    views.append((geometry(np.full(n, y), np.full(n, x), np.full(n, mirror)), None))
            return RawBatch(imgs, labels, views)
        y, x = augment.centre_offset(H, W, S)
        return RawBatch(imgs, labels, [(geometry(np.full(n, y), np.full(n, x), None), None)])

    def finish(self, raw: RawBatch):
        """``[images, labels]`` (float32 (C, S, S, n), mean-subtracted; a list of views for multiview
        testing) from a `RawBatch`: what the GPU feed computes on the device, bit for bit."""
        imgs, S = raw.images, self.size
        out = []
        for geom, shift in raw.views:
            flip = geom[:, 2].astype(bool)
            out.append(augment.prepare(imgs, self.mean, geom[:, 0], geom[:, 1], S,
                                       flip if flip.any() else None, shift))
        return [out if self.multiview else out[0], raw.labels]

    def make_batch(self, epoch: int, b: int, raw: bool = False):
        """Return ``[images, labels]`` (or with ``raw`` the `RawBatch`) of minibatch ``b``
        (0-based) of ``epoch`` without moving."""
        r = self.make_raw(epoch, b)
        return r if raw else self.finish(r)

    # -- iteration ------------------------------------------------------------------------------
    def _drop_prefetches(self):
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()

    def _get(self, key):
        """The data of ``key`` = (epoch, position, raw): prefetched, or made now."""
        fut = self._pending.pop(key, None)
        return self.make_batch(*key) if fut is None else fut.result()

    def _after(self, epoch, position):
        """The (epoch, position) that follows."""
        position += 1
        return (epoch + 1, 0) if position == self.batches_per_epoch else (epoch, position)

    def next_batch(self, raw: bool = False) -> Batch:
        """Return the next minibatch and advance; training order is shuffled per epoch. ``raw``:
        its `RawBatch` (uint8, uncropped) instead of the float data."""
        epoch, b = self.epoch, self.position
        data = self._get((epoch, b, bool(raw)))
        self.epoch, self.position = self._after(epoch, b)
        self._prefetch(bool(raw))
        return Batch(epoch, b + 1, data)

    def peek_batch(self, raw: bool = False) -> Batch:
        """The minibatch `next_batch` will return next, without advancing: the provider's state (the
        one checkpoints save) does not move, so a caller can start copying the next batch to the GPU
        while the current step runs."""
        key = (self.epoch, self.position, bool(raw))
        data = self._get(key)
        fut = Future()
        fut.set_result(data)
        self._pending[key] = fut  # next_batch(raw) takes it from here
        return Batch(key[0], key[1] + 1, data)

    def _prefetch(self, raw: bool):
        """Have the background threads build the next ``PREFETCH`` minibatches, dropping prefetches
        of any other minibatch."""
        if self._prefetcher is None:
            return
        keys, (e, p) = [], (self.epoch, self.position)
        for _ in range(self.PREFETCH):
            keys.append((e, p, raw))
            e, p = self._after(e, p)
        for k in [k for k in self._pending if k not in keys]:
            self._pending.pop(k).cancel()
        for k in keys:
            if k not in self._pending:
                self._pending[k] = self._prefetcher.submit(self.make_batch, *k)

    def iter_test(self, raw: bool = False):
        """Yield one pass over all cases, in order, as Batch(epoch, batch_idx, data) (``raw``:
        data is a `RawBatch`).

        Does not change the provider's state. Each minibatch is built while the previous one is
        being used (one batch ahead in the background thread when ``workers`` > 0).
        """
        nb = self.batches_per_epoch
        ahead = None
        for b in range(nb):
            data = ahead.result() if ahead is not None else self.make_batch(self.epoch, b, raw)
            ahead = None
            if self._prefetcher is not None and b + 1 < nb:
                ahead = self._prefetcher.submit(self.make_batch, self.epoch, b + 1, raw)
            yield Batch(self.epoch, b + 1, data)

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """JSON-serialisable state; :meth:`set_state` on a fresh provider continues identically."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "mini": self.mini, "num_cases": self.num_cases, "train": self.train}

    def set_state(self, state: dict) -> None:
        """Restore ``epoch``, ``position``, ``seed`` and ``mini`` from :meth:`get_state`'s dict."""
        try:
            epoch, pos = int(state["epoch"]), int(state["position"])
            seed, mini, ncases = int(state["seed"]), int(state["mini"]), int(state["num_cases"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{self.name}: bad provider state {state!r} ({e})") from None
        if ncases != self.num_cases:
            raise DataError(f"{self.name}: the saved state is for {ncases} cases, this data set "
                            f"has {self.num_cases}")
        if mini < 1 or epoch < 1 or not 0 <= pos < -(-ncases // mini):
            raise DataError(f"{self.name}: bad provider state {state!r}")
        self._drop_prefetches()
        self.seed, self.mini, self.epoch, self.position = seed, mini, epoch, pos
        self._perm = (None, None)

    # -- display and cleanup --------------------------------------------------------------------
    def to_display(self, images) -> np.ndarray:
        """Undo mean subtraction: float (C, S, S, N) -> uint8 (N, S, S, 3) for plots.

        Adds back the centre crop of the mean (exact for test batches and uncropped data;
        approximate for randomly cropped training batches). One channel is repeated to RGB.
        """
        images = np.asarray(images)
        C, S = self.data_dims[0][0], self.size
        if images.ndim != 4 or images.shape[:3] != (C, S, S):
            raise DataError(f"{self.name}: to_display wants images of shape ({C}, {S}, {S}, N), "
                            f"got {images.shape}")
        H, W = self.mean.shape[1:]
        y, x = augment.centre_offset(H, W, S)
        m = self.mean[:, y:y + S, x:x + S, None]
        out = np.clip(np.rint(images + m), 0, 255).astype(np.uint8).transpose(3, 1, 2, 0)
        if C == 1:
            out = np.repeat(out, 3, axis=3)
        return np.ascontiguousarray(out)

    def close(self) -> None:
        """Stop the background threads (the provider must not be used afterwards)."""
        self._drop_prefetches()
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True, cancel_futures=True)
            self._prefetcher = None
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
