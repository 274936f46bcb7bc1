"""Data providers: CIFAR batches, image folders and a built-in synthetic set.

Interface (what the trainer uses)
---------------------------------
``make_provider(name, data_path, *, train_range=None, test_range=None, inner_size=0,
color_noise=0.0, multiview=False, seed=0, mini=128, workers=2, **kw) -> (train, test)``

- ``name``: ``"cifar"``, ``"images"`` or ``"synthetic"``. ``data_path`` is ignored by ``synthetic``.
- ``train_range`` / ``test_range``: batch numbers, a list of ints or a string for
  :func:`parse_range` (``"1-5"``, ``"6"``, ``"1-3,5"``); default ``1-5`` / ``6``. ``cifar`` reads
  those batches; ``synthetic`` generates those batches (1000 cases each by default); ``images``
  ignores them (it uses the ``train/`` and ``val/`` or ``test/`` folders).
- ``inner_size`` S > 0: training takes a random S x S crop and a random horizontal flip per case,
  testing the centre crop (corner (H-S)//2, (W-S)//2); 0: whole images, no crop, no flip.
- ``multiview`` (needs ``inner_size``): each test minibatch's images entry is a list of 10 arrays,
  the views top-left, top-right, bottom-left, bottom-right, centre, then the same 5 mirrored
  left-right; average the predictions over them. View 4 equals the plain test crop.
- ``color_noise`` sigma > 0 (training only): AlexNet's PCA lighting. The 3x3 covariance of RGB
  values is taken over the training pixels (cifar, synthetic: all training images; images: the
  mean sample below), with pixels on the 0..1 scale, giving eigenvectors p1..p3 and eigenvalues
  l1..l3. Each time a training image is used, alpha ~ N(0, sigma^2) (3 values) is drawn and
  255 * [p1 p2 p3] @ [a1*l1, a2*l2, a3*l3] is added to every pixel (0..255 scale; a per-image
  constant, so it commutes with the mean subtraction). Taking the eigenvalues on the 0..1 scale
  is the AlexNet recipe's convention (its ImageNet eigenvalues are 0.22, 0.019, 0.0045); on the
  0..255 scale the same sigma would shift colours by hundreds of levels.
- ``seed``: shuffling and augmentation; a batch is a pure function of (seed, epoch, position).
- ``mini``: minibatch size (the last minibatch of an epoch may be smaller).
- ``workers``: background work (0: everything inline). Every provider builds the next two
  minibatches in two background threads; ``images`` also decodes with ``workers`` worker processes.
- ``kw``: ``images``: ``image_size`` (side of the decoded square; default ``round(inner_size*8/7)``
  when cropping, else 256), ``mean_samples`` (1000); ``synthetic``: ``batch_size`` (1000),
  ``data_seed`` (0; the data set depends on it, not on ``seed``). Unknown keys are an error.

A provider (:class:`Provider`) has ``data_dims`` {0: (C, S, S), 1: ()}, ``num_classes``,
``label_names`` (list of str or None), ``num_cases``, ``batches_per_epoch``, ``mean``, and:

- ``next_batch() -> Batch(epoch, batch_idx, data)``: epoch from 1, batch_idx from 1 within the
  epoch; data = [images float32 (C, S, S, n) C-contiguous, mean-subtracted; labels int64 (n,)].
  Training providers visit all cases once per epoch in an order shuffled per (seed, epoch); test
  providers go in file order.
- ``next_batch(raw=True)`` / ``peek_batch(raw=False)`` / ``iter_test(raw=False)``: with ``raw`` the
  data is a ``RawBatch`` (uint8 images as stored, labels, crop corners/flips/colour shifts per view)
  that ``finish(raw)`` turns into the float data on the host, bit for bit what the GPU feed
  (``pyconvnet.cuda.feed.DeviceFeed``) computes on the device; ``peek_batch`` returns the batch
  ``next_batch`` will return next, without advancing.
- ``iter_test()``: yields one in-order pass of Batches without changing the state (for testing).
- ``get_state() -> dict`` (JSON-serialisable: epoch, position, seed, mini, num_cases, train) and
  ``set_state(dict)``: a provider restored from a checkpoint yields exactly the batches an
  uninterrupted run would have (crops, flips and colour noise included).
- ``to_display(images) -> uint8 (N, S, S, 3)``: adds back the (centre-cropped) mean.
- ``close()`` (or use as a context manager): stops the background threads and decoding processes.

Pixels are float32 on 0..255 minus the per-pixel mean image of the training set: ``data_mean`` of
``batches.meta`` when present (cifar), else computed over the training batches (cifar, synthetic)
or over ``mean_samples`` training images evenly spaced over the class-sorted file list (images),
once per ``make_provider`` call. With cropping, each case has the mean cropped at its own crop
position (and mirrored with it) subtracted, so every pixel loses exactly its own mean.

Errors in data or options raise :class:`DataError` (a ValueError) with a one-line message naming
the file or the option.
"""
from __future__ import annotations

