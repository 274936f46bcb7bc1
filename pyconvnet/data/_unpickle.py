"""A restricted unpickler for cuda-convnet / CIFAR-10 batch files.

A pickle can name any importable callable and call it while loading (``os.system``, ``eval``...), so
batch files are never read with plain :func:`pickle.load`. :class:`SafeUnpickler` resolves only the
few numpy globals that pickled arrays need; dicts, lists, tuples, strings, bytes and numbers are
built by the pickle machine itself and need no global. Any other global stops the load with a
one-line :class:`DataError` naming the file and the global, before anything is called.

Allowed globals:

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype``: what an ndarray pickled with protocols 0-4 (Python 2 or 3)
  refers to;
- ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar``: a numpy scalar (an
  ``np.int64`` count in a hand-made ``batches.meta``); it only builds a number from a dtype and
  bytes.
- ``_codecs.encode``, replaced by a function that only does ``str.encode("latin-1")``: Python 3
  writes ``bytes`` (including every array's pixel buffer) this way under pickle protocols 0-2,
  the protocols that keep files readable by Python 2 tools such as cuda-convnet.

Python 2 pickles are read with ``encoding="bytes"``: their ``str`` objects come back as ``bytes``.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from .provider import DataError

try:  # numpy >= 1.26 / 2.x; importing numpy.core on numpy 2 emits a DeprecationWarning
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - older numpy
    from numpy.core import multiarray as _multiarray

def _latin1_bytes(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode`` that only turns a str into bytes through latin-1."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list."""


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only the numpy array globals above."""

    def find_class(self, module, name):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise RefusedGlobal(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise RefusedGlobal(f"persistent id {pid!r}")


def safe_load(path) -> object:
    """Load one pickled batch or meta file from ``path`` with :class:`SafeUnpickler`.

    Returns the unpickled object as stored (keys of Python 2 files are ``bytes``). Raises
    :class:`DataError` naming the file when it is missing, refers to a forbidden global, or is
    not a readable pickle.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobal as e:
        raise DataError(f"{path}: refused to load global '{e}' (a data batch may only hold numpy "
                        f"arrays, dicts, lists, strings and numbers)") from None
    except Exception as e:  # truncated or corrupt pickle, wrong format
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {msg})") from None


def decode_keys(obj):
    """Return ``obj`` with ``bytes`` dict keys and ``bytes`` list items decoded to str (latin-1).

    Dicts and lists are rebuilt (recursively); arrays and other values are returned unchanged.
    """
    if isinstance(obj, dict):
        return {(k.decode("latin-1") if isinstance(k, bytes) else k): decode_keys(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [x.decode("latin-1") if isinstance(x, bytes) else decode_keys(x) for x in obj]
    return obj
