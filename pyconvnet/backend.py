"""Backends: an array module plus the op functions of docs/OPS.md, as one flat namespace.

    b = get_backend("cpu")           # NumPy + pyconvnet.ops.<family>
    b = get_backend("gpu")           # CuPy  + pyconvnet.cuda.ops.<family>
    y = b.ops.conv_fwd(x, w, b, padding=2)
    a = b.xp.zeros((3, 4), dtype=b.xp.float32)

``Backend.ops`` holds exactly the documented ops (`OP_NAMES`, plus ``layer_id`` of the dropout
family), so layers call ``backend.ops.<name>`` and never branch on the backend.

GPU backend. Every op is looked up in ``pyconvnet.cuda.ops.<family>``. By default a missing op is an
error: ``get_backend("gpu")`` raises `BackendUnavailable` listing the missing ops, so a net never
runs half on the GPU without the user knowing. ``get_backend("gpu", fallback=True)`` instead runs
each missing op through its NumPy reference with a host round trip (CuPy arrays in and out; in-place
ops such as ``sgd_update`` copy their results back into the device arrays) -- slow, meant for bringing
up the CUDA ops one at a time; the list of ops that fell back is in ``Backend.fallbacks``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import SimpleNamespace

# family -> op names (docs/OPS.md)
OP_NAMES = {
    "conv": ("conv_out_size", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "bias_bwd"),
    "local": ("local_fwd", "local_bwd_data", "local_bwd_filter"),
    "fc": ("fc_fwd", "fc_bwd_data", "fc_bwd_filter"),
    "pool": ("pool_out_size", "pool_fwd", "pool_bwd"),
    "norm": ("cmrnorm_fwd", "cmrnorm_bwd", "rnorm_fwd", "rnorm_bwd", "cnorm_fwd", "cnorm_bwd"),
    "neuron": ("neuron_fwd", "neuron_bwd"),
    "dropout": ("dropout_mask", "dropout_fwd", "dropout_bwd", "layer_id"),
    "softmax": ("softmax_fwd", "softmax_bwd", "logreg_cost", "logreg_bwd", "softmax_logreg_bwd",
                "sum2_cost", "sum2_bwd"),
    "elt": ("eltsum_fwd", "eltsum_bwd", "eltmax_fwd", "eltmax_bwd", "concat_fwd", "concat_bwd"),
    "sgd": ("sgd_update",),
}
# ops that write into their array arguments (argument positions), for the host fallback
_INPLACE = {"sgd_update": (0, 1)}
# ops whose arguments and results carry no device arrays worth moving
_HOST_ONLY = {"conv_out_size", "pool_out_size", "layer_id"}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (no CuPy, no device, or ops missing)."""


@dataclass(frozen=True)
class Backend:
    """``name`` ("cpu" or "gpu"), ``xp`` (numpy or cupy), ``ops`` (namespace of op functions)."""
    name: str
    xp: object
    ops: SimpleNamespace
    fallbacks: tuple = field(default=())

    def asarray(self, a, dtype=None):
        """``a`` (NumPy or CuPy) as a C-contiguous array of this backend."""
        if self.name == "gpu":
            return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))
        if not isinstance(a, self.xp.ndarray) and hasattr(a, "get"):
            a = a.get()
        return self.xp.ascontiguousarray(a, dtype=dtype)

    def to_host(self, a):
        """A NumPy copy of an array of this backend."""
        if self.name == "gpu":
            return self.xp.asnumpy(a)
        return self.xp.array(a, copy=True)


def _collect(package: str, strict: bool):
    """{name: function} from ``package.<family>`` modules; missing ones listed when not strict."""
    found, missing = {}, []
    for family, names in OP_NAMES.items():
        try:
            mod = importlib.import_module(f"{package}.{family}")
        except ImportError as e:
            if strict or not f"{package}.{family}".startswith(e.name or ""):
                raise
            missing += names
            continue
        for n in names:
            fn = getattr(mod, n, None)
            if fn is None:
                if strict:
                    raise BackendUnavailable(f"{package}.{family} has no {n}")
                missing.append(n)
            else:
                found[n] = fn
    return found, missing


def _host_fallback(fn, name, cupy):
    """Run the NumPy op ``fn`` on host copies of CuPy arguments; results go back to the device."""
    def to_host(v):
        if isinstance(v, cupy.ndarray):
            return cupy.asnumpy(v)
        if isinstance(v, (list, tuple)):
            return type(v)(to_host(x) for x in v)
        return v

    def to_dev(v):
        if type(v).__module__ == "numpy" and hasattr(v, "shape"):
            return cupy.asarray(v)
        if isinstance(v, (list, tuple)):
            return type(v)(to_dev(x) for x in v)
        return v

    def run(*args, **kw):
        hargs = [to_host(a) for a in args]
        out = fn(*hargs, **{k: to_host(v) for k, v in kw.items()})
        for i in _INPLACE.get(name, ()):
            args[i].set(hargs[i])
        return to_dev(out)

    run.__name__ = name
    run.__doc__ = f"{name} through the NumPy reference with a host round trip (GPU fallback)."
    return run


def get_backend(name: str = "cpu", *, device_id: int = 0, fallback: bool = False) -> Backend:
    """The "cpu" (NumPy) or "gpu" (CuPy, device ``device_id``) backend.

    Raises `BackendUnavailable` when the GPU backend cannot run: CuPy missing, no device, or ops
    missing from ``pyconvnet.cuda.ops`` (unless ``fallback=True``, see the module docstring).
    """
    if name == "cpu":
        import numpy
        found, _ = _collect("pyconvnet.ops", strict=True)
        return Backend("cpu", numpy, SimpleNamespace(**found))
    if name != "gpu":
        raise ValueError(f"get_backend: unknown backend {name!r} (cpu or gpu)")
    try:
        import cupy
        cupy.cuda.Device(device_id).use()
    except Exception as e:  # no CuPy, no driver, bad device id
        raise BackendUnavailable(f"CuPy/CUDA device {device_id} not usable: "
                                 f"{type(e).__name__}: {e}") from None
    try:
        found, missing = _collect("pyconvnet.cuda.ops", strict=False)
    except ImportError as e:
        raise BackendUnavailable(f"pyconvnet.cuda.ops cannot be imported: {e}") from None
    if missing and not fallback:
        raise BackendUnavailable(f"the CUDA backend lacks {len(missing)} op(s): "
                                 f"{', '.join(missing)} (get_backend('gpu', fallback=True) runs "
                                 f"them on the host)")
    if missing:
        ref, _ = _collect("pyconvnet.ops", strict=True)
        for n in missing:
            found[n] = ref[n] if n in _HOST_ONLY else _host_fallback(ref[n], n, cupy)
    return Backend("gpu", cupy, SimpleNamespace(**found), fallbacks=tuple(missing))
