"""Learning-rate schedules of cuda-convnet's layer-parameter files (``epsW=``, ``epsB=``).

A schedule maps training progress p in [0, 1] (epochs done / total epochs) to a learning rate:

=======================================  ==========================================================
text                                     rate at progress p
=======================================  ==========================================================
``0.001`` or ``constant[base=0.001]``    base (``const[...]`` is accepted as an alias)
``exp[base=b;tgtFactor=t]``              b * t**(-p)                      (b at p=0, b/t at p=1)
``dexp[base=b;tgtFactor=t;numSteps=s]``  b * t**(-i/(s-1)), i = max(0, ceil(p*s) - 1): s equal
                                         steps, the first at b, the last at b/t
``linear[base=b;tgtFactor=t]``           b * (1 - p*(1 - 1/t))            (b at p=0, b/t at p=1)
=======================================  ==========================================================

Rules: base >= 0, tgtFactor > 0, numSteps an integer >= 2; keys may come in any order, each once;
spaces around names, keys and values are ignored. ``ceil(p*s)`` is evaluated on the float64
product. Every error is a ``ValueError`` that quotes the text and says what is wrong.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

KEYS = {"constant": ("base",), "exp": ("base", "tgtFactor"), "linear": ("base", "tgtFactor"),
        "dexp": ("base", "tgtFactor", "numSteps")}
_ALIASES = {"const": "constant"}
_FORM = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[(.*)\]\s*$", re.S)


def _num(x: float) -> str:
    """Shortest text that parses back to exactly x ('10' rather than '10.0')."""
    r = repr(float(x))
    return r[:-2] if r.endswith(".0") else r


@dataclass(frozen=True)
class Schedule:
    """A schedule; call it with progress p in [0, 1] to get the rate (a float).

    kind is one of KEYS; tgt_factor is 1.0 unless kind uses it, num_steps 0 unless kind is dexp.
    Construction validates the fields (ValueError), so every Schedule is a usable one.
    """
    kind: str
    base: float
    tgt_factor: float = 1.0
    num_steps: int = 0

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise ValueError(f"Schedule: {problem}")

    def _problem(self) -> str | None:
        if self.kind not in KEYS:
            return f"unknown kind {self.kind!r}; known: {', '.join(KEYS)}"
        keys = KEYS[self.kind]
        for name, v in (("base", self.base), ("tgtFactor", self.tgt_factor)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                return f"{name} must be a finite number, got {v!r}"
        if self.base < 0:
            return f"base must be >= 0, got {_num(self.base)}"
        if self.tgt_factor <= 0:
            return f"tgtFactor must be > 0, got {_num(self.tgt_factor)}"
        if "tgtFactor" not in keys and self.tgt_factor != 1.0:
            return f"{self.kind} takes no tgtFactor (got {_num(self.tgt_factor)})"
        s = self.num_steps
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            return f"numSteps must be an integer, got {s!r}"
        if "numSteps" in keys and s < 2:
            return f"numSteps must be >= 2, got {s}"
        if "numSteps" not in keys and s != 0:
            return f"{self.kind} takes no numSteps (got {s})"
        return None

    def __call__(self, p: float) -> float:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"schedule {self.to_text()!r}: progress must be a number in [0, 1], "
                             f"got {p!r}")
        p = float(p)
        b, t = float(self.base), float(self.tgt_factor)
        if self.kind == "constant":
            return b
        if self.kind == "exp":
            return b * t ** (-p)
        if self.kind == "linear":
            return b * (1.0 - p * (1.0 - 1.0 / t))
        s = self.num_steps
        i = max(0, math.ceil(p * s) - 1)
        return b * t ** (-i / (s - 1))

    def to_text(self) -> str:
        """The layer-parameter text of this schedule; ``parse_schedule`` gives it back exactly."""
        if self.kind == "constant":
            return _num(self.base)
        vals = {"base": _num(self.base), "tgtFactor": _num(self.tgt_factor),
                "numSteps": str(self.num_steps)}
        return f"{self.kind}[" + ";".join(f"{k}={vals[k]}" for k in KEYS[self.kind]) + "]"


def _float(text: str, key: str, val: str) -> float:
    try:
        v = float(val)
    except ValueError:
        raise ValueError(f"schedule {text!r}: {key} must be a number, got {val!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"schedule {text!r}: {key} must be finite, got {val!r}")
    return v


def parse_schedule(text: str) -> Schedule:
    """Parse ``text`` (a number, or ``kind[key=value;...]``) into a Schedule; see the module doc."""
    if not isinstance(text, str):
        raise ValueError(f"schedule must be text, got {type(text).__name__} {text!r}")
    m = _FORM.match(text)
    if m is None:
        try:
            float(text)
        except ValueError:
            raise ValueError(f"schedule {text!r}: expected a number or kind[key=value;...] "
                             f"with kind one of {', '.join(KEYS)}") from None
        kind, vals = "constant", {"base": _float(text, "rate", text.strip())}
    else:
        kind = _ALIASES.get(m.group(1), m.group(1))
        if kind not in KEYS:
            raise ValueError(f"schedule {text!r}: unknown kind {m.group(1)!r}; "
                             f"known: {', '.join(KEYS)}")
        vals = {}
        for item in m.group(2).split(";"):
            if not item.strip():
                continue
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq:
                raise ValueError(f"schedule {text!r}: expected key=value, got {item.strip()!r}")
            if key not in KEYS[kind]:
                raise ValueError(f"schedule {text!r}: unknown key {key!r} for {kind}; "
                                 f"expected {', '.join(KEYS[kind])}")
            if key in vals:
                raise ValueError(f"schedule {text!r}: key {key!r} given twice")
            vals[key] = _float(text, key, val.strip())
        missing = [k for k in KEYS[kind] if k not in vals]
        if missing:
            raise ValueError(f"schedule {text!r}: missing key(s) {', '.join(missing)} for {kind}")
    steps = vals.get("numSteps", 0.0)
    if steps != int(steps):
        raise ValueError(f"schedule {text!r}: numSteps must be an integer, got {_num(steps)}")
    try:
        return Schedule(kind, vals["base"], vals.get("tgtFactor", 1.0), int(steps))
    except ValueError as e:
        raise ValueError(f"schedule {text!r}: {str(e).split(': ', 1)[1]}") from None
