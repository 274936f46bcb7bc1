"""The cuda-convnet layer files: parse, check and normalise them into a list of `LayerSpec`.

A net is described by two INI files (see SEMANTICS.md): the layer-definition file (one section per
layer: ``type``, ``inputs`` and the architecture) and the layer-parameter file (learning rates,
momenta, weight decay, cost coefficients, normalisation constants; re-read when a run resumes).

    specs = parse_layer_files("layers.cfg", "layer-params.cfg", {0: (3, 32, 32), 1: ()})
    specs = parse_layer_texts(def_text, params_text, data_shapes, def_name=..., params_name=...)
    specs = apply_learn_params(specs, params_text, params_name)   # re-read the parameter file

``data_shapes`` maps a data layer's ``dataIdx`` to the shape of one case (a mapping, or a sequence
indexed by dataIdx): images ``(C, H, W)``, labels ``()``.

The result is in topological order (data layers first, then every layer after its inputs; file
order among equals). Every mistake raises `ConfigError` (a ValueError) with one line that names the
file, the section and the key: ``layers.cfg [conv2] filterSize: expected an integer, got 'five'``.
Keys are matched case-insensitively (cuda-convnet's ConfigParser lowercased them); messages use the
spelling of the file. Values: integers, floats (finite), booleans ``0/1/true/false``, per-input lists
``a,b`` (one value per input; a single value applies to every input), neurons ``relu``,
``tanh[a,b]``, ``brelu[a]``, ``linear[a,b]``, ..., learning rates as schedules
(`pyconvnet.schedule.parse_schedule`; a plain number is a constant schedule).

`LayerSpec` fields: ``name``, ``type``, ``inputs`` (tuple of layer names), ``params`` (structural,
from the definition file, normalised as below), ``learn`` (from the parameter file, as below),
``out_shape`` (shape of one case of the output: ``(C, H, W)`` for images, ``(F,)`` for flat
features, ``()`` for labels and for cost layers).

``params`` keys per type (tuples have one entry per input; every layer with inputs also has
``in_shapes``: the shape each input is viewed as, a free reshape of that input's ``out_shape``;
``neuron`` is ``None`` or ``(name, (params...))`` and is applied to the layer's own output):

=========  ========================================================================================
data       data_idx
conv       channels, groups, filter_size, padding, stride, img_size (tuples); filters (int, all
           filters = per-group filters * groups), modules (output side), shared_biases (bool),
           init_w (tuple), init_b, neuron
local      as conv, with shared_biases False (biases are untied)
fc         outputs, in_features (tuple), init_w (tuple), init_b, neuron
pool       mode ("max"/"avg"), channels, size, stride, start, outputs (resolved, never 0),
           img_size, neuron
rnorm      channels, size, img_size, neuron (and cmrnorm, cnorm); also scale, pow, min_div when
           the definition file gives them (defaults for ``learn``)
neuron     neuron (never None)
eltsum     coeffs (definition-file value or 1s), neuron
eltmax     neuron
concat     sizes (axis-0 size of each input), neuron
dropout    keep, enable (definition-file values or defaults), neuron (and dropout2)
softmax    (none besides in_shapes)
cost.*     coeff; cost.logreg also topk and classes (number of softmax outputs)
=========  ========================================================================================

``learn`` keys per type (the parameter file's values; for keys that may also be given in the
definition file -- coeffs, keep, enable, coeff, topk, scale, pow, minDiv -- the parameter file wins):

=========  ========================================================================================
conv/local eps_w (tuple of schedules), eps_b (schedule), mom_w (tuple), mom_b, wc (tuple) -- all
/fc        required (cuda-convnet required them); a schedule is called with progress p in [0, 1]
norms      scale, pow (required), min_div (default 1); scale as written (ops divide by size)
eltsum     coeffs; dropout/dropout2: keep, enable; cost.*: coeff; cost.logreg: coeff, topk
=========  ========================================================================================

cuda-convnet keys that only tuned performance or placed layers on GPUs are accepted and ignored
(`IGNORED_KEYS`); keys for features we do not have are accepted only with their neutral value
(`UNSUPPORTED_KEYS`). Any other unknown key is an error.
"""
from __future__ import annotations

import ast
import configparser
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Mapping

__all__ = ["ConfigError", "LayerSpec", "parse_layer_files", "parse_layer_texts",
           "apply_learn_params", "parse_neuron", "LAYER_TYPES", "NEURONS", "IGNORED_KEYS",
           "UNSUPPORTED_KEYS"]


