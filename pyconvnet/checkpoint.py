"""Checkpoints: one ``.npz`` file that loads without executing code.

A checkpoint holds the net's weights and momentum buffers (``param/<name>`` and ``inc/<name>``
arrays) and one JSON document (``meta``, stored as a uint8 array) with everything else: the text of
the two layer files, the training options, the position of the training data provider, the step
counter that keys dropout masks, and the history of costs and errors. It is read with
``np.load(..., allow_pickle=False)``, so a hostile file cannot run code.

Writes are atomic: the file is written under a temporary name in the same folder, flushed to disk
and renamed over the old one (``os.replace``), so a kill at any moment leaves either the previous
checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "pyconvnet-checkpoint"
VERSION = 1
FILENAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def checkpoint_file(path) -> Path:
    """The checkpoint file for ``path``: the file itself, or ``checkpoint.npz`` inside a folder."""
    p = Path(path)
    return p / FILENAME if p.is_dir() or not p.suffix else p


def save(path, params: dict, incs: dict, meta: dict) -> Path:
    """Write a checkpoint atomically to ``path`` (a folder or a ``.npz`` file); return the file."""
    f = checkpoint_file(path)
    f.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(meta, format=FORMAT, version=VERSION)
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({f"inc/{k}": np.asarray(v) for k, v in incs.items()})
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f.name + ".", suffix=".tmp", dir=f.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(f.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return f


def load(path):
    """Read a checkpoint; returns ``(params, incs, meta)`` with NumPy arrays on the host."""
    f = checkpoint_file(path)
    if not f.is_file():
        raise CheckpointError(f"{f}: no checkpoint there")
    try:
        with np.load(f, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except Exception as e:  # zip damage, pickled object arrays, not an npz at all
        raise CheckpointError(f"{f}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if "meta" not in files:
        raise CheckpointError(f"{f}: not a pyconvnet checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(files.pop("meta").tobytes().decode("utf-8"))
    except ValueError as e:
        raise CheckpointError(f"{f}: damaged metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{f}: not a pyconvnet checkpoint")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{f}: written by a newer pyconvnet (format version {meta['version']})")
    params = {k[6:]: v for k, v in files.items() if k.startswith("param/")}
    incs = {k[4:]: v for k, v in files.items() if k.startswith("inc/")}
    return params, incs, meta
