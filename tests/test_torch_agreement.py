"""The whole net against an independent implementation: the same layer files built in PyTorch
(benchmarks/torchnet.py), the same weights and batches, float64 on the CPU. Loss, and every weight
after several steps of the learning rule, must agree to rounding. Skipped where torch is absent (CI
does not install it: it is large)."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pyconvnet.backend import get_backend
from pyconvnet.config import parse_layer_files, parse_layer_texts
from pyconvnet.net import Net

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from torchnet import build, train_step  # noqa: E402
from train_torch import copy_weights, main as train_torch  # noqa: E402

SMALL_DEF = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[conv1]
type=conv
inputs=data
channels=3
filters=4
groups=1
filterSize=5
padding=1
stride=2
initW=0.05
neuron=relu
[rnorm1]
type=cmrnorm
inputs=conv1
channels=4
size=3
[conv2]
type=conv
inputs=rnorm1
channels=4
filters=3
groups=2
filterSize=3
padding=1
initW=0.1
initB=0.5
neuron=tanh[1.5,0.5]
[pool2]
type=pool
pool=avg
inputs=conv2
sizeX=3
stride=2
channels=6
[fc]
type=fc
inputs=pool2
outputs=5
initW=0.1
[probs]
type=softmax
inputs=fc
[logprob]
type=cost.logreg
inputs=labels,probs
"""
SMALL_PARAMS = """
[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.5
wc=0.01
[conv2]
epsW=0.02
epsB=0.01
momW=0.8
momB=0.9
wc=0.001
[fc]
epsW=0.05
epsB=0.05
momW=0.9
momB=0.9
wc=0.1
[rnorm1]
scale=0.01
pow=0.75
minDiv=2
[logprob]
coeff=1
"""


def _agree(specs, shape, classes, n, steps=3):
    torch.set_default_dtype(torch.float64)
    try:
        net = Net(specs, get_backend("cpu"), seed=1, dtype=np.float64)
        tn, opt = build(specs, torch, "cpu")
        copy_weights(net, tn, specs, torch)
        rng = np.random.default_rng(0)
        for step in range(steps):
            x, lab = rng.standard_normal((*shape, n)) * 40, rng.integers(0, classes, n)
            cost = net.forward([x, lab], train=True, step=step)["logprob"][0]
            net.backward()
            net.update(0.0)
            loss = train_step(tn, opt, torch.from_numpy(x.transpose(3, 0, 1, 2).copy()), torch.from_numpy(lab), n)
            assert cost == pytest.approx(loss.item(), rel=1e-12), f"step {step}"
            for s in specs:
                if s.type in ("conv", "fc"):
                    ours = net.params()[f"{s.name}.w0"]
                    theirs = tn.w[s.name + "_w"].detach().numpy()
                    theirs = theirs.transpose(1, 2, 3, 0) if s.type == "conv" else theirs.T
                    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13, err_msg=f"{s.name} step {step}")
                    np.testing.assert_allclose(net.params()[f"{s.name}.b"].ravel(),
                                               tn.w[s.name + "_b"].detach().numpy(), rtol=1e-10, atol=1e-13)
    finally:
        torch.set_default_dtype(torch.float32)


def test_18pct_agrees_with_pytorch(shared_data):
    d = shared_data / "cuda-convnet-layers"
    specs = parse_layer_files(d / "layers-18pct.cfg", d / "layer-params-18pct.cfg", {0: (3, 32, 32), 1: ()})
    _agree(specs, (3, 32, 32), 10, 16)


def test_groups_stride_cmrnorm_tanh_avgpool_agree_with_pytorch():
    specs = parse_layer_texts(SMALL_DEF, SMALL_PARAMS, {0: (3, 15, 15), 1: ()}, def_name="small.cfg",
                              params_name="small-params.cfg")
    _agree(specs, (3, 15, 15), 5, 7)


def test_training_run_tracks_pytorch(shared_data, tmp_path):
    """`pyconvnet train` and benchmarks/train_torch.py (PyTorch, the same initial weights and minibatches)
    on the 18pct files: over the first epochs, float32 rounding alone separates them, so the per-epoch
    training cost agrees to a few parts in 10^4 and the test error to a couple of the 932 images."""
    from pyconvnet import checkpoint
    from pyconvnet.cli import main as cli

    d = shared_data / "cuda-convnet-layers"
    files = ["--layer-def", d / "layers-18pct.cfg", "--layer-params", d / "layer-params-18pct.cfg",
             "--data-path", shared_data / "cifar10-subset", "--train-range", "1-5", "--test-range", "6",
             "--epochs", "2", "--seed", "1"]
    code = cli([str(a) for a in ["train", *files, "--device", "cpu", "--save-path", tmp_path / "ours"]],
               out=io.StringIO())
    assert code == 0
    _, _, meta = checkpoint.load(tmp_path / "ours")
    train_torch([str(a) for a in [*files, "--json", tmp_path / "torch.json"]])
    theirs = json.loads((tmp_path / "torch.json").read_text())["history"]
    ours_test = meta["history"]["test"]
    nb = 37  # minibatches per epoch: 4,660 cases in 128s
    train = meta["history"]["train"]
    for e in range(2):
        rows = train[e * nb:(e + 1) * nb]
        n = [128] * (nb - 1) + [4660 - 128 * (nb - 1)]
        ours_cost = sum(r[2] * k for r, k in zip(rows, n)) / 4660
        assert ours_cost == pytest.approx(theirs[e]["train_cost"], rel=3e-4), f"epoch {e + 1}"
        assert abs(ours_test[e][3] - theirs[e]["test_err"]) <= 2 / 932 + 1e-9, f"epoch {e + 1}"
        assert ours_test[e][2] == pytest.approx(theirs[e]["test_cost"], rel=1e-3), f"epoch {e + 1}"
