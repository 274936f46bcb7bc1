"""The net graph: every layer type through the whole-net gradient check, forward values by hand, the
learning rule, state, learning-parameter reloads, and the real 18pct net at a small batch."""
from __future__ import annotations

import numpy as np
import pytest

import pyconvnet.ops.fc
import pyconvnet.ops.norm
from pyconvnet.backend import OP_NAMES, BackendUnavailable, get_backend
from pyconvnet.config import parse_layer_texts
from pyconvnet.net import Net

# Every layer type: conv with groups and two inputs (untied biases), local, fc with two inputs, max and
# avg pooling, the three norms, a neuron layer, eltsum, eltmax, image and flat concat, dropout,
# dropout2, a softmax fused with its logreg and one that is not (it also feeds a sum2 cost), neurons
# with parameters, and layers feeding several consumers (data, fc2, cat2).
ALL_DEF = """\
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[conv1]
type=conv
inputs=data
channels=4
filters=3
groups=2
filterSize=3
padding=1
neuron=tanh[1.5,0.5]
initW=0.3
initB=0.1

[local1]
type=local
inputs=data
channels=4
filters=2
groups=2
filterSize=3
padding=1
stride=2
initW=0.3

[conv2]
type=conv
inputs=conv1,data
channels=6,4
groups=2,1
filters=2,4
filterSize=3,5
padding=1,2
stride=2
sharedBiases=0
initW=0.3,0.2

[cat1]
type=concat
inputs=conv2,local1

[pool1]
type=pool
pool=max
inputs=cat1
channels=8
sizeX=3
stride=2

[pool2]
type=pool
pool=avg
inputs=local1
channels=4
sizeX=2
stride=1
neuron=softrelu

[rnorm1]
type=rnorm
inputs=pool2
channels=4
size=3

[cmr1]
type=cmrnorm
inputs=rnorm1
channels=4
size=3

[cn1]
type=cnorm
inputs=cmr1
channels=4
size=2

[act1]
type=neuron
inputs=cn1
neuron=logistic

[fc1]
type=fc
inputs=pool1,act1
outputs=8
initW=0.3,0.5
neuron=tanh[1,1]

[fc2]
type=fc
inputs=act1
outputs=8
initW=0.5
initB=0.2

[sum1]
type=eltsum
inputs=fc1,fc2
coeffs=1,-0.5

[max1]
type=eltmax
inputs=fc1,fc2

[cat2]
type=concat
inputs=sum1,max1

[drop1]
type=dropout
inputs=cat2

[drop2]
type=dropout2
inputs=cat2

[fc3]
type=fc
inputs=drop1,drop2
outputs=5
initW=0.5

[probs]
type=softmax
inputs=fc3

[logprob]
type=cost.logreg
inputs=labels,probs

[probs2]
type=softmax
inputs=fc2

[logprob2]
type=cost.logreg
inputs=labels,probs2
topk=2

[sq]
type=cost.sum2
inputs=probs2
"""

ALL_PARAMS = """\
[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.001
[local1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.001
[conv2]
epsW=0.01,0.02
epsB=0.02
momW=0.9
momB=0.9
wc=0.001
[fc1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.001
[fc2]
epsW=exp[base=0.01;tgtFactor=10]
epsB=0.02
momW=0.9
momB=0.9
wc=0.001
[fc3]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.001
[rnorm1]
scale=0.5
pow=0.75
[cmr1]
scale=0.4
pow=0.75
minDiv=2
[cn1]
scale=0.3
pow=0.5
[drop1]
keep=0.7
[drop2]
keep=0.6
[logprob2]
coeff=0.5
[sq]
coeff=0.3
"""
ALL_SHAPES = {0: (4, 8, 8), 1: ()}

W_PARAMS = "epsW=0.1\nepsB=0.2\nmomW=0.9\nmomB=0.8\nwc=0.01\n"


def all_specs():
    return parse_layer_texts(ALL_DEF, ALL_PARAMS, ALL_SHAPES, def_name="all.cfg",
                             params_name="all-params.cfg")


def all_data(n=3, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, 8, 8, n)).astype(dtype), np.array([0, 3, 4, 1, 2][:n])]


