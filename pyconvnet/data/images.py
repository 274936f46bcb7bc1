"""Image folders: ``<root>/train/<class>/*.jpg|jpeg|png`` and ``<root>/val/`` (or ``test/``).

Classes are the sub-directories of ``train/``, sorted by name (label i = i-th name); the test folder
may hold any subset of them. Files are listed sorted by class then file name. Each image is decoded
with Pillow, converted to RGB, and the centred square of side = its short side is resized to
``image_size`` x ``image_size`` (bilinear; JPEGs are first decoded at a reduced scale with
``draft`` when that still leaves the short side >= ``image_size``). Decoding runs in ``workers``
worker processes (`DecoderPool`; Pillow holds Python's GIL for part of every image, so threads stop
scaling at a few cores: on a 16-core machine 16 decoding threads fed an AlexNet run 1,800 images/s),
each writing its share of a minibatch straight into a memory-mapped file in /dev/shm (nameless on
Linux: the workers open it as /proc/<pid>/fd/<n>); the provider
builds the next minibatch in a background thread while the current one is in use. The workers are
plain ``python -m pyconvnet.data._decoder`` processes talking JSON lines over pipes: nothing of the
parent is forked or re-imported, so they work the same under any main program (a script, a notebook,
a CUDA-using trainer).
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future

import numpy as np

from .provider import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png")


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise DataError("images: the image-folder provider needs Pillow (pip install pillow)") \
            from None
    return Image


def list_classes(train_dir) -> list[str]:
    """Sorted class names (sub-directories) of ``train_dir``."""
    if not os.path.isdir(train_dir):
        raise DataError(f"images: {train_dir} is not a directory")
    names = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    if not names:
        raise DataError(f"images: {train_dir} has no class sub-directories")
    return names


def list_images(folder, classes: list[str]):
    """(paths, labels int64) of the images in ``folder/<class>/``, sorted by class then name.

    Class folders of ``folder`` must be among ``classes``; an empty class folder or an empty
    ``folder`` is an error.
    """
    if not os.path.isdir(folder):
        raise DataError(f"images: {folder} is not a directory")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for c in sorted(e.name for e in os.scandir(folder) if e.is_dir()):
        if c not in index:
            raise DataError(f"images: class folder {os.path.join(folder, c)} is not a class of "
                            f"the training set")
        d = os.path.join(folder, c)
        files = sorted(f for f in os.listdir(d) if f.lower().endswith(EXTENSIONS))
        if not files:
            raise DataError(f"images: class folder {d} holds no .jpg/.jpeg/.png files")
        paths += [os.path.join(d, f) for f in files]
        labels += [index[c]] * len(files)
    if not paths:
        raise DataError(f"images: {folder} holds no class folders with images")
    return paths, np.asarray(labels, dtype=np.int64)


def decode(path, size: int) -> np.ndarray:
    """Decode one file to uint8 (3, size, size): RGB, centre square, resized. Errors name it."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            w, h = im.size
            short = min(w, h)
            if im.format == "JPEG" and short > size:
                im.draft("RGB", (-(-w * size // short), -(-h * size // short)))
            scale_w, scale_h = im.size[0] / w, im.size[1] / h   # draft may have shrunk it
            im = im.convert("RGB")
            if im.size != (size, size):  # (a square image of the right size is used as it is)
                box = ((w - short) / 2 * scale_w, (h - short) / 2 * scale_h,
                       (w + short) / 2 * scale_w, (h + short) / 2 * scale_h)
                im = im.resize((size, size), Image.Resampling.BILINEAR, box=box)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except DataError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"images: cannot read {path}: {msg}") from None


def _shared_dir():
    """Where the minibatch files go: memory-backed /dev/shm when there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class DecoderPool:
    """``workers`` decoding processes (started on first use). `decode_rows` splits a minibatch over
    them; several threads may call it at once (the provider builds two minibatches ahead), and the
    requests of all of them queue up at the workers, so a worker starts on the next minibatch while
    the slowest one finishes the current."""

    def __init__(self, workers: int):
        self.workers = int(workers)
        self._procs = []
        self._queues = []    # per worker: deque of the Futures of its requests, in order
        self._dead = []      # per worker: its process has gone (its reply stream ended)
        self._lock = threading.Lock()
        self._turn = 0       # the worker that gets the first chunk of the next minibatch

    def _start(self):
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for _ in range(self.workers):
            p = subprocess.Popen([sys.executable, "-m", "pyconvnet.data._decoder"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=env)
            q = collections.deque()
            threading.Thread(target=self._read, args=(len(self._procs), p, q), daemon=True,
                             name="pyconvnet-decoder-reply").start()
            self._procs.append(p)
            self._queues.append(q)
            self._dead.append(False)

    def _read(self, w, p, q):
        """Answer worker ``w``'s requests in order, with None or its one-line error."""
        with p.stdout:
            for line in p.stdout:
                q.popleft().set_result(json.loads(line).get("error"))
        with self._lock:  # the worker is gone: its pending requests fail, and it gets no more
            if w < len(self._dead):
                self._dead[w] = True
            while q:
                q.popleft().set_result(f"images: a decoding worker process stopped (exit status "
                                       f"{p.wait()})")

    def decode_rows(self, files, size: int) -> np.ndarray:
        """uint8 (len(files), 3, size, size): every file decoded by `decode` (a copy-on-write map of
        the rows the workers wrote)."""
        shape = (len(files), 3, size, size)
        if not files:
            return np.empty(shape, dtype=np.uint8)
        fd, path = tempfile.mkstemp(prefix="pyconvnet-batch-", dir=_shared_dir())
        named = path
        proc = f"/proc/{os.getpid()}/fd/{fd}"
        if os.path.exists(proc):  # Linux: the file loses its name at once, so a killed run leaves none
            os.unlink(path)
            path, named = proc, None
        try:
            os.ftruncate(fd, int(np.prod(shape)))
            futures = []
            with self._lock:
                if not self._procs:
                    self._start()
                if any(self._dead):
                    raise DataError("images: a decoding worker process stopped (exit status "
                                    f"{self._procs[self._dead.index(True)].poll()})")
                nw = len(self._procs)
                per = -(-len(files) // nw)
                for j, lo in enumerate(range(0, len(files), per)):
                    w = (self._turn + j) % nw
                    fut = Future()
                    self._queues[w].append(fut)
                    req = {"path": path, "shape": shape, "start": lo, "files": files[lo:lo + per]}
                    self._procs[w].stdin.write(json.dumps(req) + "\n")
                    self._procs[w].stdin.flush()
                    futures.append(fut)
                self._turn = (self._turn + len(futures)) % nw
            err = next((e for e in (f.result() for f in futures) if e), None)
            if err:
                raise DataError(err)
            return np.asarray(np.memmap(path, np.uint8, "c", shape=shape))  # outlives the file's name
        except (BrokenPipeError, OSError) as e:
            raise DataError(f"images: a decoding worker process stopped ({e})") from None
        finally:
            os.close(fd)
            if named is not None:
                os.unlink(named)

    def close(self) -> None:
        with self._lock:
            for p in self._procs:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            for p in self._procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            self._procs, self._queues, self._dead = [], [], []


class FolderSource:
    """Source over image files, decoded on demand by ``workers`` processes (0: inline)."""

    def __init__(self, paths, labels, image_size: int, workers: int = 2):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_cases = len(self.paths)
        self.size = int(image_size)
        self.image_shape = (3, self.size, self.size)
        self._pool = DecoderPool(workers) if workers > 0 else None

    def load(self, idx) -> np.ndarray:
        """uint8 (n, 3, S, S) images of the cases ``idx``."""
        paths = [self.paths[i] for i in idx]
        if self._pool is not None and len(paths) > 1:
            return self._pool.decode_rows(paths, self.size)
        out = np.empty((len(paths), 3, self.size, self.size), dtype=np.uint8)
        for j, p in enumerate(paths):
            out[j] = decode(p, self.size)
        return out

    def sample_indices(self, count: int) -> np.ndarray:
        """``count`` indices evenly spaced over the (class-sorted) file list, or all of them."""
        if count >= self.num_cases:
            return np.arange(self.num_cases)
        return np.unique(np.linspace(0, self.num_cases - 1, count).round().astype(np.intp))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def open_folders(root, image_size: int, workers: int):
    """(train FolderSource, test FolderSource, class names) for ``root``."""
    if not os.path.isdir(root):
        raise DataError(f"images: data path {root} is not a directory")
    classes = list_classes(os.path.join(root, "train"))
    test_dir = next((os.path.join(root, d) for d in ("val", "test")
                     if os.path.isdir(os.path.join(root, d))), None)
    if test_dir is None:
        raise DataError(f"images: {root} has no val/ or test/ folder")
    train = list_images(os.path.join(root, "train"), classes)
    test = list_images(test_dir, classes)
    return (FolderSource(*train, image_size, workers), FolderSource(*test, image_size, workers),
            classes)