class ConfigError(ValueError):
    """A mistake in a layer file; the message is one line naming the file, section and key."""


@dataclass
class LayerSpec:
    """One parsed layer (see the module docstring for ``params`` and ``learn``)."""
    name: str
    type: str
    inputs: tuple
    params: dict
    learn: dict
    out_shape: tuple


LAYER_TYPES = ("data", "conv", "local", "fc", "pool", "rnorm", "cmrnorm", "cnorm", "neuron",
               "eltsum", "eltmax", "concat", "dropout", "dropout2", "softmax", "cost.logreg",
               "cost.sum2")
WEIGHTED = ("conv", "local", "fc")
NORMS = ("rnorm", "cmrnorm", "cnorm")
COSTS = ("cost.logreg", "cost.sum2")

# Neuron name -> parameter names (must agree with pyconvnet.ops.neuron.NEURONS).
NEURONS = {"ident": (), "relu": (), "logistic": (), "tanh": ("a", "b"), "brelu": ("a",),
           "softrelu": (), "abs": (), "square": (), "sqrt": (), "linear": ("a", "b")}

_CONV_KEYS = ("channels", "filters", "filterSize", "padding", "stride", "groups", "initW", "initB")
# Definition-file keys per type (besides type, inputs, neuron and the dual keys below).
DEF_KEYS = {
    "data": ("dataIdx",),
    "conv": _CONV_KEYS + ("sharedBiases",),
    "local": _CONV_KEYS,
    "fc": ("outputs", "initW", "initB"),
    "pool": ("pool", "channels", "sizeX", "stride", "start", "outputsX"),
    "rnorm": ("channels", "size"), "cmrnorm": ("channels", "size"), "cnorm": ("channels", "size"),
    "neuron": (), "eltsum": (), "eltmax": (), "concat": (), "dropout": (), "dropout2": (),
    "softmax": (), "cost.logreg": (), "cost.sum2": (),
}
_NORM_DUAL = ("scale", "pow", "minDiv")
# Keys allowed in either file (the parameter file wins).
DUAL_KEYS = {"rnorm": _NORM_DUAL, "cmrnorm": _NORM_DUAL, "cnorm": _NORM_DUAL,
             "eltsum": ("coeffs",), "dropout": ("keep", "enable"), "dropout2": ("keep", "enable"),
             "cost.logreg": ("coeff", "topk"), "cost.sum2": ("coeff",)}
# Keys allowed only in the parameter file.
PARAM_KEYS = {t: ("epsW", "epsB", "momW", "momB", "wc") for t in WEIGHTED}
_NO_NEURON = ("data", "softmax") + COSTS

# Accepted and ignored: key -> (layer types, what it did in cuda-convnet).
IGNORED_KEYS = {
    "partialSum": (("conv", "local"), "cuda-convnet's weight-gradient kernel blocking (performance)"),
    "sumWidth": (("conv", "local"), "cuda-convnet2's weight-gradient kernel blocking (performance)"),
    "gpu": (tuple(t for t in LAYER_TYPES if t != "data"), "cuda-convnet2's layer-to-GPU placement"),
}
# Accepted only with their neutral value: key -> (file, layer types, neutral check, what it is).
_EMPTY = (lambda v: v.strip() == "", "empty")
_FALSE = (lambda v: v.strip().lower() in ("0", "false"), "0/false")
_ZERO = (lambda v: all(_is_zero(p) for p in v.split(",")), "0")
UNSUPPORTED_KEYS = {
    "randSparse": ("def", ("conv", "local"), _FALSE, "random sparse connectivity"),
    "filterChannels": ("def", ("conv", "local"), _EMPTY, "random sparse connectivity"),
    "initCFunc": ("def", ("conv", "local"), _EMPTY, "connectivity from a Python function"),
    "initWFunc": ("def", WEIGHTED, _EMPTY, "weights from a Python function"),
    "initBFunc": ("def", WEIGHTED, _EMPTY, "biases from a Python function"),
    "weightSource": ("def", WEIGHTED, _EMPTY, "weight sharing between layers"),
    "modulesX": ("def", ("conv", "local"), _ZERO, "an explicit output size"),
    "blocked": ("def", NORMS, _FALSE, "blocked (non-overlapping) normalisation windows"),
    "children": ("def", COSTS, _EMPTY, "aggregated cost layers"),
    "updatePeriod": ("params", WEIGHTED, _ZERO, "delayed weight updates"),
    "superEps": ("params", WEIGHTED, _ZERO, "cuda-convnet2's superEps"),
    "superMom": ("params", WEIGHTED, _ZERO, "cuda-convnet2's superMom"),
    "wball": ("params", WEIGHTED, _ZERO, "cuda-convnet2's wball"),
    "wcNormMax": ("params", ("conv",), _ZERO, "filter norm constraints"),
    "wcNormMin": ("params", ("conv",), _ZERO, "filter norm constraints"),
}


