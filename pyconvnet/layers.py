"""One class per layer type: forward and backward of a layer on the arrays of one backend.

A layer sees its inputs already viewed in the shapes it wants (``spec.params["in_shapes"]`` plus the
batch axis: images (C, H, W, N), flat (F, N), labels (N,)) and calls only ``backend.ops``. The net
(`pyconvnet.net.Net`) owns the graph: it feeds inputs, keeps outputs, sums gradients and decides
which input gradients are needed (``need[i]``; e.g. never the data layer's).

Protocol of a non-cost layer:

- ``forward(xs, train, step) -> y``: ``z = _fwd(xs, ...)``, then ``y = neuron(z)`` when the spec
  has ``neuron=``; ``z`` is kept until the next forward for the backward.
- ``backward(dy, xs, y, need) -> [dx_i or None]``: ``dz = neuron_bwd(dy, z, y)``, then ``_bwd``, which
  also stores the gradients of the layer's parameters in ``self.grads`` (gradients of the summed
  cost, not divided by N).

Cost layers instead have ``cost(xs) -> (cost_sum, nerr, nerr_topk)`` and ``backward(xs, need)``;
``cost(xs, device=True)`` leaves the values in a float64 array of the backend, [cost_sum, nerr,
nerr_topk, invalid labels], which ``host_cost(row)`` turns into the tuple (CUDA graph capture).

Parameters live in ``self.params`` (``w0``, ``w1``, ... one per input, and ``b``) with momentum
buffers in ``self.incs``; layouts are cuda-convnet's: conv w (C/g, R, R, K), local
(OH*OW, C/g, R, R, K), fc (F_in, F_out); biases (K, 1) shared, (K*OH*OW, 1) untied, fc (F_out, 1).
"""
from __future__ import annotations

import numpy as np


