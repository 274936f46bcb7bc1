"""Net.train_step: forward + backward, replayed as one CUDA graph on the GPU backend.

CPU part: train_step equals forward + backward, and the reasons a step cannot be captured. GPU part:
the graph's steps are bit-identical to eager steps (several steps, a batch of another size in
between, learning-rate changes; a dropout net, whose masks change every replay), bad labels still
raise, and the GPU follows the CPU within float32 tolerance over several graph steps."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pyconvnet.backend import get_backend
from pyconvnet.config import parse_layer_files, parse_layer_texts
from pyconvnet.cuda.graph import ENV, graph_blocker
from pyconvnet.net import Net

NETS = Path(__file__).resolve().parent.parent / "pyconvnet" / "nets"


def specs18():
    return parse_layer_files(NETS / "cifar10-18pct.cfg", NETS / "cifar10-18pct-params.cfg",
                             {0: (3, 32, 32), 1: ()})


def batch(n, seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((3, 32, 32, n)) * 60).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int64)]


DROP_DEF = """\
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[fc1]
type=fc
inputs=data
outputs=6
initW=0.1
neuron=relu

[drop]
type=dropout
inputs=fc1

[fc2]
type=fc
inputs=drop
outputs=3
initW=0.1

[probs]
type=softmax
inputs=fc2