def _is_zero(s: str) -> bool:
    try:
        return float(s) == 0.0
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Reading one file and one section


def _read_ini(text: str, fname: str) -> dict:
    """{section: {key as written: value}} in file order; INI syntax errors become ConfigError."""
    cp = configparser.ConfigParser(interpolation=None, strict=True, default_section="\0",
                                   comment_prefixes=("#", ";"), inline_comment_prefixes=("#", ";"))
    cp.optionxform = str
    try:
        cp.read_string(text, source=fname)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"{fname} [{e.section}]: section given twice (again on line {e.lineno})") from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"{fname} [{e.section}] {e.option}: key given twice "
                          f"(again on line {e.lineno})") from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{fname}: line {e.lineno}: {e.line.strip()!r} comes before any "
                          f"[section]") from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        try:  # configparser stores repr(line)
            line = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            pass
        raise ConfigError(f"{fname}: line {lineno}: cannot parse {line.strip()!r} "
                          f"(expected key=value or [section])") from None
    return {s: dict(cp.items(s, raw=True)) for s in cp.sections()}


class _Section:
    """The keys of one section, looked up case-insensitively, with typed getters raising ConfigError."""

    def __init__(self, fname: str, name: str, items: dict):
        self.fname, self.name = fname, name
        self.raw = {}  # lower-case key -> (key as written, value)
        for k, v in items.items():
            if k.lower() in self.raw:
                raise ConfigError(f"{fname} [{name}] {k}: key given twice (also as "
                                  f"{self.raw[k.lower()][0]!r})")
            self.raw[k.lower()] = (k, v.strip())

    def error(self, key, msg) -> ConfigError:
        spelled = self.raw.get(key.lower(), (key,))[0] if key else None
        where = f"{self.fname} [{self.name}]" + (f" {spelled}" if spelled else "")
        return ConfigError(f"{where}: {msg}")

    def has(self, key):
        return key.lower() in self.raw

    def get(self, key, default=None, required=None):
        if key.lower() in self.raw:
            return self.raw[key.lower()][1]
        if required:
            raise self.error(key, f"missing ({required})")
        return default

    def _conv(self, key, text, kind):
        text = text.strip()
        if kind == "int":
            if not re.fullmatch(r"[+-]?\d+", text):
                raise self.error(key, f"expected an integer, got {text!r}")
            return int(text)
        if kind == "float":
            try:
                v = float(text)
            except ValueError:
                v = None
            if v is None or not math.isfinite(v) or "_" in text:
                raise self.error(key, f"expected a number, got {text!r}")
            return v
        if kind == "bool":
            low = text.lower()
            if low in ("1", "true"):
                return True
            if low in ("0", "false"):
                return False
            raise self.error(key, f"expected 0, 1, true or false, got {text!r}")
        raise AssertionError(kind)

    def scalar(self, key, kind, default=None, required=None, lo=None, hi=None, lo_open=False):
        text = self.get(key, None, required)
        if text is None:
            return default
        v = self._conv(key, text, kind)
        self.check_range(key, v, lo, hi, lo_open)
        return v

    def check_range(self, key, v, lo=None, hi=None, lo_open=False, what=""):
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise self.error(key, f"{what}must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.error(key, f"{what}must be <= {hi}, got {v}")

    def split(self, key, text, n):
        """Comma-separated per-input list of ``n`` items (one item applies to all)."""
        parts = _split_top(text)
        if any(p == "" for p in parts):
            raise self.error(key, f"empty item in the list {text!r}")
        if len(parts) == 1:
            return parts * n
        if len(parts) != n:
            raise self.error(key, f"expected 1 or {n} comma-separated values (one per input), "
                                  f"got {len(parts)}: {text!r}")
        return parts

    def per_input(self, key, kind, n, default=None, required=None, lo=None, hi=None, lo_open=False):
        text = self.get(key, None, required)
        if text is None:
            return None if default is None else (default,) * n
        vals = tuple(self._conv(key, p, kind) for p in self.split(key, text, n))
        for v in vals:
            self.check_range(key, v, lo, hi, lo_open)
        return vals


def _split_top(text: str) -> list:
    """Split at commas that are not inside [...] (schedules and neurons have their own lists)."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_neuron(text: str):
    """``relu`` -> ("relu", ()); ``tanh[1.7,0.66]`` -> ("tanh", (1.7, 0.66)). ValueError if bad."""
    m = re.fullmatch(r"\s*(\w+)\s*(?:\[(.*)\])?\s*", text)
    known = ", ".join(n + (f"[{','.join(p)}]" if p else "") for n, p in NEURONS.items())
    if not m or m.group(1) not in NEURONS:
        raise ValueError(f"unknown neuron {text.strip()!r} (known: {known})")
    name, args = m.group(1), m.group(2)
    want = NEURONS[name]
    vals = ()
    if args is not None:
        try:
            vals = tuple(float(a) for a in args.split(","))
        except ValueError:
            raise ValueError(f"neuron {text.strip()!r}: parameters must be numbers") from None
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"neuron {text.strip()!r}: parameters must be finite")
    if len(vals) != len(want):
        form = name + (f"[{','.join(want)}]" if want else "")
        raise ValueError(f"neuron {name} takes {len(want)} parameter(s), written {form}; "
                         f"got {text.strip()!r}")
    if name == "tanh" and vals[0] == 0:
        raise ValueError("neuron tanh[a,b]: a must be nonzero")
    if name == "brelu" and vals[0] <= 0:
        raise ValueError("neuron brelu[a]: a must be > 0")
    return name, vals


# ---------------------------------------------------------------------------------------------
# Checking keys


def _check_keys(sec: _Section, ltype: str, file_kind: str):
    """Every key of ``sec`` must be known for ``ltype`` in this file (def or params)."""
    dual = DUAL_KEYS.get(ltype, ())
    if file_kind == "def":
        allowed = ("type",) + (() if ltype == "data" else ("inputs",)) + DEF_KEYS[ltype] + dual
        if ltype not in _NO_NEURON:
            allowed += ("neuron",)
        other, other_name = PARAM_KEYS.get(ltype, ()), "layer-parameter"
    else:
        allowed = PARAM_KEYS.get(ltype, ()) + dual
        other, other_name = ("type", "inputs", "neuron") + DEF_KEYS[ltype], "layer-definition"
    low = {k.lower(): k for k in allowed}
    for lkey, (key, value) in sec.raw.items():
        if lkey in low:
            continue
        hint = next((h for h in IGNORED_KEYS if h.lower() == lkey), None)
        if hint and file_kind == "def" and ltype in IGNORED_KEYS[hint][0]:
            continue
        uns = next((u for u in UNSUPPORTED_KEYS if u.lower() == lkey), None)
        if uns:
            ukind, types, (neutral, neutral_txt), what = UNSUPPORTED_KEYS[uns]
            if ukind == file_kind and ltype in types:
                if neutral(value):
                    continue
                raise sec.error(key, f"{what} is not supported (only {uns}={neutral_txt} is "
                                     f"accepted), got {value!r}")
        if lkey in {k.lower() for k in other}:
            raise sec.error(key, f"belongs in the {other_name} file, not here")
        if lkey == "neuron":
            raise sec.error(key, f"{ltype} layers take no neuron")
        if lkey == "inputs" and ltype == "data":
            raise sec.error(key, "data layers take no inputs")
        names = ", ".join(allowed[1:] if file_kind == "def" else allowed) or "none"
        raise sec.error(key, f"unknown key for a {ltype} layer in the {_KIND_NAME[file_kind]} "
                             f"file (known: {names})")


_KIND_NAME = {"def": "layer-definition", "params": "layer-parameter"}


# ---------------------------------------------------------------------------------------------
# Shapes


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _images(sec, key, channels, i, inp, shape):
    """View input ``i`` (layer ``inp``, case shape ``shape``) as square ``channels``-channel images;
    returns its side. Images must have exactly ``channels`` channels; flat inputs are reinterpreted
    as cuda-convnet did (features / channels pixels, a perfect square)."""
    which = f"input {inp!r}" if i is None else f"input {i + 1} ({inp!r})"
    if len(shape) == 3:
        c, h, w = shape
        if c != channels:
            raise sec.error(key, f"{which} has {c} channels, not {channels}")
        if h != w:
            raise sec.error(key, f"{which} has non-square {h}x{w} images")
        return h
    feats = _prod(shape)
    if len(shape) == 0 or feats % channels:
        raise sec.error(key, f"{which} has shape {shape}, not interpretable as {channels}-channel "
                             f"images")
    pix = feats // channels
    side = math.isqrt(pix)
    if side * side != pix:
        raise sec.error(key, f"{which} gives {pix} pixels per channel, not a square image")
    return side


def _neuron(sec, ltype):
    text = sec.get("neuron", None, "required for neuron layers" if ltype == "neuron" else None)
    if text is None:
        return None
    try:
        return parse_neuron(text)
    except ValueError as e:
        raise sec.error("neuron", str(e)) from None


_N_INPUTS = {"pool": 1, "rnorm": 1, "cmrnorm": 1, "cnorm": 1, "neuron": 1, "dropout": 1,
             "dropout2": 1, "softmax": 1, "cost.logreg": 2, "cost.sum2": 1}


def _layer_params(sec, ltype, inputs, in_specs):
    """Structural params and output shape of one layer from its definition section."""
    n = len(inputs)
    shapes = [s.out_shape for s in in_specs]
    want = _N_INPUTS.get(ltype)
    if want is not None and n != want:
        raise sec.error("inputs", f"{ltype} layers take exactly {want} input(s), got {n}")
    if ltype == "eltmax" and n < 2:
        raise sec.error("inputs", f"eltmax layers take at least 2 inputs, got {n}")
    if ltype == "cost.logreg":
        if shapes[0] != ():
            raise sec.error("inputs", f"the first input must be the labels (a data layer of "
                                      f"shape ()), {inputs[0]!r} has shape {shapes[0]}")
        if in_specs[1].type != "softmax":
            raise sec.error("inputs", f"the second input must be a softmax layer, {inputs[1]!r} "
                                      f"is a {in_specs[1].type} layer")
    for i, (inp, s) in enumerate(zip(inputs, in_specs)):
        if s.type in COSTS:
            raise sec.error("inputs", f"{inp!r} is a cost layer and has no output to feed")
        if s.out_shape == () and not (ltype == "cost.logreg" and i == 0):
            raise sec.error("inputs", f"{inp!r} gives labels (shape ()), which only the first "
                                      f"input of a cost.logreg layer can take")
    p = {}
    if ltype not in _NO_NEURON:
        p["neuron"] = _neuron(sec, ltype)
    if ltype in ("conv", "local"):
        out = _conv_params(sec, ltype, inputs, shapes, p)
    elif ltype == "fc":
        p["outputs"] = sec.scalar("outputs", "int", required="required for fc layers", lo=1)
        p["in_features"] = tuple(_prod(s) for s in shapes)
        p["init_w"] = sec.per_input("initW", "float", n, default=0.01, lo=0.0)
        p["init_b"] = sec.scalar("initB", "float", default=0.0)
        p["in_shapes"] = tuple((f,) for f in p["in_features"])
        out = (p["outputs"],)
    elif ltype == "pool":
        out = _pool_params(sec, inputs[0], shapes[0], p)
    elif ltype in NORMS:
        req = f"required for {ltype} layers"
        c = p["channels"] = sec.scalar("channels", "int", required=req, lo=1)
        side = p["img_size"] = _images(sec, "channels", c, None, inputs[0], shapes[0])
        p["size"] = sec.scalar("size", "int", required=req, lo=1,
                               hi=c if ltype == "cmrnorm" else side)
        p["in_shapes"] = ((c, side, side),)
        out = (c, side, side)
    elif ltype in ("eltsum", "eltmax"):
        feats = [_prod(s) for s in shapes]
        if len(set(feats)) != 1:
            desc = ", ".join(f"{a!r} {s}" for a, s in zip(inputs, shapes))
            raise sec.error("inputs", f"all inputs of an {ltype} layer must have the same size, "
                                      f"got {desc}")
        out = shapes[0]
        p["in_shapes"] = (out,) * n
        if ltype == "eltsum":
            p["coeffs"] = sec.per_input("coeffs", "float", n, default=1.0)
    elif ltype == "concat":
        if all(len(s) == 3 for s in shapes) and len({s[1:] for s in shapes}) == 1:
            p["in_shapes"] = tuple(shapes)
            out = (sum(s[0] for s in shapes),) + shapes[0][1:]
        else:
            p["in_shapes"] = tuple((_prod(s),) for s in shapes)
            out = (sum(_prod(s) for s in shapes),)
        p["sizes"] = tuple(s[0] for s in p["in_shapes"])
    elif ltype in ("dropout", "dropout2"):
        p["keep"] = sec.scalar("keep", "float", default=0.5, lo=0.0, hi=1.0, lo_open=True)
        p["enable"] = sec.scalar("enable", "bool", default=True)
        p["in_shapes"] = (shapes[0],)
        out = shapes[0]
    elif ltype == "neuron":
        p["in_shapes"] = (shapes[0],)
        out = shapes[0]
    elif ltype == "softmax":
        p["in_shapes"] = ((_prod(shapes[0]),),)
        out = p["in_shapes"][0]
    elif ltype == "cost.logreg":
        p["classes"] = shapes[1][0]
        p["coeff"] = sec.scalar("coeff", "float", default=1.0)
        p["topk"] = sec.scalar("topk", "int", default=1, lo=1, hi=p["classes"])
        p["in_shapes"] = ((), shapes[1])
        out = ()
    elif ltype == "cost.sum2":
        p["coeff"] = sec.scalar("coeff", "float", default=1.0)
        p["in_shapes"] = (shapes[0],)
        out = ()
    else:  # pragma: no cover - every type is handled above
        raise AssertionError(ltype)
    return p, tuple(out)


def _conv_params(sec, ltype, inputs, shapes, p):
    n = len(inputs)
    req = f"required for {ltype} layers"
    ch = p["channels"] = sec.per_input("channels", "int", n, required=req, lo=1)
    filters = sec.per_input("filters", "int", n, required=req, lo=1)
    fs = p["filter_size"] = sec.per_input("filterSize", "int", n, required=req, lo=1)
    pad = p["padding"] = sec.per_input("padding", "int", n, default=0, lo=0)
    st = p["stride"] = sec.per_input("stride", "int", n, default=1, lo=1)
    g = p["groups"] = sec.per_input("groups", "int", n, default=1, lo=1)
    sides, mods, ks = [], [], []
    for i in range(n):
        side = _images(sec, "channels", ch[i], i if n > 1 else None, inputs[i], shapes[i])
        if ch[i] % g[i]:
            raise sec.error("groups", f"channels ({ch[i]}) not divisible by groups ({g[i]})")
        if fs[i] > 2 * pad[i] + side:
            raise sec.error("filterSize", f"filter ({fs[i]}) larger than the padded image "
                                          f"({side} + 2*{pad[i]})")
        mods.append(1 + -(-(2 * pad[i] + side - fs[i]) // st[i]))
        sides.append(side)
        ks.append(filters[i] * g[i])
    if len(set(ks)) != 1:
        raise sec.error("filters", f"every input must give the same number of output channels "
                                   f"(filters*groups), got {ks}")
    if len(set(mods)) != 1:
        raise sec.error("filterSize", f"every input must give the same output size, got {mods} "
                                      f"(from filterSize, padding, stride)")
    p["img_size"] = tuple(sides)
    p["filters"], p["modules"] = ks[0], mods[0]
    p["shared_biases"] = (sec.scalar("sharedBiases", "bool", default=True) if ltype == "conv"
                          else False)
    p["init_w"] = sec.per_input("initW", "float", n, default=0.01, lo=0.0)
    p["init_b"] = sec.scalar("initB", "float", default=0.0)
    p["in_shapes"] = tuple((c, s, s) for c, s in zip(ch, sides))
    return (ks[0], mods[0], mods[0])


def _pool_params(sec, inp, shape, p):
    req = "required for pool layers"
    mode = p["mode"] = sec.get("pool", required=req)
    if mode not in ("max", "avg"):
        raise sec.error("pool", f"expected max or avg, got {mode!r}")
    c = p["channels"] = sec.scalar("channels", "int", required=req, lo=1)
    img = p["img_size"] = _images(sec, "channels", c, None, inp, shape)
    size = p["size"] = sec.scalar("sizeX", "int", required=req, lo=1, hi=img)
    stride = p["stride"] = sec.scalar("stride", "int", required=req, lo=1)
    start = p["start"] = sec.scalar("start", "int", default=0)
    outs = sec.scalar("outputsX", "int", default=0, lo=0)
    key = "outputsX" if outs else "sizeX"
    if outs == 0:
        outs = -((size + start - img) // stride) + 1  # ceil((img - start - size) / stride) + 1
        if outs < 1:
            raise sec.error("start", f"no output window: image {img}, sizeX {size}, start {start}, "
                                     f"stride {stride}")
    if start + size <= 0:
        raise sec.error("start", f"window 0 covers [{start}, {start + size}) and misses the image")
    last = start + (outs - 1) * stride
    if last >= img:
        raise sec.error(key, f"window {outs - 1} starts at {last}, outside the {img}-pixel image")
    p["outputs"] = outs
    p["in_shapes"] = ((c, img, img),)
    return (c, outs, outs)


# ---------------------------------------------------------------------------------------------
# Learning parameters (the layer-parameter file)


def _schedule(sec, key, text):
    from pyconvnet.schedule import parse_schedule
    try:
        return parse_schedule(text)
    except ValueError as e:
        raise sec.error(key, f"bad learning-rate schedule {text!r}: {e}") from None


def _learn_params(spec: LayerSpec, psec: _Section | None, pname: str):
    """``learn`` dict of one layer from its parameter-file section (None when absent)."""
    t, n = spec.type, len(spec.inputs)
    sec = psec if psec is not None else _Section(pname, spec.name, {})
    if t in WEIGHTED:
        req = f"required for {t} layers in the layer-parameter file"
        eps_w = tuple(_schedule(sec, "epsW", s)
                      for s in sec.split("epsW", sec.get("epsW", required=req), n))
        return {"eps_w": eps_w,
                "eps_b": _schedule(sec, "epsB", sec.get("epsB", required=req)),
                "mom_w": sec.per_input("momW", "float", n, required=req),
                "mom_b": sec.scalar("momB", "float", required=req),
                "wc": sec.per_input("wc", "float", n, required=req)}
    p = spec.params
    if t in NORMS:
        req = f"required for {t} layers"
        return {"scale": sec.scalar("scale", "float", p.get("scale"), None if "scale" in p else req,
                                    lo=0.0),
                "pow": sec.scalar("pow", "float", p.get("pow"), None if "pow" in p else req),
                "min_div": sec.scalar("minDiv", "float", p.get("min_div", 1.0), lo=0.0,
                                      lo_open=True)}
    if t == "eltsum":
        return {"coeffs": sec.per_input("coeffs", "float", n) or p["coeffs"]}
    if t in ("dropout", "dropout2"):
        return {"keep": sec.scalar("keep", "float", p["keep"], lo=0.0, hi=1.0, lo_open=True),
                "enable": sec.scalar("enable", "bool", p["enable"])}
    if t == "cost.logreg":
        return {"coeff": sec.scalar("coeff", "float", p["coeff"]),
                "topk": sec.scalar("topk", "int", p["topk"], lo=1, hi=p["classes"])}
    if t == "cost.sum2":
        return {"coeff": sec.scalar("coeff", "float", p["coeff"])}
    return {}


def _norm_def_values(sec, p):
    """scale / pow / minDiv given in the definition file become the parameter file's defaults."""
    for key, name, kw in (("scale", "scale", dict(lo=0.0)), ("pow", "pow", {}),
                          ("minDiv", "min_div", dict(lo=0.0, lo_open=True))):
        if sec.has(key):
            p[name] = sec.scalar(key, "float", **kw)


def apply_learn_params(specs, params_text: str, params_name: str = "layer-params.cfg"):
    """New specs with ``learn`` re-read from a layer-parameter file's text (params unchanged)."""
    sections = _read_ini(params_text, params_name)
    by_name = {s.name: s for s in specs}
    for name in sections:
        if name not in by_name:
            raise ConfigError(f"{params_name} [{name}]: no layer named {name!r} in the "
                              f"layer-definition file")
    out = []
    for s in specs:
        psec = _Section(params_name, s.name, sections[s.name]) if s.name in sections else None
        if psec is not None:
            _check_keys(psec, s.type, "params")
        elif s.type in WEIGHTED or (s.type in NORMS and not {"scale", "pow"} <= set(s.params)):
            need = "epsW, epsB, momW, momB, wc" if s.type in WEIGHTED else "scale, pow"
            raise ConfigError(f"{params_name} [{s.name}]: section missing; {s.type} layer "
                              f"{s.name!r} needs {need}")
        out.append(replace(s, learn=_learn_params(s, psec, params_name)))
    return out


# ---------------------------------------------------------------------------------------------
# The whole definition file


def _data_shape(sec, idx, data_shapes):
    try:
        shape = data_shapes[idx]
    except (KeyError, IndexError, TypeError):
        have = list(data_shapes.keys()) if isinstance(data_shapes, Mapping) else \
            list(range(len(data_shapes)))
        raise sec.error("dataIdx", f"no data array {idx}: the data provider gives {have}") from None
    return tuple(int(d) for d in shape)


def _toposort(fname, layers, order):
    """Data layers first, then each layer after all its inputs (file order among the ready ones)."""
    done, out, state = set(), [], {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cyc = path[path.index(name):] + [name]
            raise ConfigError(f"{fname} [{name}] inputs: cycle {' -> '.join(cyc)}")
        state[name] = "active"
        for inp in layers[name][1]:
            visit(inp, path + [name])
        state[name] = "done"

    for name in order:
        visit(name, [])
    pending = [n for n in order if layers[n][0] == "data"] + \
        [n for n in order if layers[n][0] != "data"]
    while pending:
        for n in pending:
            if all(i in done for i in layers[n][1]):
                done.add(n)
                out.append(n)
                pending.remove(n)
                break
    return out


def parse_layer_texts(def_text: str, params_text: str, data_shapes, *,
                      def_name: str = "layers.cfg", params_name: str = "layer-params.cfg",
                      num_classes: int | None = None):
    """Parse the two files' texts (names are used in messages) into a list of `LayerSpec`.

    With ``num_classes`` (the data provider's), every cost.logreg's softmax must have that many
    outputs, as cuda-convnet required."""
    sections = _read_ini(def_text, def_name)
    if not sections:
        raise ConfigError(f"{def_name}: no layers (no [section] at all)")
    secs, layers = {}, {}
    for name, items in sections.items():
        sec = secs[name] = _Section(def_name, name, items)
        ltype = sec.get("type", required="every layer needs a type")
        if ltype not in LAYER_TYPES:
            raise sec.error("type", f"unknown layer type {ltype!r} (known: {', '.join(LAYER_TYPES)})")
        _check_keys(sec, ltype, "def")
        inputs = ()
        if ltype != "data":
            inputs = tuple(_split_top(sec.get("inputs", required=f"{ltype} layers need inputs")))
            for inp in inputs:
                if inp == "":
                    raise sec.error("inputs", f"empty layer name in {sec.get('inputs')!r}")
                if inp not in sections:
                    raise sec.error("inputs", f"no layer named {inp!r}")
        layers[name] = (ltype, inputs)
    specs = {}
    for name in _toposort(def_name, layers, list(sections)):
        sec, (ltype, inputs) = secs[name], layers[name]
        if ltype == "data":
            idx = sec.scalar("dataIdx", "int", required="required for data layers", lo=0)
            params, out = {"data_idx": idx}, _data_shape(sec, idx, data_shapes)
        else:
            params, out = _layer_params(sec, ltype, inputs, [specs[i] for i in inputs])
            if ltype in NORMS:
                _norm_def_values(sec, params)
        specs[name] = LayerSpec(name, ltype, inputs, params, {}, out)
    used = {i for _, inputs in layers.values() for i in inputs}
    for name, spec in specs.items():
        if spec.type not in COSTS and name not in used:
            raise ConfigError(f"{def_name} [{name}]: layer is not used by any other layer "
                              f"(only cost layers may be the net's outputs)")
    for name, spec in specs.items():
        if spec.type == "cost.logreg" and num_classes is not None and \
                spec.params["classes"] != num_classes:
            raise secs[name].error("inputs", f"softmax {spec.inputs[1]!r} gives "
                                             f"{spec.params['classes']} outputs, but the data has "
                                             f"{num_classes} classes")
    if not any(s.type in COSTS for s in specs.values()):
        raise ConfigError(f"{def_name}: the net has no cost layer (cost.logreg or cost.sum2)")
    return apply_learn_params(list(specs.values()), params_text, params_name)


def parse_layer_files(def_path, params_path, data_shapes, *, num_classes: int | None = None):
    """Read and parse the layer-definition and layer-parameter files (see `parse_layer_texts`)."""
    texts = []
    for what, path in (("layer-definition", def_path), ("layer-parameter", params_path)):
        try:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        except OSError as e:
            raise ConfigError(f"{os.fspath(path)}: cannot read the {what} file "
                              f"({e.strerror or e})") from None
    return parse_layer_texts(texts[0], texts[1], data_shapes, def_name=os.fspath(def_path),
                             params_name=os.fspath(params_path), num_classes=num_classes)
