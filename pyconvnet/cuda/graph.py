"""The training step's forward and backward replayed as one CUDA graph (the GPU backend's steady state).

A small net (layers-18pct: ~60 kernels a step, most of them a few microseconds long) spends more time
in Python and in kernel launches than on the GPU. `StepGraph` records the forward and backward of one
training step once, through CUDA stream capture, and from then on replays it with one launch:

    g = StepGraph(net)
    costs = g.run([images, labels], step).result()   # == net.forward(..., train=True); net.backward()

How: the first call with a given set of input shapes runs eagerly (it also loads every kernel);
the second captures ``net.forward`` + the device-side costs + ``net.backward`` on a private stream,
with every array of the capture taken from a private CuPy memory pool that nothing else allocates
from, so the addresses the graph uses stay its own; the inputs are copied into static device buffers
that the graph reads, and the step number into a device scalar that the dropout kernels read (so the
masks change every replay exactly as in eager steps). cuBLAS calls (fc layers, Winograd convs) go
through `pyconvnet.cuda.blas`, whose handle for the private stream is made before the capture. Every
later call copies its batch into those buffers, writes the step, and replays the graph; `run` returns
at once with a `PendingCosts`, whose ``result()`` copies the costs to the host (the one host
synchronisation of a step) and points the layers' saved state (outputs, gradients, what a backward
keeps) back at the graph's arrays, so `Net.update`, `Net.grads` and `Net.outputs` see this step's
values. Another input shape (the short last batch of an epoch) runs eagerly; only one shape is
captured.

A replay computes exactly what the eager step computes (the same kernels on the same data, in the
same order): the results are bit-identical. What cannot be captured runs eagerly, and the reason is
in ``StepGraph.blocker``: not the GPU backend, ``PYCONVNET_CUDA_GRAPHS=0``, or ops that run on the
host. A failed capture also falls back to eager steps for good, with the error in ``blocker``.
"""
from __future__ import annotations

import contextlib
import contextvars
import os

import numpy as np

ENV = "PYCONVNET_CUDA_GRAPHS"
# layer attributes that are not per-step state (never rebound by forward/backward)
_STATIC = frozenset({"spec", "name", "type", "ops", "xp", "dtype", "p", "neuron", "params", "incs"})
_NET_STATE = ("_outs", "_xs", "_n", "_grads_ready")


_NO_CUBLAS = contextvars.ContextVar("pyconvnet_no_cublas", default=False)


def cublas_allowed() -> bool:
    """False inside `without_cublas`: the ops then use pyconvnet's own kernels instead of cuBLAS."""
    return not _NO_CUBLAS.get()


@contextlib.contextmanager
def without_cublas():
    """Within the block the CUDA ops call no cuBLAS: fc ops run as 1x1 convolutions through
    kernels/conv.cu and conv takes no Winograd path (a way to check one path against the other)."""
    token = _NO_CUBLAS.set(True)
    try:
        yield
    finally:
        _NO_CUBLAS.reset(token)


def graph_blocker(net) -> str | None:
    """Why the training step of ``net`` cannot be captured as a CUDA graph (None when it can)."""
    if net.backend.name != "gpu":
        return f"the {net.backend.name} backend has no CUDA graphs"
    if os.environ.get(ENV, "1").strip() == "0":
        return f"{ENV}=0"
    if net.backend.fallbacks:
        return f"ops run on the host: {', '.join(net.backend.fallbacks)}"
    return None


def _copy_state(v):
    return dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v


class PendingCosts:
    """The costs of a training step that may still be running on the GPU: ``result()`` waits for the
    step and returns forward's {cost layer: (cost_sum, nerr, nerr_topk)}."""

    def __init__(self, net, costs=None, rows=None, names=None, stream=None):
        self._net, self._costs, self._rows, self._names, self._stream = net, costs, rows, names, stream

    def result(self):
        if self._costs is None:
            host = self._rows.get(stream=self._stream)  # waits for the step
            self._costs = {k: self._net._host_cost(k, row) for k, row in zip(self._names, host)}
            self._rows = None
        return self._costs