from . import augment, cifar, images, synthetic
from .provider import ArraySource, Batch, DataError, Provider, parse_range
from .synthetic import make_synthetic

__all__ = ["make_provider", "parse_range", "Provider", "Batch", "DataError", "ArraySource",
           "make_synthetic"]

PROVIDERS = ("cifar", "images", "synthetic")


def _check_kw(name, kw, allowed):
    extra = sorted(set(kw) - set(allowed))
    if extra:
        raise DataError(f"{name}: unknown option(s) {', '.join(extra)} (allowed: "
                        f"{', '.join(allowed) if allowed else 'none'})")


def _in_memory(name, data_path, train_range, test_range, kw):
    """(train source, test source, mean or None, label_names) for cifar and synthetic."""
    if name == "cifar":
        _check_kw(name, kw, ())
        if data_path is None:
            raise DataError("cifar: data_path is required")
        x, y, meta = cifar.load_cifar(data_path, train_range)
        tx, ty, _ = cifar.load_cifar(data_path, test_range, meta)
        mean = cifar.meta_mean(data_path, meta, x.shape[2])
        names = meta.get("label_names") or None
    else:
        _check_kw(name, kw, ("batch_size", "data_seed"))
        bs, ds = int(kw.get("batch_size", 1000)), int(kw.get("data_seed", 0))
        if bs < 1:
            raise DataError(f"synthetic: batch_size must be >= 1, got {bs}")
        x, y = make_synthetic(train_range, bs, ds)
        tx, ty = make_synthetic(test_range, bs, ds)
        mean, names = None, synthetic.LABEL_NAMES
    return ArraySource(x, y), ArraySource(tx, ty), mean, names


def make_provider(name, data_path, *, train_range=None, test_range=None, inner_size=0,
                  color_noise=0.0, multiview=False, seed=0, mini=128, workers=2, **kw):
    """Build (train provider, test provider) for data set ``name``; see the module docstring."""
    if name not in PROVIDERS:
        raise DataError(f"unknown data provider {name!r} (choose from {', '.join(PROVIDERS)})")
    if multiview and not inner_size:
        raise DataError(f"{name}: multiview testing needs inner_size (the crop size) to be set")
    train_range = parse_range("1-5" if train_range is None else train_range)
    test_range = parse_range("6" if test_range is None else test_range)
    if name == "images":
        _check_kw(name, kw, ("image_size", "mean_samples"))
        size = int(kw.get("image_size", round(inner_size * 8 / 7) if inner_size else 256))
        nsamp = int(kw.get("mean_samples", 1000))
        if size < 1 or nsamp < 1:
            raise DataError(f"images: image_size and mean_samples must be >= 1, got {size}, "
                            f"{nsamp}")
        train_src, test_src, names = images.open_folders(data_path, size, workers)
        try:
            idx = train_src.sample_indices(nsamp)
            mean, cov = augment.pixel_moments(
                train_src.load(idx[i:i + 64]) for i in range(0, len(idx), 64))
        except Exception:
            train_src.close()
            test_src.close()
            raise
        num_classes = len(names)
    else:
        train_src, test_src, mean, names = _in_memory(name, data_path, train_range, test_range,
                                                      kw)
        cov = None
        if mean is None or color_noise > 0:
            m, cov = augment.pixel_moments(train_src.images)
            mean = m if mean is None else mean
        num_classes = len(names) if names else 10
    pca = augment.pca(cov) if color_noise > 0 else None
    common = dict(mean=mean, inner_size=inner_size, seed=seed, mini=mini, workers=workers,
                  label_names=names, num_classes=num_classes)
    made = []
    try:
        made.append(Provider(train_src, train=True, color_noise=color_noise, pca=pca,
                             name=f"{name} train", **common))
        made.append(Provider(test_src, train=False, multiview=multiview, name=f"{name} test",
                             **common))
    except Exception:
        for p in made:
            p.close()
        for s in (train_src, test_src):
            getattr(s, "close", lambda: None)()
        raise
    return made[0], made[1]
