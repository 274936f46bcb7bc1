"""The example nets in pyconvnet/nets/: every pair parses to the documented shapes, the AlexNets
have the paper's parameter counts and run one training step on the CPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyconvnet.config import parse_layer_files

NETS = Path(__file__).resolve().parent.parent / "pyconvnet" / "nets"
NAMES = sorted(p.stem for p in NETS.glob("*.cfg") if not p.stem.endswith("-params"))
CIFAR = {0: (3, 32, 32), 1: ()}
IMAGENET = {0: (3, 224, 224), 1: ()}

# Output shape of one case per layer, worked out by hand from the output-size rules.
SHAPES = {
    "default": {"conv1": (16, 32, 32), "pool1": (16, 16, 16), "conv2": (32, 16, 16),
                "pool2": (32, 8, 8), "fc10": (10,), "probs": (10,)},
    "cifar10-18pct": {"conv1": (32, 32, 32), "pool1": (32, 16, 16), "rnorm1": (32, 16, 16),
                      "conv2": (32, 16, 16), "pool2": (32, 8, 8), "rnorm2": (32, 8, 8),
                      "conv3": (64, 8, 8), "pool3": (64, 4, 4), "fc10": (10,)},
    "cifar10-80sec": {"conv1": (32, 32, 32), "pool1": (32, 16, 16), "conv2": (32, 16, 16),
                      "pool2": (32, 8, 8), "conv3": (64, 8, 8), "pool3": (64, 4, 4),
                      "fc64": (64,), "fc10": (10,)},
    # conv1: 1 + ceil((224 - 11) / 4) = 55; pools 3/2: 55 -> 27 -> 13 -> 6
    "alexnet": {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
                "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
                "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,),
                "fc8": (1000,), "probs": (1000,)},
    "alexnet-1tower": {"conv1": (64, 55, 55), "pool1": (64, 27, 27), "conv2": (192, 27, 27),
                       "pool2": (192, 13, 13), "conv3": (384, 13, 13), "conv4": (256, 13, 13),
                       "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,),
                       "fc7": (4096,), "fc8": (1000,), "probs": (1000,)},
}
# The paper's 60,965,224 weights and biases (two towers); the one-tower net is the 61,100,840 of
# the usual single-GPU AlexNet.
PARAM_COUNTS = {"alexnet": 60_965_224, "alexnet-1tower": 61_100_840}


def parse(name):
    shapes = IMAGENET if name.startswith("alexnet") else CIFAR
    return parse_layer_files(NETS / f"{name}.cfg", NETS / f"{name}-params.cfg", shapes)


def test_every_net_is_listed():
    assert set(NAMES) == set(SHAPES)
    for name in NAMES:
        assert (NETS / f"{name}-params.cfg").is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_net_parses_to_expected_shapes(name):
    specs = {s.name: s for s in parse(name)}
    for layer, shape in SHAPES[name].items():
        assert specs[layer].out_shape == shape, (name, layer)
    assert specs["logprob"].type == "cost.logreg"


@pytest.mark.parametrize("name", NAMES)
def test_files_begin_with_a_comment_naming_the_net(name):
    for f in (NETS / f"{name}.cfg", NETS / f"{name}-params.cfg"):
        first = f.read_text().splitlines()[0]
        assert first.startswith(f"# {name}:"), f


@pytest.mark.parametrize("name", ["alexnet", "alexnet-1tower"])
def test_alexnet_hyperparameters(name):
    specs = {s.name: s for s in parse(name)}
    groups = {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    for layer, g in groups.items():
        assert specs[layer].params["groups"] == ((g if name == "alexnet" else 1),)
        assert specs[layer].params["init_b"] == (1.0 if layer in ("conv2", "conv4", "conv5") else 0)
        learn = specs[layer].learn
        assert learn["mom_w"] == (0.9,) and learn["wc"] == (0.0005,)
        assert learn["eps_w"][0](0.0) == pytest.approx(0.01)
        assert learn["eps_w"][0](1.0) == pytest.approx(1e-5)  # divided by 10 three times
    assert specs["conv1"].params["stride"] == (4,) and specs["conv1"].params["filter_size"] == (11,)
    for layer in ("rnorm1", "rnorm2"):
        assert specs[layer].type == "cmrnorm" and specs[layer].params["size"] == 5
        # k=2, alpha=1e-4 (= scale/size), beta=0.75
        assert specs[layer].learn == {"scale": 0.0005, "pow": 0.75, "min_div": 2.0}
    for layer in ("dropout6", "dropout7"):
        assert specs[layer].type == "dropout2" and specs[layer].learn["keep"] == 0.5
    assert specs["dropout6"].inputs == ("fc6",) and specs["fc7"].inputs == ("dropout6",)
    assert specs["dropout7"].inputs == ("fc7",) and specs["fc8"].inputs == ("dropout7",)
    assert specs["logprob"].learn["topk"] == 5


@pytest.mark.parametrize("name", ["alexnet", "alexnet-1tower"])
def test_alexnet_trains_one_step_on_cpu(name):
    from pyconvnet.backend import get_backend
    from pyconvnet.net import Net
    net = Net(parse(name), get_backend("cpu"), seed=0)
    params = net.params()
    assert sum(int(np.prod(a.shape)) for a in params.values()) == PARAM_COUNTS[name]
    c2 = (48, 5, 5, 256) if name == "alexnet" else (64, 5, 5, 192)
    assert params["conv2.w0"].shape == c2
    assert params["fc6.w0"].shape == (9216, 4096)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 50, (3, 224, 224, 2)).astype(np.float32)
    labels = np.array([3, 999], dtype=np.int64)
    before = params["conv1.w0"].copy()
    costs = net.forward([x, labels], train=True, step=0)
    cost, nerr, nerr5 = costs["logprob"]
    assert np.isfinite(cost) and cost > 0
    assert 0 <= nerr <= 2 and 0 <= nerr5 <= nerr
    first = {"alexnet": 96, "alexnet-1tower": 64}[name]
    assert net.outputs("conv1").shape == (first, 55, 55, 2)
    assert net.outputs("pool5").shape == (256, 6, 6, 2)
    assert net.outputs("fc8").shape == (1000, 2)
    net.backward()
    net.update(0.0)
    after = net.params()["conv1.w0"]
    assert np.all(np.isfinite(after)) and not np.array_equal(after, before)
    cost2 = net.forward([x, labels], train=True, step=1)["logprob"][0]
    assert np.isfinite(cost2)