def net18(shared_data, **kw):
    d = shared_data / "cuda-convnet-layers"
    from pyconvnet.config import parse_layer_files
    specs = parse_layer_files(d / "layers-18pct.cfg", d / "layer-params-18pct.cfg",
                              {0: (3, 32, 32), 1: ()})
    return Net(specs, "cpu", **kw)


class Spy:
    """A CPU backend whose ops count their calls."""

    def __init__(self):
        b = get_backend("cpu")
        self.calls = {}
        for name, fn in list(vars(b.ops).items()):
            def wrap(*a, _fn=fn, _name=name, **kw):
                self.calls[_name] = self.calls.get(_name, 0) + 1
                return _fn(*a, **kw)
            setattr(b.ops, name, wrap)
        self.backend = b


# --- gradient check -----------------------------------------------------------------------------

@pytest.mark.parametrize("train", [True, False])
def test_every_layer_type_passes_grad_check(train):
    net = Net(all_specs(), "cpu", seed=3)
    report = net.check_grads(all_data(), train=train, step=5, max_elems=12)
    assert report.passed, str(report)
    names = [r.name for r in report.rows]
    assert names == sorted(net.params(), key=names.index) and set(names) == set(net.params())
    assert all(r.rel_err < 1e-6 for r in report.rows), str(report)
    assert "PASSED" in str(report) and "conv2.w1" in str(report)


@pytest.mark.parametrize("module,name,victims", [
    (pyconvnet.ops.norm, "cmrnorm_bwd", {"local1.w0", "local1.b"}),
    (pyconvnet.ops.fc, "fc_bwd_filter", {"fc1.w0", "fc1.w1", "fc2.w0", "fc3.w0", "fc3.w1"}),
])
def test_grad_check_catches_a_wrong_backward(monkeypatch, module, name, victims):
    """A backward that is off by 0.1% must fail the check exactly where it matters."""
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: real(*a, **kw) * 1.001)
    report = Net(all_specs(), "cpu", seed=3).check_grads(all_data(), step=5)
    failed = {r.name for r in report.rows if not r.passed}
    assert failed == victims, str(report)
    assert not report.passed and "FAILED" in str(report)


def test_fused_softmax_and_skipped_work(shared_data):
    spy = Spy()
    net = Net(all_specs(), spy.backend, seed=1)
    net.forward(all_data(), train=True, step=0)
    spy.calls.clear()
    net.backward()
    # probs feeds only logprob: fused; probs2 also feeds sq: softmax_bwd + logreg_bwd
    assert spy.calls["softmax_logreg_bwd"] == 1
    assert spy.calls["softmax_bwd"] == 1 and spy.calls["logreg_bwd"] == 1
    # conv_bwd_data only for conv2's first input (conv1); never into the data layer
    assert spy.calls["conv_bwd_data"] == 1 and "local_bwd_data" not in spy.calls
    assert spy.calls["conv_bwd_filter"] == 3 and spy.calls["local_bwd_filter"] == 1

    spy = Spy()
    net = net18(shared_data, seed=0)
    net = Net(net.specs, spy.backend, seed=0)
    rng = np.random.default_rng(0)
    net.forward([rng.standard_normal((3, 32, 32, 2)).astype(np.float32), np.array([1, 2])],
                train=True, step=0)
    spy.calls.clear()
    net.backward()
    assert spy.calls["conv_bwd_data"] == 2 and spy.calls["conv_bwd_filter"] == 3
    assert "softmax_bwd" not in spy.calls and spy.calls["softmax_logreg_bwd"] == 1


