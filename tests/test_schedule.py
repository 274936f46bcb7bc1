"""Tests for pyconvnet.schedule: hand-computed rates, dexp step boundaries, round trips, errors."""
import pytest

from pyconvnet.schedule import Schedule, parse_schedule


def test_constant():
    for text in ("0.001", " 0.001 ", "constant[base=0.001]", "const[base=0.001]"):
        s = parse_schedule(text)
        assert s == Schedule("constant", 0.001)
        assert [s(p) for p in (0, 0.5, 1)] == [0.001, 0.001, 0.001]
    assert parse_schedule("0")(0.3) == 0.0


def test_exp():
    s = parse_schedule("exp[base=0.01;tgtFactor=100]")
    assert s(0) == pytest.approx(0.01, rel=1e-15)
    assert s(0.5) == pytest.approx(0.001, rel=1e-14)  # 0.01 * 100^-0.5
    assert s(1) == pytest.approx(0.0001, rel=1e-14)
    assert s(0.25) == pytest.approx(0.01 / 100 ** 0.25, rel=1e-14)


def test_linear():
    s = parse_schedule("linear[base=0.01;tgtFactor=4]")
    assert s(0) == pytest.approx(0.01, rel=1e-15)
    assert s(0.5) == pytest.approx(0.01 * (1 - 0.5 * 0.75), rel=1e-15)  # 0.00625
    assert s(0.5) == pytest.approx(0.00625, rel=1e-14)
    assert s(1) == pytest.approx(0.0025, rel=1e-14)


def test_dexp_steps_and_boundaries():
    # 4 steps from 0.08 down to 0.08/8 = 0.01: 0.08, 0.04, 0.02, 0.01 (factor 8^(1/3) = 2 per step)
    s = parse_schedule("dexp[base=0.08;tgtFactor=8;numSteps=4]")
    table = [(0, 0.08), (1e-9, 0.08), (0.25, 0.08), (0.25 + 1e-12, 0.04), (0.5, 0.04),
             (0.5 + 1e-12, 0.02), (0.6, 0.02), (0.75, 0.02), (0.75 + 1e-12, 0.01), (1, 0.01)]
    for p, want in table:
        assert s(p) == pytest.approx(want, rel=1e-14), p
    two = parse_schedule("dexp[base=1;tgtFactor=10;numSteps=2]")
    assert [two(0), two(0.5), two(0.5000001), two(1)] == pytest.approx([1, 1, 0.1, 0.1], rel=1e-15)


@pytest.mark.parametrize("text", [
    "0.001", "1e-05", "exp[base=0.01;tgtFactor=250]", "linear[base=0.5;tgtFactor=3.5]",
    "dexp[base=0.01;tgtFactor=250;numSteps=4]", "exp[base=0.1;tgtFactor=0.3333333333333333]",
])
def test_round_trip(text):
    s = parse_schedule(text)
    assert s.to_text() == text
    assert parse_schedule(s.to_text()) == s


def test_round_trip_normalises_spelling():
    s = parse_schedule(" dexp [ numSteps = 3 ; tgtFactor=10.0; base=0.02 ] ")
    assert s == Schedule("dexp", 0.02, 10.0, 3)
    assert s.to_text() == "dexp[base=0.02;tgtFactor=10;numSteps=3]"
    assert parse_schedule("constant[base=0.001]").to_text() == "0.001"


def test_schedule_is_frozen_and_validated():
    s = parse_schedule("0.1")
    with pytest.raises(AttributeError):
        s.base = 0.2
    with pytest.raises(ValueError, match="Schedule: numSteps must be >= 2, got 0"):
        Schedule("dexp", 0.1, 2.0)
    with pytest.raises(ValueError, match="Schedule: constant takes no tgtFactor"):
        Schedule("constant", 0.1, 2.0)
    with pytest.raises(ValueError, match="Schedule: unknown kind 'cos'"):
        Schedule("cos", 0.1)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_progress_out_of_range(p):
    with pytest.raises(ValueError, match=r"schedule '0.1': progress must be a number in \[0, 1\]"):
        parse_schedule("0.1")(p)


@pytest.mark.parametrize("text, match", [
    ("", "schedule '': expected a number or kind"),
    ("fast", "schedule 'fast': expected a number or kind"),
    ("cos[base=1]", "schedule 'cos\\[base=1\\]': unknown kind 'cos'; known: constant, exp"),
    ("exp[base=0.1]", r"schedule 'exp\[base=0.1\]': missing key\(s\) tgtFactor for exp"),
    ("dexp[base=0.1;tgtFactor=10]", r"missing key\(s\) numSteps for dexp"),
    ("exp[base=0.1;tgtFactor=10;numSteps=3]",
     "unknown key 'numSteps' for exp; expected base, tgtFactor"),
    ("exp[base=0.1;tgtfactor=10]", "unknown key 'tgtfactor' for exp"),
    ("exp[base=0.1;base=0.2;tgtFactor=10]", "key 'base' given twice"),
    ("exp[base=0.1;tgtFactor]", "expected key=value, got 'tgtFactor'"),
    ("exp[base=abc;tgtFactor=10]", "base must be a number, got 'abc'"),
    ("exp[base=inf;tgtFactor=10]", "base must be finite, got 'inf'"),
    ("nan", "schedule 'nan': rate must be finite"),
    ("dexp[base=0.1;tgtFactor=10;numSteps=1]", "numSteps must be >= 2, got 1"),
    ("dexp[base=0.1;tgtFactor=10;numSteps=2.5]", "numSteps must be an integer, got 2.5"),
    ("exp[base=0.1;tgtFactor=0]",
     "schedule 'exp\\[base=0.1;tgtFactor=0\\]': tgtFactor must be > 0"),
    ("linear[base=0.1;tgtFactor=-2]", "tgtFactor must be > 0, got -2"),
    ("-0.01", "schedule '-0.01': base must be >= 0, got -0.01"),
    ("exp[base=-1;tgtFactor=2]", "base must be >= 0, got -1"),
])
def test_bad_text(text, match):
    with pytest.raises(ValueError, match=match):
        parse_schedule(text)


def test_non_text():
    with pytest.raises(ValueError, match="schedule must be text, got float 0.1"):
        parse_schedule(0.1)