[logprob]
type=cost.logreg
inputs=labels,probs
"""
DROP_PARAMS = """\
[fc1]
epsW=0.1
epsB=0.1
momW=0.9
momB=0.9
wc=0
[drop]
keep=0.5
[fc2]
epsW=0.1
epsB=0.1
momW=0.9
momB=0.9
wc=0
[logprob]
coeff=1
"""


def drop_specs():
    return parse_layer_texts(DROP_DEF, DROP_PARAMS, {0: (5,), 1: ()}, def_name="drop.cfg",
                             params_name="drop-params.cfg")


def test_train_step_is_forward_then_backward_on_the_cpu():
    a, b = Net(specs18(), "cpu", seed=0), Net(specs18(), "cpu", seed=0)
    for step in range(2):
        d = batch(16, step)
        ca = a.train_step(d, step=step)
        cb = b.forward(d, train=True, step=step)
        b.backward()
        assert ca == cb
        for k, g in a.grads().items():
            np.testing.assert_array_equal(g, b.grads()[k])
        a.update(0.5), b.update(0.5)
    assert a.graph_status == "eager: the cpu backend has no CUDA graphs"


def test_new_learning_parameters_drop_the_step_graph():
    net = Net(specs18(), "cpu", seed=0)
    net.train_step(batch(4, 0), step=0)
    assert net._graph is not None
    net.set_learn_params((NETS / "cifar10-18pct-params.cfg").read_text())
    assert net._graph is None  # the next train_step captures again, with the new values


def test_graph_blockers(monkeypatch):
    gpu = SimpleNamespace(name="gpu", fallbacks=())
    net18 = SimpleNamespace(backend=gpu, layers=Net(specs18(), "cpu").layers)
    assert graph_blocker(net18) is None
    monkeypatch.setenv(ENV, "0")
    assert graph_blocker(net18) == f"{ENV}=0"
    monkeypatch.delenv(ENV)
    drop = SimpleNamespace(backend=gpu, layers=Net(drop_specs(), "cpu").layers)
    assert graph_blocker(drop) is None  # the masks read the step from a device scalar
    fb = SimpleNamespace(backend=SimpleNamespace(name="gpu", fallbacks=("conv_fwd",)), layers=net18.layers)
    assert graph_blocker(fb) == "ops run on the host: conv_fwd"


# --- GPU ----------------------------------------------------------------------------------------

def _same(a, b):
    for k, v in a.params().items():
        np.testing.assert_array_equal(v.get(), b.params()[k].get(), err_msg=k)
        np.testing.assert_array_equal(a.incs()[k].get(), b.incs()[k].get(), err_msg=k)


@pytest.mark.gpu
def test_graph_steps_are_bit_identical_to_eager_steps():
    gb = get_backend("gpu")
    g, e = Net(specs18(), gb, seed=1), Net(specs18(), gb, seed=1)
    sizes = [32, 32, 32, 32, 20, 32, 32]  # capture on the 2nd step; a short batch runs eagerly
    for step, n in enumerate(sizes):
        d = batch(n, step)
        cg = g.train_step(d, step=step)
        ce = e.forward(d, train=True, step=step)
        e.backward()
        assert cg == ce, step
        for k, v in e.grads().items():
            np.testing.assert_array_equal(g.grads()[k].get(), v.get(), err_msg=f"step {step} {k}")
        np.testing.assert_array_equal(g.outputs("probs").get(), e.outputs("probs").get())
        p = step / len(sizes)
        g.update(p), e.update(p)
        _same(g, e)
    assert g.graph_status == "CUDA graph (5 replays)"  # steps 1 (captured, then launched), 2, 3, 5, 6
    # the graph still agrees after the eager test pass the trainer runs between epochs
    g.forward(batch(32, 99), train=False, step=0)
    e.forward(batch(32, 99), train=False, step=0)
    d = batch(32, 100)
    ce = e.forward(d, train=True, step=9)
    e.backward()
    assert g.train_step(d, step=9) == ce
    g.update(1.0), e.update(1.0)
    _same(g, e)


@pytest.mark.gpu
def test_graph_bad_labels_still_raise():
    net = Net(specs18(), get_backend("gpu"), seed=0)
    d = batch(8, 0)
    net.train_step(d, step=0)
    net.train_step(d, step=1)
    assert net.graph_status.startswith("CUDA graph")
    bad = [d[0], d[1].copy()]
    bad[1][3] = 10
    with pytest.raises(ValueError, match="logreg_cost"):
        net.train_step(bad, step=2)


@pytest.mark.gpu
def test_dropout_net_graph_steps_draw_the_eager_masks():
    """Dropout inside the graph: each replay reads its step from the device scalar, so the masks (and
    everything after them) are those of eager steps with the same step numbers, and of the CPU."""
    gb = get_backend("gpu")
    g, e, c = Net(drop_specs(), gb, seed=0), Net(drop_specs(), gb, seed=0), Net(drop_specs(), "cpu", seed=0)
    rng = np.random.default_rng(0)
    d = [rng.standard_normal((5, 16)).astype(np.float32), rng.integers(0, 3, 16)]
    for step in (0, 1, 2, 3, 7, 2**33 + 5):
        cg = g.train_step(d, step=step)
        ce = e.forward(d, train=True, step=step)
        e.backward()
        cc = c.train_step(d, step=step)
        assert cg == ce, step
        assert cg["logprob"][0] == pytest.approx(cc["logprob"][0], rel=1e-5)
        np.testing.assert_array_equal(g.outputs("drop").get() == 0, c.outputs("drop") == 0)
        for k, v in e.grads().items():
            np.testing.assert_array_equal(g.grads()[k].get(), v.get(), err_msg=f"step {step} {k}")
        g.update(0.0), e.update(0.0), c.update(0.0)
    assert g.graph_status == "CUDA graph (5 replays)"


@pytest.mark.gpu
def test_gpu_graph_steps_follow_the_cpu():
    cpu = Net(specs18(), "cpu", seed=3)
    gpu = Net(specs18(), get_backend("gpu"), seed=3)
    for step in range(5):
        d = batch(64, step)
        c1, c2 = cpu.train_step(d, step=step)["logprob"], gpu.train_step(d, step=step)["logprob"]
        assert c2[0] == pytest.approx(c1[0], rel=1e-4) and c2[1] == c1[1]
        cpu.update(0.3), gpu.update(0.3)
    assert gpu.graph_status.startswith("CUDA graph")
    for k, a in cpu.params().items():
        np.testing.assert_allclose(gpu.params()[k].get(), a, rtol=1e-3, atol=1e-5, err_msg=k)


@pytest.mark.gpu
def test_pinned_staging_keeps_every_batch():
    import cupy as cp

    from pyconvnet.cuda.feed import Stager

    st = Stager()
    rng = np.random.default_rng(0)
    host = [rng.standard_normal((64, 1000)).astype(np.float32) for _ in range(5)]
    outs = [st.to_device(h) for h in host]  # five copies in flight through two alternating buffers
    for h in host:
        h[...] = 0  # the caller's arrays may change at once: the data was staged
    rng = np.random.default_rng(0)
    for o in outs:
        np.testing.assert_array_equal(o.get(), rng.standard_normal((64, 1000)).astype(np.float32))
    s = cp.cuda.Stream(non_blocking=True)
    buf = cp.full((3, 7), np.nan, cp.float64)  # filled on the current stream: s must wait for that
    s.wait_event(cp.cuda.get_current_stream().record())
    want = np.arange(21.0).reshape(3, 7)
    assert st.to_device(want, out=buf, stream=s) is buf
    s.synchronize()
    np.testing.assert_array_equal(buf.get(), want)
    labels = np.array([3, 1, 2], np.int64)
    np.testing.assert_array_equal(st.to_device(labels).get(), labels)