def test_18pct_grad_check_on_real_images(shared_data):
    """--check-grads on CIFAR pixels: relu and max-pool kinks are stepped around, the rest agrees."""
    import pickle
    with open(shared_data / "cifar10-subset" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    x = batch[b"data"][:2].astype(np.float32).reshape(2, 3, 32, 32).transpose(1, 2, 3, 0) - 127
    lab = np.array(batch[b"labels"][:2])
    report = net18(shared_data, seed=0).check_grads([np.ascontiguousarray(x), lab], max_elems=2)
    assert report.passed, str(report)
    assert [r.name for r in report.rows] == ["conv1.w0", "conv1.b", "conv2.w0", "conv2.b",
                                             "conv3.w0", "conv3.b", "fc10.w0", "fc10.b"]


# --- forward values, parameters, learning rule --------------------------------------------------

SMALL_DEF = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc]
type=fc
inputs=data
outputs=3
initW=0.5
initB=0.25
neuron=tanh[2,0.5]
[probs]
type=softmax
inputs=fc
[cost]
type=cost.logreg
inputs=labels,probs
topk=2
[sq]
type=cost.sum2
inputs=fc
"""
SMALL_PARAMS = f"[fc]\n{W_PARAMS.replace('epsW=0.1', 'epsW=exp[base=0.1;tgtFactor=100]')}\n[sq]\ncoeff=0.5\n"


def small_net(dtype=np.float64, seed=0):
    specs = parse_layer_texts(SMALL_DEF, SMALL_PARAMS, {0: (2, 2, 2), 1: ()})
    return Net(specs, "cpu", seed=seed, dtype=dtype)


def test_forward_values_by_hand():
    net = small_net()
    rng = np.random.default_rng(1)
    x, lab = rng.standard_normal((2, 2, 2, 5)), np.array([0, 1, 2, 2, 1])
    costs = net.forward([x, lab], train=False, step=0)
    w, b = net.params()["fc.w0"], net.params()["fc.b"]
    z = 2 * np.tanh(0.5 * (w.T @ x.reshape(8, 5) + b))
    p = np.exp(z) / np.exp(z).sum(axis=0)
    rank = (p > p[lab, np.arange(5)]).sum(axis=0)
    assert list(costs) == ["cost", "sq"]
    c, nerr, ntop = costs["cost"]
    assert c == pytest.approx(-np.log(p[lab, np.arange(5)]).sum(), rel=1e-12)
    assert (nerr, ntop) == ((rank >= 1).sum(), (rank >= 2).sum())
    assert costs["sq"] == (pytest.approx(0.5 * (z ** 2).sum(), rel=1e-12), None, None)
    np.testing.assert_allclose(net.outputs("fc"), z, rtol=1e-12)
    np.testing.assert_allclose(net.predict(x), p, rtol=1e-12)
    with pytest.raises(RuntimeError, match="call forward first"):
        net.backward()  # predict() replaced what the layers kept for the backward
    assert net.objective(costs) == pytest.approx(costs["cost"][0] + 0.5 * costs["sq"][0])
    assert net.topk == 2


def test_update_rule_by_hand():
    net = small_net()
    rng = np.random.default_rng(2)
    x, lab = rng.standard_normal((2, 2, 2, 4)), np.array([0, 1, 2, 2])
    for step, p in enumerate((0.0, 0.5)):
        net.forward([x, lab], train=True, step=step)
        net.backward()
        w, inc, g = (dict((k, v.copy()) for k, v in d().items()) for d in (net.params, net.incs, net.grads))
        net.update(p)
        eps_w = 0.1 * 100.0 ** -p
        want_inc = 0.9 * inc["fc.w0"] - eps_w * (g["fc.w0"] / 4 + 0.01 * w["fc.w0"])
        np.testing.assert_allclose(net.incs()["fc.w0"], want_inc, rtol=1e-12)
        np.testing.assert_allclose(net.params()["fc.w0"], w["fc.w0"] + want_inc, rtol=1e-12)
        want_binc = 0.8 * inc["fc.b"] - 0.2 * g["fc.b"] / 4  # no weight decay on biases
        np.testing.assert_allclose(net.incs()["fc.b"], want_binc, rtol=1e-12)
        np.testing.assert_allclose(net.params()["fc.b"], w["fc.b"] + want_binc, rtol=1e-12)
    assert np.any(inc["fc.w0"] != 0)  # the second step did use momentum


def test_parameter_layouts_and_init(shared_data):
    net = Net(all_specs(), "cpu", seed=7)
    shapes = {k: v.shape for k, v in net.params().items()}
    assert shapes == {
        "conv1.w0": (2, 3, 3, 6), "conv1.b": (6, 1),
        "local1.w0": (25, 2, 3, 3, 4), "local1.b": (100, 1),
        "conv2.w0": (3, 3, 3, 4), "conv2.w1": (4, 5, 5, 4), "conv2.b": (100, 1),
        "fc1.w0": (32, 8), "fc1.w1": (64, 8), "fc1.b": (8, 1),
        "fc2.w0": (64, 8), "fc2.b": (8, 1), "fc3.w0": (16, 5), "fc3.w1": (16, 5), "fc3.b": (5, 1)}
    p = net.params()
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in p.values())
    assert np.all(p["conv1.b"] == np.float32(0.1)) and np.all(p["fc2.b"] == np.float32(0.2))
    assert np.all(p["local1.b"] == 0)
    assert all(np.all(a == 0) for a in net.incs().values())
    again, other = Net(all_specs(), "cpu", seed=7), Net(all_specs(), "cpu", seed=8)
    assert all(np.array_equal(a, again.params()[k]) for k, a in p.items())
    assert not np.array_equal(p["fc1.w0"], other.params()["fc1.w0"])
    w = net18(shared_data, seed=0).params()
    for k, std in (("fc10.w0", 0.01), ("conv2.w0", 0.01), ("conv1.w0", 0.0001)):
        assert w[k].std() == pytest.approx(std, rel=0.05) and abs(w[k].mean()) < 0.05 * std


def test_training_reduces_cost():
    specs = parse_layer_texts(SMALL_DEF.replace("outputs=3", "outputs=4"),
                              SMALL_PARAMS.replace("wc=0.01", "wc=0"), {0: (2, 2, 2), 1: ()})
    net = Net(specs, "cpu", seed=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 2, 32)).astype(np.float32)
    lab = (x[0, 0, 0] > 0).astype(np.int64) + 2 * (x[1, 1, 1] > 0)
    first = None
    for step in range(40):
        c = net.forward([x, lab], train=True, step=step)["cost"][0]
        first = c if first is None else first
        net.backward()
        net.update(step / 40)
    assert c < 0.6 * first


def test_18pct_small_batch(shared_data):
    net = net18(shared_data, seed=0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 32, 32, 4)) * 60).astype(np.float32)
    lab = np.array([3, 0, 9, 3])
    before = {k: v.copy() for k, v in net.params().items()}
    costs = net.forward([x, lab], train=True, step=0)
    assert list(costs) == ["logprob"] and np.isfinite(costs["logprob"][0])
    assert costs["logprob"][0] == pytest.approx(4 * np.log(10), rel=0.01)  # tiny initial weights
    assert net.outputs("pool1").shape == (32, 16, 16, 4) and net.outputs("probs").shape == (10, 4)
    net.backward()
    assert all(np.all(np.isfinite(g)) for g in net.grads().values())
    net.update(0.0)
    after = net.params()
    assert all(np.all(np.isfinite(a)) and not np.array_equal(a, before[k]) for k, a in after.items())
    p = net.predict(x)
    assert p.shape == (10, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=0), 1, rtol=1e-5)


# --- learning parameters, state -----------------------------------------------------------------

def test_set_learn_params(tmp_path):
    net = small_net()
    w = {k: v.copy() for k, v in net.params().items()}
    live = net.params()["fc.w0"]
    net.set_learn_params(SMALL_PARAMS.replace("base=0.1", "base=0.7"))
    assert net.specs[2].learn["eps_w"][0](0.0) == 0.7
    assert net.by_name["fc"].learn["eps_w"][0](0.0) == 0.7
    assert net.params()["fc.w0"] is live
    assert all(np.array_equal(v, w[k]) for k, v in net.params().items())
    f = tmp_path / "p.cfg"
    f.write_text(SMALL_PARAMS.replace("momW=0.9", "momW=0.5"))
    net.set_learn_params(f)
    assert net.by_name["fc"].learn["mom_w"] == (0.5,)
    specs = parse_layer_texts(SMALL_DEF, SMALL_PARAMS.replace("coeff=0.5", "coeff=3"), {0: (2, 2, 2), 1: ()})
    net.set_learn_params(specs)
    assert net.by_name["sq"].learn["coeff"] == 3.0
    assert all(np.array_equal(v, w[k]) for k, v in net.params().items())
    from pyconvnet.config import ConfigError
    with pytest.raises(ConfigError, match=r"p2\.cfg \[fc\] epsW: missing"):
        net.set_learn_params("[fc]\nepsB=1\n", "p2.cfg")
    with pytest.raises(ValueError, match="different net"):
        net.set_learn_params(all_specs())


def test_state_roundtrip():
    a, b = Net(all_specs(), "cpu", seed=1), Net(all_specs(), "cpu", seed=2)
    data = all_data()
    a.forward(data, train=True, step=0)
    a.backward()
    a.update(0.1)
    st = a.state()
    assert set(st) == {"params", "incs"} and set(st["params"]) == set(a.params())
    st["params"]["fc1.w0"] += 0  # copies, not the live arrays
    assert st["params"]["fc1.w0"] is not a.params()["fc1.w0"]
    b.load_state(st)
    # (train=False: dropout masks also depend on the net's seed, which differs)
    assert a.forward(data, train=False, step=3) == b.forward(data, train=False, step=3)
    assert all(np.array_equal(v, b.incs()[k]) for k, v in a.incs().items())
    bad = {"params": dict(st["params"]), "incs": st["incs"]}
    del bad["params"]["fc1.b"]
    with pytest.raises(ValueError, match=r"load_state: params do not fit the net: missing \['fc1\.b'\]"):
        b.load_state(bad)
    bad["params"]["fc1.b"] = np.zeros((3, 1))
    with pytest.raises(ValueError, match=r"load_state: params fc1\.b has shape \(3, 1\)"):
        b.load_state(bad)


# --- dropout, data checks -----------------------------------------------------------------------

DROP_DEF = """
[data]
type=data
dataIdx=0
[d1]
type=dropout
inputs=data
[d2]
type=dropout2
inputs=data
[s1]
type=cost.sum2
inputs=d1
[s2]
type=cost.sum2
inputs=d2
"""


def test_dropout_layers():
    from pyconvnet.ops.dropout import dropout_fwd, layer_id
    specs = parse_layer_texts(DROP_DEF, "[d1]\nkeep=0.6\n[d2]\nkeep=0.3\n", {0: (5, 7)})
    net = Net(specs, "cpu", seed=11)
    x = np.random.default_rng(0).standard_normal((5, 7, 6)).astype(np.float32)
    net.forward([x], train=True, step=4)
    np.testing.assert_array_equal(net.outputs("d1"), dropout_fwd(
        x.reshape(5, 7, 6), keep=0.6, seed=11, layer=layer_id("d1"), step=4, scale=True))
    np.testing.assert_array_equal(net.outputs("d2"), dropout_fwd(
        x, keep=0.3, seed=11, layer=layer_id("d2"), step=4, scale=False))
    m4 = net.outputs("d2") != 0
    net.forward([x], train=True, step=5)
    assert not np.array_equal(m4, net.outputs("d2") != 0)
    net.forward([x], train=False, step=5)
    np.testing.assert_array_equal(net.outputs("d1"), x)
    np.testing.assert_array_equal(net.outputs("d2"), x * np.float32(0.3))
    net.set_learn_params("[d1]\nenable=0\n[d2]\nenable=false\n")
    net.forward([x], train=True, step=5)
    np.testing.assert_array_equal(net.outputs("d1"), x)
    np.testing.assert_array_equal(net.outputs("d2"), x)


def test_forward_argument_errors():
    net = small_net(dtype=np.float32)
    x, lab = np.zeros((2, 2, 2, 3), np.float32), np.array([0, 1, 2])
    with pytest.raises(RuntimeError, match="call forward first"):
        net.backward()
    with pytest.raises(ValueError, match=r"data layer 'data' wants \(2, 2, 2, 'N'\), got shape \(2, 2, 3, 3\)"):
        net.forward([np.zeros((2, 2, 3, 3), np.float32), lab], train=True, step=0)
    with pytest.raises(ValueError, match="'data' got float64 data; this net computes in float32"):
        net.forward([x.astype(np.float64), lab], train=True, step=0)
    with pytest.raises(ValueError, match=r"'labels' has 2 cases, expected 3"):
        net.forward([x, lab[:2]], train=True, step=0)
    with pytest.raises(ValueError, match=r"labels for 'labels' must be whole numbers"):
        net.forward([x, np.array([0, 1.5, 2])], train=True, step=0)
    with pytest.raises(ValueError, match=r"reads data\[1\], but only 1 arrays were given"):
        net.forward([x], train=True, step=0)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        net.outputs("nope")
    c = net.forward([x, np.array([0.0, 1.0, 2.0], np.float32)], train=True, step=0)  # float labels
    assert c == net.forward([x, lab], train=True, step=0)
    with pytest.raises(RuntimeError, match="call forward and backward first"):
        net.update(0.0)
    net.backward()
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]"):
        net.update(1.5)


# --- backends -----------------------------------------------------------------------------------

def test_cpu_backend_namespace():
    b = get_backend("cpu")
    want = {n for names in OP_NAMES.values() for n in names}
    assert set(vars(b.ops)) == want
    import pyconvnet.ops.conv
    assert b.ops.conv_fwd is pyconvnet.ops.conv.conv_fwd and b.xp is np
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        get_backend("tpu")


def test_gpu_backend_unavailable_is_clear():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except Exception:
        pass
    with pytest.raises(BackendUnavailable, match="not usable|lacks"):
        get_backend("gpu")


def test_gpu_op_lookup_and_host_fallback():
    """Which CUDA ops exist is listed op by op; a missing op can run through the NumPy reference
    with a host round trip, in-place ops included (a stand-in array type plays CuPy here)."""
    from types import SimpleNamespace
    from pyconvnet.backend import _collect, _host_fallback
    found, missing = _collect("pyconvnet.cuda.ops", strict=False)
    assert set(found) | set(missing) == {n for names in OP_NAMES.values() for n in names}
    assert not set(found) & set(missing)

    class Dev(np.ndarray):
        def set(self, a):
            self[...] = a

    fake = SimpleNamespace(ndarray=Dev, asnumpy=lambda a: np.array(a.view(np.ndarray)),
                           asarray=lambda a: np.ascontiguousarray(a).view(Dev))
    ref = get_backend("cpu").ops
    rng = np.random.default_rng(0)
    w, inc, g = (rng.standard_normal((4, 3)) for _ in range(3))
    dw, dinc = w.copy().view(Dev), inc.copy().view(Dev)
    _host_fallback(ref.sgd_update, "sgd_update", fake)(dw, dinc, g.view(Dev), eps=0.1, mom=0.9, wc=0.01, n=2)
    ref.sgd_update(w, inc, g, eps=0.1, mom=0.9, wc=0.01, n=2)
    np.testing.assert_array_equal(dw, w)
    np.testing.assert_array_equal(dinc, inc)
    outs = _host_fallback(ref.eltsum_bwd, "eltsum_bwd", fake)(g.view(Dev), [1.0, -2.0])
    assert [type(o) for o in outs] == [Dev, Dev]
    np.testing.assert_array_equal(outs[1], -2 * g)


@pytest.mark.gpu
def test_gpu_net_matches_cpu(shared_data):
    cpu = net18(shared_data, seed=0)
    gpu = Net(cpu.specs, get_backend("gpu", fallback=True), seed=0)
    rng = np.random.default_rng(0)
    x, lab = (rng.standard_normal((3, 32, 32, 8)) * 60).astype(np.float32), np.arange(8) % 10
    for step in range(2):
        c1 = cpu.forward([x, lab], train=True, step=step)["logprob"]
        c2 = gpu.forward([x, lab], train=True, step=step)["logprob"]
        assert c2[0] == pytest.approx(c1[0], rel=1e-4) and c2[1] == c1[1]
        cpu.backward(), gpu.backward()
        cpu.update(0.5), gpu.update(0.5)
    for k, a in cpu.params().items():
        np.testing.assert_allclose(gpu.params()[k].get(), a, rtol=1e-3, atol=1e-6)
