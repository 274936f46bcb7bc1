"""CIFAR-10 batches: the standard "python version" download or cuda-convnet's numbered layout.

A directory holds pickled batches ``data_batch_<k>`` (batch k) and optionally ``test_batch``, which
is batch 6 when no ``data_batch_6`` exists (the standard download), plus ``batches.meta``. Each
batch is a dict with ``data`` (N x D uint8, or D x N as cuda-convnet stores its own batches; told
apart by which side has D = C*S*S, the row layout winning if both do), ``labels`` (N ints),
``batch_label``, ``filenames``. A row is C planes (R, G, B) of S x S pixels, row-major; D =
``num_vis`` from the meta file when present, else 3072 (3 x 32 x 32). Keys may be ``bytes`` (Python
2 files) or ``str``. ``batches.meta`` may give ``label_names`` and ``data_mean`` (D values in any
shape of that size, the per-pixel training mean in the same layout as a row). Files are read with
the restricted unpickler.
"""
from __future__ import annotations

import os

import numpy as np

from ._unpickle import decode_keys, safe_load
from .provider import DataError


def batch_file(path, k: int) -> str:
    """File of batch ``k`` in directory ``path``: data_batch_k, or test_batch for k = 6."""
    p = os.path.join(path, f"data_batch_{k}")
    if os.path.isfile(p):
        return p
    if k == 6 and os.path.isfile(os.path.join(path, "test_batch")):
        return os.path.join(path, "test_batch")
    alt = " or test_batch" if k == 6 else ""
    raise DataError(f"cifar: batch {k} not found in {path} (no data_batch_{k}{alt})")


def read_meta(path) -> dict:
    """``batches.meta`` of ``path`` with str keys, or {} when the file is absent."""
    p = os.path.join(path, "batches.meta")
    if not os.path.isfile(p):
        return {}
    meta = decode_keys(safe_load(p))
    if not isinstance(meta, dict):
        raise DataError(f"{p}: expected a dict, got {type(meta).__name__}")
    return meta


def read_batch(file, dims: int, num_classes: int):
    """Read one batch file -> (images uint8 (N, D), labels int64 (N,)); errors name the file."""
    d = safe_load(file)
    if not isinstance(d, dict):
        raise DataError(f"{file}: expected a dict, got {type(d).__name__}")
    d = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    for key in ("data", "labels"):
        if key not in d:
            raise DataError(f"{file}: no '{key}' entry (keys: {sorted(map(str, d))})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise DataError(f"{file}: 'data' must be a 2-D array, got "
                        f"{getattr(data, 'shape', type(data).__name__)}")
    try:
        labels = np.asarray(d["labels"]).reshape(-1)
    except Exception:
        raise DataError(f"{file}: 'labels' is not a list of ints") from None
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and labels.size and
                                             np.all(labels == np.round(labels))):
        raise DataError(f"{file}: 'labels' must be integers, got dtype {labels.dtype}")
    n = labels.size
    if data.shape[1] == dims and data.shape[0] == n:
        pass
    elif data.shape[0] == dims and data.shape[1] == n:
        data = data.T
    else:
        raise DataError(f"{file}: 'data' has shape {data.shape}, expected ({n}, {dims}) or "
                        f"({dims}, {n}) for {n} labels of {dims}-value images")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise DataError(f"{file}: 'data' must hold uint8 pixels 0..255, got dtype {data.dtype}")
        data = data.astype(np.uint8)
    labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{file}: labels must be in 0..{num_classes - 1}, found "
                        f"{labels.min()}..{labels.max()}")
    return np.ascontiguousarray(data), labels


def load_cifar(path, batches, meta=None):
    """Load batches ``batches`` (list of ints) from ``path``.

    Returns (images uint8 (N, C, S, S), labels int64 (N,), meta dict with str keys). ``C`` is 3.
    """
    if not os.path.isdir(path):
        raise DataError(f"cifar: data path {path} is not a directory")
    meta = read_meta(path) if meta is None else meta
    dims, side = image_dims(path, meta)
    names = meta.get("label_names")
    num_classes = len(names) if names else 10
    imgs, labels = [], []
    for k in batches:
        x, y = read_batch(batch_file(path, k), dims, num_classes)
        imgs.append(x)
        labels.append(y)
    x = np.concatenate(imgs).reshape(-1, 3, side, side)
    return x, np.concatenate(labels), meta


def image_dims(path, meta) -> tuple[int, int]:
    """(D, S): values per image (num_vis, default 3072) and image side, with D = 3 * S * S."""
    dims = int(meta.get("num_vis", 3072))
    side = int(round((dims / 3) ** 0.5))
    if dims <= 0 or 3 * side * side != dims:
        raise DataError(f"{os.path.join(path, 'batches.meta')}: num_vis={dims} is not 3*S*S")
    return dims, side


def meta_mean(path, meta, side: int):
    """``data_mean`` of the meta file as float32 (3, S, S), or None when absent."""
    m = meta.get("data_mean")
    if m is None:
        return None
    m = np.asarray(m, dtype=np.float32)
    if m.size != 3 * side * side:
        raise DataError(f"{os.path.join(path, 'batches.meta')}: data_mean has shape {m.shape}, "
                        f"expected {3 * side * side} values")
    return m.reshape(3, side, side)