class Layer:
    """Base class: neuron handling and parameter bookkeeping."""
    has_params = False
    is_cost = False
    fused = False  # cost.logreg only: differentiated together with its softmax

    def __init__(self, spec, backend, dtype):
        self.spec, self.name, self.type = spec, spec.name, spec.type
        self.ops, self.xp, self.dtype = backend.ops, backend.xp, np.dtype(dtype)
        self.p = spec.params
        nr = self.p.get("neuron")
        self.neuron = None if nr is None or nr[0] == "ident" else nr
        self.params, self.incs, self.grads = {}, {}, {}
        self._z = None

    @property
    def learn(self):
        return self.spec.learn

    def param_shapes(self):
        """{key: (shape, init std or None for biases)}; empty for layers without weights."""
        return {}

    def init_params(self, rng, asarray):
        """Draw weights N(0, initW^2) (float64 on the host, then cast) and set biases to initB."""
        for key, (shape, std) in self.param_shapes().items():
            host = (rng.standard_normal(shape) * std if std is not None
                    else np.full(shape, self.p["init_b"]))
            self.params[key] = asarray(host.astype(self.dtype))
            self.incs[key] = self.xp.zeros(shape, dtype=self.dtype)

    def forward(self, xs, train, step):
        z = self._fwd(xs, train, step)
        if self.neuron is None:
            return z
        self._z = z
        return self.ops.neuron_fwd(z, self.neuron[0], self.neuron[1])

    def backward(self, dy, xs, y, need):
        if self.neuron is not None:
            z = self._z
            dy = self.ops.neuron_bwd(dy, z, y, self.neuron[0], self.neuron[1])
            y = z
        return self._bwd(dy, xs, y, need)

    def _fwd(self, xs, train, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def _bwd(self, dz, xs, z, need):  # pragma: no cover - abstract
        raise NotImplementedError


class DataLayer(Layer):
    """Placeholder: the net puts the provider's array in the outputs."""


class _ConvLike(Layer):
    """conv and local: one filter bank per input, outputs summed, one bias."""
    has_params = True

    def _geom(self, i):
        p = self.p
        return dict(padding=p["padding"][i], stride=p["stride"][i], groups=p["groups"][i])

    def _fwd(self, xs, train, step):
        fwd = self._ops[0]
        y = fwd(xs[0], self.params["w0"], self.params["b"], **self._geom(0))
        for i in range(1, len(xs)):
            y += fwd(xs[i], self.params[f"w{i}"], None, **self._geom(i))
        return y

    def _bwd(self, dz, xs, z, need):
        _, bwd_data, bwd_filter = self._ops
        p, g = self.p, self.grads
        g["b"] = self.ops.bias_bwd(dz, p["shared_biases"])
        dxs = []
        for i, x in enumerate(xs):
            g[f"w{i}"] = bwd_filter(dz, x, p["filter_size"][i], **self._geom(i))
            side = p["img_size"][i]
            dxs.append(bwd_data(dz, self.params[f"w{i}"], (side, side), **self._geom(i))
                       if need[i] else None)
        return dxs


class ConvLayer(_ConvLike):
    def __init__(self, spec, backend, dtype):
        super().__init__(spec, backend, dtype)
        o = self.ops
        self._ops = (o.conv_fwd, o.conv_bwd_data, o.conv_bwd_filter)

    def param_shapes(self):
        p = self.p
        k, m = p["filters"], p["modules"]
        shapes = {f"w{i}": ((c // g, r, r, k), std) for i, (c, g, r, std) in
                  enumerate(zip(p["channels"], p["groups"], p["filter_size"], p["init_w"]))}
        shapes["b"] = ((k, 1) if p["shared_biases"] else (k * m * m, 1), None)
        return shapes


class LocalLayer(_ConvLike):
    def __init__(self, spec, backend, dtype):
        super().__init__(spec, backend, dtype)
        o = self.ops
        self._ops = (o.local_fwd, o.local_bwd_data, o.local_bwd_filter)

    def param_shapes(self):
        p = self.p
        k, m = p["filters"], p["modules"]
        shapes = {f"w{i}": ((m * m, c // g, r, r, k), std) for i, (c, g, r, std) in
                  enumerate(zip(p["channels"], p["groups"], p["filter_size"], p["init_w"]))}
        shapes["b"] = ((k * m * m, 1), None)
        return shapes


class FCLayer(Layer):
    has_params = True

    def param_shapes(self):
        p = self.p
        shapes = {f"w{i}": ((f, p["outputs"]), std)
                  for i, (f, std) in enumerate(zip(p["in_features"], p["init_w"]))}
        shapes["b"] = ((p["outputs"], 1), None)
        return shapes

    def _fwd(self, xs, train, step):
        fc_fwd = self.ops.fc_fwd
        y = fc_fwd(xs[0], self.params["w0"], self.params["b"])
        for i in range(1, len(xs)):
            y += fc_fwd(xs[i], self.params[f"w{i}"])
        return y

    def _bwd(self, dz, xs, z, need):
        o, g = self.ops, self.grads
        g["b"] = o.bias_bwd(dz, True)
        dxs = []
        for i, x in enumerate(xs):
            g[f"w{i}"] = o.fc_bwd_filter(dz, x)
            dxs.append(o.fc_bwd_data(dz, self.params[f"w{i}"]) if need[i] else None)
        return dxs


class PoolLayer(Layer):
    def __init__(self, spec, backend, dtype):
        super().__init__(spec, backend, dtype)
        p = self.p
        self._kw = dict(mode=p["mode"], size=p["size"], stride=p["stride"], start=p["start"],
                        outputs=p["outputs"])

    def _fwd(self, xs, train, step):
        return self.ops.pool_fwd(xs[0], **self._kw)

    def _bwd(self, dz, xs, z, need):
        return [self.ops.pool_bwd(dz, xs[0], z, **self._kw)]


class NormLayer(Layer):
    """rnorm, cmrnorm, cnorm: scale, pow, minDiv come from the parameter file (``learn``).

    cmrnorm keeps no denominators: its backward recomputes them from x (reads dy and x only).
    """

    def __init__(self, spec, backend, dtype):
        super().__init__(spec, backend, dtype)
        self._f = getattr(self.ops, f"{self.type}_fwd")
        self._b = getattr(self.ops, f"{self.type}_bwd")
        self._recompute = self.type == "cmrnorm"
        self._denom = None

    def _kw(self):
        lr = self.learn
        return dict(size=self.p["size"], scale=lr["scale"], pow=lr["pow"], min_div=lr["min_div"])

    def _fwd(self, xs, train, step):
        if self._recompute:
            y, self._denom = self._f(xs[0], keep_denom=False, **self._kw())
        else:
            y, self._denom = self._f(xs[0], **self._kw())
        return y

    def _bwd(self, dz, xs, z, need):
        if self._recompute:
            return [self._b(dz, xs[0], None, None, **self._kw())]
        return [self._b(dz, xs[0], z, self._denom, **self._kw())]


class NeuronLayer(Layer):
    """The neuron is the whole layer: z is the input itself."""

    def _fwd(self, xs, train, step):
        return xs[0]

    def _bwd(self, dz, xs, z, need):
        return [dz]


class EltSumLayer(Layer):
    def _fwd(self, xs, train, step):
        return self.ops.eltsum_fwd(list(xs), self.learn["coeffs"])

    def _bwd(self, dz, xs, z, need):
        return self.ops.eltsum_bwd(dz, self.learn["coeffs"])


class EltMaxLayer(Layer):
    def _fwd(self, xs, train, step):
        return self.ops.eltmax_fwd(list(xs))

    def _bwd(self, dz, xs, z, need):
        return self.ops.eltmax_bwd(dz, list(xs), z)


class ConcatLayer(Layer):
    def _fwd(self, xs, train, step):
        return self.ops.concat_fwd(list(xs))

    def _bwd(self, dz, xs, z, need):
        return self.ops.concat_bwd(dz, list(self.p["sizes"]))


class DropoutLayer(Layer):
    """dropout (scale by 1/keep while training, identity when testing) and dropout2 (mask only
    while training, times keep when testing). The mask is keyed by (net seed, layer, step)."""

    def __init__(self, spec, backend, dtype, seed=0):
        super().__init__(spec, backend, dtype)
        self.seed, self.layer_id = seed, self.ops.layer_id(self.name)
        self.scale = self.type == "dropout"
        self._mode = None  # ("mask", step) / "keep" / None (identity) of the last forward

    def _fwd(self, xs, train, step):
        lr, x = self.learn, xs[0]
        if not lr["enable"]:
            self._mode = None
            return x
        if train:
            self._mode = ("mask", step)
            return self.ops.dropout_fwd(x, keep=lr["keep"], seed=self.seed, layer=self.layer_id,
                                        step=step, scale=self.scale)
        self._mode = None if self.scale else "keep"
        return x if self.scale else x * x.dtype.type(lr["keep"])

    def _bwd(self, dz, xs, z, need):
        mode, lr = self._mode, self.learn
        if mode is None:
            return [dz]
        if mode == "keep":
            return [dz * dz.dtype.type(lr["keep"])]
        return [self.ops.dropout_bwd(dz, keep=lr["keep"], seed=self.seed, layer=self.layer_id,
                                     step=mode[1], scale=self.scale)]


class SoftmaxLayer(Layer):
    def _fwd(self, xs, train, step):
        return self.ops.softmax_fwd(xs[0])

    def _bwd(self, dz, xs, z, need):
        return [self.ops.softmax_bwd(dz, z)]


class LogregCost(Layer):
    """inputs (labels (N,), probs (F, N)); ``fused`` is set by the net when the softmax feeding it
    has no other consumer: the backward then returns the gradient w.r.t. the softmax's input."""
    is_cost = True

    def cost(self, xs, device=False):
        labels, probs = xs
        topk = self.learn["topk"]
        if device:  # [cost, nerr, nerr_topk, invalid labels] left on the device
            return self.ops.logreg_cost(probs, labels, topk=topk, device=True)
        c, nerr, nk = self.ops.logreg_cost(probs, labels, topk=topk)
        return float(c), int(nerr), (int(nk) if topk > 1 else None)

    def host_cost(self, row):
        """`cost`'s tuple from the device row (host floats)."""
        return float(row[0]), int(row[1]), (int(row[2]) if self.learn["topk"] > 1 else None)

    def backward(self, xs, need):
        labels, probs = xs
        coeff = self.learn["coeff"]
        if self.fused:
            return [None, self.ops.softmax_logreg_bwd(probs, labels, coeff=coeff)]
        return [None, self.ops.logreg_bwd(probs, labels, coeff=coeff) if need[1] else None]


class Sum2Cost(Layer):
    is_cost = True

    def cost(self, xs, device=False):
        if device:  # [cost, 0, 0, 0] left on the device
            return self.xp.pad(self.ops.sum2_cost(xs[0], device=True), (0, 3))
        return float(self.ops.sum2_cost(xs[0])), None, None

    def host_cost(self, row):
        return float(row[0]), None, None

    def backward(self, xs, need):
        return [self.ops.sum2_bwd(xs[0], coeff=self.learn["coeff"])]


LAYER_CLASSES = {
    "data": DataLayer, "conv": ConvLayer, "local": LocalLayer, "fc": FCLayer, "pool": PoolLayer,
    "rnorm": NormLayer, "cmrnorm": NormLayer, "cnorm": NormLayer, "neuron": NeuronLayer,
    "eltsum": EltSumLayer, "eltmax": EltMaxLayer, "concat": ConcatLayer, "dropout": DropoutLayer,
    "dropout2": DropoutLayer, "softmax": SoftmaxLayer, "cost.logreg": LogregCost,
    "cost.sum2": Sum2Cost,
}


def make_layer(spec, backend, dtype, seed=0):
    """The layer object for ``spec`` (dropout layers also get the net's seed)."""
    cls = LAYER_CLASSES[spec.type]
    if cls is DropoutLayer:
        return cls(spec, backend, dtype, seed=seed)
    return cls(spec, backend, dtype)
