"""The network graph: forward, backward, the learning rule and the whole-net gradient check.

    specs = parse_layer_files(def_path, params_path, {0: (3, 32, 32), 1: ()})
    net = Net(specs, get_backend("cpu"), seed=0)          # float32 by default
    costs = net.forward([images, labels], train=True, step=s)  # {cost layer: (sum, nerr, nerr_topk)}
    net.backward()
    net.update(progress)                                     # progress p in [0, 1]

Data: ``data[dataIdx]`` feeds each data layer: images (C, H, W, N) in the net's dtype, labels (N,)
of an integer dtype (float labels holding whole numbers, as cuda-convnet stored them, are converted
to int32). Costs are the summed costs of the batch (not multiplied by ``coeff``); ``nerr_topk`` is
None when ``topk`` is 1, and a sum2 cost gives ``(value, None, None)``.

Backward computes, for every parameter, the gradient of ``sum over cost layers of coeff * cost``
(summed over the batch). It skips what nobody needs: input gradients of data layers, and the whole
backward of layers with no parameters at or below them; a softmax whose only consumer is a logreg
cost is differentiated together with it (``softmax_logreg_bwd``); a layer feeding several consumers
gets the sum of their gradients.

Update applies SEMANTICS.md's rule to every weight array with the minibatch-averaged gradient
(``sgd_update(..., n=N)``): ``inc = mom*inc - eps(p)*(grad/N + wc*W); W += inc``, with epsW/momW/wc
per input for weights and epsB/momB (no weight decay) for biases.

Parameters are named ``<layer>.w<i>`` (one per input) and ``<layer>.b``: `Net.params`, `Net.incs`
and `Net.grads` return the live arrays; `Net.state` / `Net.load_state` copy them to / from NumPy.
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass

import numpy as np

from .backend import Backend, get_backend
from .config import LayerSpec, apply_learn_params
from .layers import make_layer


@dataclass
class GradCheckRow:
    name: str         # parameter name, e.g. "conv1.w0"
    checked: int      # number of elements compared
    skipped: int      # elements left out: the derivative is not smooth within eps (a kink)
    rel_err: float    # ||num - ana|| / max(||num||, ||ana||) over the compared elements
    abs_err: float    # ||num - ana||
    passed: bool


@dataclass
class GradCheckReport:
    """Result of `Net.check_grads`; ``str()`` gives one line per parameter array."""
    rows: list
    eps: float
    rtol: float
    atol: float
    cost: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def __str__(self):
        w = max([len(r.name) for r in self.rows] + [9])
        lines = [f"gradient check (float64 copy of the net, central differences, steps eps={self.eps:g}, "
                 f"eps/4, eps/16, ...; pass: relative error < {self.rtol:g} or absolute error < "
                 f"{self.atol:g}); objective {self.cost:.6g}",
                 f"{'parameter':<{w}}  {'checked':>7}  {'kinks':>5}  {'rel. error':>10}  "
                 f"{'abs. error':>10}"]
        for r in self.rows:
            verdict = "ok" if r.passed else ("FAIL (no smooth element)" if not r.checked else "FAIL")
            lines.append(f"{r.name:<{w}}  {r.checked:>7}  {r.skipped:>5}  {r.rel_err:>10.3e}  "
                         f"{r.abs_err:>10.3e}  {verdict}")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def _to_host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


class Net:
    """A net built from parsed specs on one backend (see the module docstring)."""

    def __init__(self, specs, backend: Backend | str = "cpu", seed: int = 0, dtype=np.float32):
        if isinstance(backend, str):
            backend = get_backend(backend)
        self.backend, self.ops, self.xp = backend, backend.ops, backend.xp
        self.seed, self.dtype = int(seed), np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"Net: dtype must be float32 or float64, got {self.dtype}")
        self.specs = list(specs)
        if not all(isinstance(s, LayerSpec) for s in self.specs):
            raise ValueError("Net: specs must be the LayerSpec list of pyconvnet.config")
        self.layers = [make_layer(s, backend, self.dtype, seed=self.seed) for s in self.specs]
        self.by_name = {l.name: l for l in self.layers}
        for l in self.layers:
            if l.has_params:
                rng = np.random.default_rng([self.seed, zlib.crc32(l.name.encode("utf-8"))])
                l.init_params(rng, lambda a: backend.asarray(a))
        self._plan()
        self._outs, self._xs, self._n, self._grads_ready = {}, {}, None, False
        self._device_costs = False  # cost layers return device rows (CUDA graph capture)
        self._graph = None          # pyconvnet.cuda.graph.StepGraph, made by the first train_step
        self._stager = None         # pyconvnet.cuda.feed.Stager: pinned, asynchronous input copies

    # -- graph analysis -------------------------------------------------------------------------

    def _plan(self):
        consumers = {s.name: [] for s in self.specs}
        for s in self.specs:
            for i in s.inputs:
                consumers[i].append(s.name)
        self.consumers = consumers
        wants = {}
        for s in self.specs:  # topological order
            l = self.by_name[s.name]
            wants[s.name] = s.type != "data" and (l.has_params or any(wants[i] for i in s.inputs))
        self.wants_grad = wants
        # per layer: [(input name, view shape without N)]
        self._feeds = {s.name: list(zip(s.inputs, s.params.get("in_shapes", ()))) for s in self.specs}
        self._need = {s.name: [wants[i] for i in s.inputs] for s in self.specs}
        self._fused = {}  # logreg name -> softmax name
        for s in self.specs:
            if s.type == "cost.logreg":
                sm = s.inputs[1]
                if consumers[sm] == [s.name] and s.inputs.count(sm) == 1:
                    self.by_name[s.name].fused = True
                    self._fused[s.name] = sm
        self.costs = [s.name for s in self.specs if s.type.startswith("cost.")]
        logregs = [s for s in self.specs if s.type == "cost.logreg"]
        self._probs_layer = logregs[0].inputs[1] if logregs else None

    @property
    def topk(self):
        """topk of the first logreg cost (None without one)."""
        for s in self.specs:
            if s.type == "cost.logreg":
                return s.learn["topk"]
        return None

    def _ancestors(self, name):
        seen, stack = set(), [name]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.by_name[n].spec.inputs)
        return [l for l in self.layers if l.name in seen]

    # -- forward / backward ---------------------------------------------------------------------

    def _data(self, layer, arr, n_expected):
        s = layer.spec
        if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
            raise ValueError(f"Net.forward: data layer {s.name!r} (dataIdx {s.params['data_idx']}) "
                             f"needs an array, got {type(arr).__name__}")
        if s.out_shape == ():  # labels
            if arr.ndim != 1:
                raise ValueError(f"Net.forward: labels for {s.name!r} must be (N,), got shape "
                                 f"{tuple(arr.shape)}")
            if arr.dtype.kind == "f":
                host = _to_host(arr)
                if not np.all(np.isfinite(host)) or np.any(host != np.round(host)):
                    raise ValueError(f"Net.forward: labels for {s.name!r} must be whole numbers")
                arr = host.astype(np.int32)
            elif arr.dtype.kind not in "iu":
                raise ValueError(f"Net.forward: labels for {s.name!r} must be integers, got "
                                 f"{arr.dtype}")
            arr = self._stage(arr)
        else:
            want = tuple(s.out_shape)
            if tuple(arr.shape[:-1]) != want or arr.ndim != len(want) + 1:
                raise ValueError(f"Net.forward: data layer {s.name!r} wants {want + ('N',)}, got "
                                 f"shape {tuple(arr.shape)}")
            if arr.dtype != self.dtype:
                raise ValueError(f"Net.forward: data layer {s.name!r} got {arr.dtype} data; this "
                                 f"net computes in {self.dtype}")
            arr = self._stage(arr)
        n = arr.shape[-1]
        if n < 1 or (n_expected is not None and n != n_expected):
            raise ValueError(f"Net.forward: data layer {s.name!r} has {n} cases, expected "
                             f"{n_expected if n_expected is not None else '>= 1'}")
        return arr

    def _get_stager(self):
        """The pinned staging buffers of this net's GPU input copies (made on first use)."""
        if self._stager is None:
            from .cuda.feed import Stager
            self._stager = Stager()
        return self._stager

    def _stage(self, arr):
        """``arr`` as an array of the backend; NumPy data goes to the GPU through pinned staging
        buffers, asynchronously on the current stream."""
        if self.backend.name == "gpu" and isinstance(arr, np.ndarray):
            return self._get_stager().to_device(np.ascontiguousarray(arr))
        return self.backend.asarray(arr)

    def _run(self, layers, data, train, step):
        outs, xss, costs, n = {}, {}, {}, None
        for l in layers:
            name = l.name
            if l.type == "data":
                idx = l.spec.params["data_idx"]
                if idx >= len(data):
                    raise ValueError(f"Net.forward: data layer {name!r} reads data[{idx}], but "
                                     f"only {len(data)} arrays were given")
                outs[name] = self._data(l, data[idx], n)
                n = outs[name].shape[-1]
                continue
            xs = []
            for inp, shape in self._feeds[name]:
                a = outs[inp]
                want = tuple(shape) + (n,)
                xs.append(a if a.shape == want else a.reshape(want))
            xss[name] = xs
            if l.is_cost:
                costs[name] = l.cost(xs, device=True) if self._device_costs else l.cost(xs)
            else:
                outs[name] = l.forward(xs, train, step)
        return outs, xss, costs, n

    def forward(self, data, *, train: bool, step: int):
        """Run every layer; returns {cost layer name: (cost_sum, nerr, nerr_topk)}."""
        step = int(step)
        if step < 0:
            raise ValueError(f"Net.forward: step must be >= 0, got {step}")
        return self._forward(data, bool(train), step)

    def _forward(self, data, train, step):
        """`forward` without the step check: a CUDA-graph capture passes the step as a device scalar
        (the dropout kernels read it when they run)."""
        self._outs, self._xs, costs, self._n = self._run(self.layers, data, train, step)
        self._grads_ready = False
        return costs

    def train_step(self, data, *, step: int):
        """``forward(data, train=True, step=step)`` then ``backward()``; returns forward's costs.

        On the GPU backend the steady state replays both as one captured CUDA graph
        (`pyconvnet.cuda.graph`; bit-identical results, far fewer launches); ``graph_status`` says
        whether it does and, if not, why."""
        return self.train_step_async(data, step=step).result()

    def train_step_async(self, data, *, step: int):
        """`train_step` that returns as soon as the step is queued on the GPU: a
        `pyconvnet.cuda.graph.PendingCosts` whose ``result()`` waits and returns the costs (the
        work is done already on the CPU backend). Call ``result()`` before the next step or
        `update`."""
        step = int(step)
        if step < 0:
            raise ValueError(f"Net.train_step: step must be >= 0, got {step}")
        if self._graph is None:
            from .cuda.graph import StepGraph
            self._graph = StepGraph(self)
        return self._graph.run(data, step)

    @property
    def graph_status(self) -> str:
        """How `train_step` runs: "CUDA graph (N replays)", or "eager: <reason>"."""
        g = self._graph
        if g is None:
            from .cuda.graph import graph_blocker
            why = graph_blocker(self)
            return "not started" + (f" (eager: {why})" if why else "")
        if g.blocker:
            return f"eager: {g.blocker}"
        return f"CUDA graph ({g.replays} replays)" if g.active else "CUDA graph (not captured yet)"

    def _host_cost(self, name, row):
        """A cost layer's device row [cost, nerr, nerr_topk, invalid labels] as forward's tuple."""
        layer = self.by_name[name]
        if row[3]:  # invalid labels: the host path raises the op's own message
            layer.cost(self._xs[name])
        return layer.host_cost(row)

    def backward(self):
        """Gradients of sum(coeff * cost) for every parameter (``net.grads()``), from the last
        forward."""
        if self._n is None:
            raise RuntimeError("Net.backward: call forward first")
        grads = {}  # layer -> [gradient of its output, owned (may be added to in place)]

        def add(name, dx):
            if dx is None or not self.wants_grad[name]:
                return
            shape = self._outs[name].shape
            if dx.shape != shape:
                dx = dx.reshape(shape)
            cur = grads.get(name)
            if cur is None:
                grads[name] = [dx, False]
            elif cur[1]:
                cur[0] += dx
            else:
                grads[name] = [cur[0] + dx, True]

        for l in reversed(self.layers):
            name = l.name
            if not self.wants_grad[name]:
                continue
            xs, inputs = self._xs[name], l.spec.inputs
            if l.is_cost:
                dxs = l.backward(xs, self._need[name])
                if l.fused:  # gradient w.r.t. the softmax's input
                    sm = self._fused[name]
                    add(self.by_name[sm].spec.inputs[0], dxs[1])
                    dxs = [dxs[0], None]
            else:
                g = grads.pop(name, None)
                if g is None:
                    continue
                dxs = l.backward(g[0], xs, self._outs[name], self._need[name])
            for inp, dx in zip(inputs, dxs):
                add(inp, dx)
        self._grads_ready = True

    def update(self, progress: float):
        """One learning-rule step for every weight array at training progress p in [0, 1]."""
        if not self._grads_ready:
            raise RuntimeError("Net.update: call forward and backward first")
        p = float(progress)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Net.update: progress must be in [0, 1], got {progress}")
        sgd, n = self.ops.sgd_update, self._n
        for l in self.layers:
            if not l.has_params:
                continue
            lr = l.learn
            for i in range(len(l.spec.inputs)):
                k = f"w{i}"
                sgd(l.params[k], l.incs[k], l.grads[k], eps=lr["eps_w"][i](p), mom=lr["mom_w"][i],
                    wc=lr["wc"][i], n=n)
            sgd(l.params["b"], l.incs["b"], l.grads["b"], eps=lr["eps_b"](p), mom=lr["mom_b"],
                wc=0.0, n=n)
        self._grads_ready = False

    # -- parameters and state -------------------------------------------------------------------

    def _collect(self, attr):
        return {f"{l.name}.{k}": a for l in self.layers if l.has_params
                for k, a in getattr(l, attr).items()}

    def params(self):
        """{"conv1.w0": array, "conv1.b": array, ...}: the live parameter arrays."""
        return self._collect("params")

    def incs(self):
        """The live momentum buffers, same keys as `params`."""
        return self._collect("incs")

    def grads(self):
        """The gradients of the last backward (summed over the batch), same keys as `params`."""
        if not self._grads_ready and not any(l.grads for l in self.layers):
            raise RuntimeError("Net.grads: call backward first")
        return self._collect("grads")

    def state(self):
        """{"params": {name: NumPy copy}, "incs": {name: NumPy copy}} for checkpoints."""
        return {"params": {k: np.array(_to_host(a)) for k, a in self.params().items()},
                "incs": {k: np.array(_to_host(a)) for k, a in self.incs().items()}}

    def load_state(self, state):
        """Copy a `state` dict into the live arrays (converted to this net's dtype and backend)."""
        for kind, live in (("params", self.params()), ("incs", self.incs())):
            new = state[kind]
            missing, extra = sorted(set(live) - set(new)), sorted(set(new) - set(live))
            if missing or extra:
                raise ValueError(f"Net.load_state: {kind} do not fit the net: missing "
                                 f"{missing or '-'}, unexpected {extra or '-'}")
            for k, a in live.items():
                v = new[k]
                if tuple(v.shape) != tuple(a.shape):
                    raise ValueError(f"Net.load_state: {kind} {k} has shape {tuple(v.shape)}, "
                                     f"the net has {tuple(a.shape)}")
                a[...] = self.backend.asarray(_to_host(v), dtype=self.dtype)

    def set_learn_params(self, source, name: str = "layer-params.cfg"):
        """Re-read learning parameters, weights unchanged. ``source``: the parameter file's text,
        a path (os.PathLike) to it, or a list of LayerSpec with the same layers (their ``learn``
        is taken)."""
        if isinstance(source, os.PathLike):
            name = os.fspath(source)
            with open(source, encoding="utf-8") as f:
                source = f.read()
        if isinstance(source, str):
            new = apply_learn_params(self.specs, source, name)
        else:
            given = {s.name: s for s in source}
            if sorted(given) != sorted(s.name for s in self.specs) or any(
                    given[s.name].type != s.type or given[s.name].inputs != s.inputs
                    for s in self.specs):
                raise ValueError("Net.set_learn_params: the specs describe a different net")
            new = [LayerSpec(s.name, s.type, s.inputs, s.params, dict(given[s.name].learn),
                             s.out_shape) for s in self.specs]
        self.specs = new
        for s in new:
            self.by_name[s.name].spec = s
        self._graph = None  # a captured step graph holds the old values (e.g. a norm's scale)

    # -- outputs --------------------------------------------------------------------------------

    def outputs(self, name):
        """The output of layer ``name`` in the last forward: (C, H, W, N), (F, N) or labels (N,)."""
        if name not in self.by_name:
            raise ValueError(f"Net.outputs: no layer {name!r} (layers: {', '.join(self.by_name)})")
        if self.by_name[name].is_cost:
            raise ValueError(f"Net.outputs: {name!r} is a cost layer; its value is in forward()'s "
                             f"result")
        if name not in self._outs:
            raise ValueError("Net.outputs: no forward has run yet")
        return self._outs[name]

    def predict(self, images):
        """Test-mode probabilities (F, N) of the softmax feeding the first logreg cost, computing
        only the layers below it; ``images`` feed its single data layer. It overwrites what the
        layers kept for a backward, so `backward` needs a new `forward` after it."""
        if self._probs_layer is None:
            raise ValueError("Net.predict: the net has no cost.logreg layer")
        layers = self._ancestors(self._probs_layer)
        data_layers = [l for l in layers if l.type == "data"]
        if len(data_layers) != 1:
            raise ValueError(f"Net.predict: {self._probs_layer!r} depends on "
                             f"{len(data_layers)} data layers; predict() feeds exactly one")
        idx = data_layers[0].spec.params["data_idx"]
        data = [None] * idx + [images]
        self._n, self._grads_ready = None, False
        outs, _, _, _ = self._run(layers, data, False, 0)
        return outs[self._probs_layer]

    # -- gradient check -------------------------------------------------------------------------

    def objective(self, costs):
        """sum over cost layers of coeff * cost_sum (what backward differentiates)."""
        return sum(self.by_name[k].learn["coeff"] * c[0] for k, c in costs.items())

    def check_grads(self, data, *, eps: float = 1e-4, max_elems: int = 8, rtol: float = 1e-5,
                    atol: float = 1e-8, seed: int = 0, step: int = 0, train: bool = True,
                    levels: int = 7, verbose: bool = False):
        """Whole-net numerical gradient check (cuda-convnet's --check-grads), in float64.

        A float64 copy of this net on the NumPy backend (same weights) runs ``data`` (images are
        converted to float64). For every parameter array, up to ``max_elems`` random elements
        (chosen with ``seed``) get central differences of the objective J = sum(coeff * cost) with
        steps eps, eps/4, eps/16, ... (``levels`` steps). The first estimate that agrees with the one
        before it (within ``rtol`` of the larger of the two and of the array's gradient scale, or
        within ``atol``) is compared with the backward's gradient: with relu and max pooling, J has
        kinks, and a step that crosses one gives a wrong difference that changes with the step.
        Elements where no two consecutive steps agree are counted under "kinks" and left out.
        An array passes when
        at least one element was compared and ||num - ana|| / max(||num||, ||ana||) < ``rtol`` or
        ||num - ana|| < ``atol``. Dropout masks are fixed by ``step``. Returns a `GradCheckReport`
        (printed too when ``verbose``).
        """
        net = Net(self.specs, get_backend("cpu"), seed=self.seed, dtype=np.float64)
        net.load_state(self.state())
        d64 = []
        for a in data:
            h = np.array(_to_host(a))
            d64.append(h.astype(np.float64) if h.dtype.kind == "f" and h.ndim > 1 else h)

        def J():
            return net.objective(net.forward(d64, train=train, step=step))

        def central(flat, i, h):
            old = flat[i]
            flat[i] = old + h
            jp = J()
            flat[i] = old - h
            jm = J()
            flat[i] = old
            return (jp - jm) / (2 * h)

        cost = J()
        net.backward()
        ana_all = {k: np.array(g) for k, g in net.grads().items()}
        rng = np.random.default_rng(seed)
        rows = []
        for name, w in net.params().items():
            flat = w.reshape(-1)
            idx = rng.choice(flat.size, min(flat.size, max_elems), replace=False)
            ana = ana_all[name].reshape(-1)[idx]
            gscale = float(np.sqrt(np.mean(ana ** 2)))
            num, keep = [], []
            for j, i in enumerate(idx):
                coarse = central(flat, i, eps)
                for level in range(1, levels):
                    fine = central(flat, i, eps / 4 ** level)
                    diff = abs(coarse - fine)
                    if diff <= rtol * max(abs(coarse), abs(fine), gscale) or diff < atol:
                        num.append(fine)
                        keep.append(j)
                        break
                    coarse = fine
            num, ana = np.array(num), ana[keep]
            abs_err = float(np.linalg.norm(num - ana))
            scale = max(np.linalg.norm(num), np.linalg.norm(ana))
            rel = abs_err / scale if scale > 0 else 0.0
            ok = bool(keep) and bool(math.isfinite(rel) and (rel < rtol or abs_err < atol))
            rows.append(GradCheckRow(name, len(keep), len(idx) - len(keep), rel, abs_err, ok))
        report = GradCheckReport(rows, eps, rtol, atol, cost)
        if verbose:
            print(report)
        return report