class StepGraph:
    """Forward + backward of ``net``'s training step through a captured CUDA graph (module docstring)."""

    def __init__(self, net):
        self.net = net
        self.blocker = graph_blocker(net)
        self.key = None        # input (shape, dtype) signature of the captured graph
        self.graph = None
        self.replays = 0
        self._seen = set()
        self._device_costs = net.backend.name == "gpu" and not net.backend.fallbacks
        if self.blocker is None:
            import weakref

            import cupy

            from . import blas

            self._cp = cupy
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.pool = cupy.cuda.MemoryPool()
            weakref.finalize(self, blas.release, self.stream).atexit = False

    @property
    def active(self) -> bool:
        return self.graph is not None

    def run(self, data, step: int) -> PendingCosts:
        """``net.forward(data, train=True, step=step)`` then ``net.backward()``, enqueued; the returned
        `PendingCosts` waits for them."""
        if self.blocker is None:
            key = self._key(data)
            if key is not None and key == self.key:
                return self._replay(data, step)
            if key is not None and self.graph is None and key in self._seen:
                try:
                    return self._capture(key, data, step)
                except Exception as e:  # anything a capture cannot do: eager from now on
                    self.blocker = f"capture failed: {type(e).__name__}: {e}"
                    self.graph = None
            elif key is not None:
                self._seen.add(key)
        return self._eager(data, step)

    def _eager(self, data, step):
        net = self.net
        if not self._device_costs:
            costs = net.forward(data, train=True, step=step)
            net.backward()
            return PendingCosts(net, costs)
        names, rows = self._device_step(data, step)  # the costs stay on the device until result()
        return PendingCosts(net, rows=rows, names=names)

    def _device_step(self, data, step):
        """Forward (with the costs left on the device) and backward; returns (cost layer names, their
        rows stacked into one device array)."""
        import cupy

        net = self.net
        net._device_costs = True
        try:
            costs = net._forward(data, True, step)
        finally:
            net._device_costs = False
        net.backward()
        names = list(costs)
        return names, cupy.stack([costs[k] for k in names])

    # -- internals ---------------------------------------------------------------------------------

    def _key(self, data):
        """(shape, dtype) of every input, or None when an input cannot feed a graph as it is."""
        key = []
        for a in data:
            if not hasattr(a, "shape") or not hasattr(a, "dtype"):
                return None
            if a.ndim == 1 and a.dtype.kind not in "iu":  # float labels: the eager path converts them
                return None
            key.append((tuple(a.shape), np.dtype(a.dtype).str))
        return tuple(key)

    def _load(self, data, step):
        """Copy this step's inputs into the graph's static buffers and the step into its scalar (on the
        graph's stream, after what the caller's stream has queued so far)."""
        cp = self._cp
        self.stream.wait_event(cp.cuda.get_current_stream().record())
        with self.stream:
            for buf, a in zip(self._inputs, data):
                if isinstance(a, cp.ndarray):
                    buf[...] = a
                else:  # through the net's pinned staging buffers, without waiting
                    self.net._get_stager().to_device(np.asarray(a), out=buf, stream=self.stream)
            self._step.fill(step)

    def _capture(self, key, data, step):
        from . import blas

        cp, net = self._cp, self.net
        blas.prepare(self.stream)  # cuBLAS's handle for this stream, made outside the capture
        with cp.cuda.using_allocator(self.pool.malloc):
            self._inputs = [cp.empty(s, np.dtype(d)) for s, d in key]
            self._step = cp.zeros((), np.int64)
        self._load(data, step)
        with cp.cuda.using_allocator(self.pool.malloc), self.stream:
            self.stream.begin_capture()
            try:
                names, self._costs = self._device_step(self._inputs, self._step)
            finally:
                graph = self.stream.end_capture()
        self.graph, self.key, self._names = graph, key, names
        self._net_state = {k: _copy_state(getattr(net, k)) for k in _NET_STATE}
        self._layer_state = [(l, {k: _copy_state(v) for k, v in vars(l).items() if k not in _STATIC})
                             for l in net.layers]
        return self._launch()

    def _replay(self, data, step):
        self._load(data, step)
        self._restore()
        return self._launch()

    def _launch(self):
        self.graph.launch(stream=self.stream)
        self.replays += 1
        return PendingCosts(self.net, rows=self._costs, names=self._names, stream=self.stream)

    def _restore(self):
        net = self.net
        for k, v in self._net_state.items():
            setattr(net, k, _copy_state(v))
        for l, st in self._layer_state:
            for k, v in st.items():
                setattr(l, k, _copy_state(v))
