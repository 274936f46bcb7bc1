"""Host-to-device copies of minibatches: pinned staging buffers (`Stager`) and the GPU input feed
(`DeviceFeed`: uint8 uploads on a copy stream, crops, flips and mean subtraction on the device).

A copy from ordinary (pageable) host memory is synchronous: the driver stages it through its own
pinned buffer while the Python thread waits (about 6 ms for one AlexNet batch of 128 x 3 x 224 x 224
float32). `Stager.to_device` instead copies the batch into one of two pinned buffers of its shape (a
host memcpy) and enqueues the host-to-device copy on a CUDA stream without waiting; kernels queued
after it on that stream see the data. The two buffers of a shape alternate, and a buffer is refilled
only after the copy that last read it has finished (its event), so consecutive batches never overwrite
data still in flight.
"""
from __future__ import annotations

import numpy as np


class _Ring:
    """``slots`` buffers per key, handed out in turn: ``next(key, make)`` returns the key's next one,
    made by ``make()`` on its first turn."""

    def __init__(self, slots: int):
        self.slots = int(slots)
        self._bufs = {}  # key -> [buffer or None] * slots
        self._turn = {}

    def next(self, key, make):
        bufs = self._bufs.setdefault(key, [None] * self.slots)
        i = self._turn.get(key, 0)
        self._turn[key] = (i + 1) % self.slots
        if bufs[i] is None:
            bufs[i] = make()
        return bufs[i]


class Stager:
    """Asynchronous host-to-device copies through double-buffered pinned memory, per (shape, dtype)."""

    def __init__(self, slots: int = 2):
        self._ring = _Ring(slots)  # (shape, dtype) -> [pinned host array, event of its last copy or None]

    def _slot(self, shape, dtype):
        def make():
            import cupy

            n = int(np.prod(shape, dtype=np.int64))
            mem = cupy.cuda.alloc_pinned_memory(max(n * np.dtype(dtype).itemsize, 1))
            return [np.frombuffer(mem, np.dtype(dtype), n).reshape(shape), None]
        return self._ring.next((tuple(shape), np.dtype(dtype).str), make)

    def to_device(self, a, *, out=None, stream=None):
        """A CuPy copy of the NumPy array ``a`` (or ``out`` filled with it), enqueued on ``stream``
        (default: the current one); the call returns before the copy is done."""
        import cupy

        a = np.asarray(a)
        stream = stream if stream is not None else cupy.cuda.get_current_stream()
        slot = self._slot(a.shape, a.dtype)
        host, done = slot
        if done is not None:
            done.synchronize()  # the copy that last read this buffer (normally long finished)
        host[...] = a
        if out is None:
            with stream:
                out = cupy.empty(a.shape, a.dtype)
        out.set(host, stream=stream)
        ev = cupy.cuda.Event(disable_timing=True)
        ev.record(stream)
        slot[1] = ev
        return out


class _Upload:
    """One minibatch's arrays on the device (a slot of `DeviceFeed`) and the event that says they
    have arrived."""

    def __init__(self, slot, ready, views, shifted):
        self.slot, self.ready, self.views, self.shifted = slot, ready, views, shifted


class DeviceFeed:
    """Minibatches to the GPU as uint8, cropped, mirrored and mean-subtracted there.

    ``upload(raw)`` takes a `pyconvnet.data.provider.RawBatch` (uint8 images as the source stores
    them, labels, and per view the crop corners, mirror flags and colour shifts), copies it into pinned
    memory and enqueues the host-to-device copies on the feed's own copy stream, returning at once. One
    AlexNet batch is 25 MB of uint8 instead of 77 MB of float32, and the copy overlaps whatever the
    compute stream is doing. ``take(upload)`` makes the current (compute) stream wait for that copy and
    runs `pyconvnet.cuda.ops.augment.prepare` per view: the float32 (C, S, S, n) batch, bit-identical
    to what `Provider.finish` computes on the host. ``prefetch(tag, raw)`` / ``get(tag, raw)`` keep one
    upload in flight: the trainer prefetches batch k+1 while step k runs.

    Device buffers come in ``slots`` sets per batch shape, used in turn; a set is overwritten only
    after the compute stream has finished reading it (an event recorded by ``take``).
    """

    def __init__(self, mean, size: int, dtype=np.float32, slots: int = 2):
        import cupy

        self._cp = cupy
        self.size = int(size)
        self.dtype = np.dtype(dtype)
        self.mean = cupy.asarray(np.ascontiguousarray(mean, dtype=self.dtype))
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.stager = Stager(slots)
        self._ring = _Ring(slots)  # array signature -> {"bufs": device arrays, "consumed": event}
        self._ahead = None  # (tag, _Upload)

    def _host_arrays(self, raw):
        geoms = np.ascontiguousarray(np.stack([g for g, _ in raw.views]), dtype=np.int32)
        shifted = any(s is not None for _, s in raw.views)
        arrays = [np.ascontiguousarray(raw.images), np.ascontiguousarray(raw.labels), geoms]
        if shifted:
            n, C = raw.images.shape[:2]
            arrays.append(np.stack([np.zeros((n, C), self.dtype) if s is None else
                                    np.asarray(s, self.dtype) for _, s in raw.views]))
        return arrays, shifted

    def upload(self, raw) -> _Upload:
        """Enqueue the copies of ``raw`` on the copy stream; returns without waiting."""
        cp = self._cp
        arrays, shifted = self._host_arrays(raw)
        def make():
            with self.stream:
                return {"bufs": [cp.empty(a.shape, a.dtype) for a in arrays], "consumed": None}
        slot = self._ring.next(tuple((a.shape, a.dtype.str) for a in arrays), make)
        if slot["consumed"] is not None:  # the compute stream is done with this set's last batch
            self.stream.wait_event(slot["consumed"])
        for host, dev in zip(arrays, slot["bufs"]):
            self.stager.to_device(host, out=dev, stream=self.stream)
        return _Upload(slot, self.stream.record(), len(raw.views), shifted)

    def take(self, up: _Upload):
        """``[images, labels]`` on the device from an upload, computed on the current stream
        (images: a list of the views for a multiview test batch)."""
        from .ops import augment

        cp = self._cp
        cur = cp.cuda.get_current_stream()
        cur.wait_event(up.ready)
        bufs = up.slot["bufs"]
        imgs, labels, geoms = bufs[0], bufs[1], bufs[2]
        shifts = bufs[3] if up.shifted else None
        views = [augment.prepare(imgs, self.mean, geoms[v], self.size,
                                 None if shifts is None else shifts[v]) for v in range(up.views)]
        labels = labels.copy()
        up.slot["consumed"] = cur.record()
        return [views if up.views > 1 else views[0], labels]

    def prefetch(self, tag, raw) -> None:
        """Start uploading ``raw`` now; a later ``get(tag, ...)`` takes it."""
        self._ahead = (tag, self.upload(raw))

    def get(self, tag, raw):
        """``take`` of the batch prefetched under ``tag``, or of a fresh upload of ``raw``."""
        ahead, self._ahead = self._ahead, None
        up = ahead[1] if ahead is not None and ahead[0] == tag else self.upload(raw)
        return self.take(up)
