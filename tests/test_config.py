"""The cuda-convnet layer-file parser: real files, shapes, schedules, and one test per kind of mistake
(each error message must name the file, the section and the key)."""
from __future__ import annotations

import re

import pytest

from pyconvnet.config import (ConfigError, IGNORED_KEYS, NEURONS, UNSUPPORTED_KEYS,
                              apply_learn_params, parse_layer_files, parse_layer_texts,
                              parse_neuron)

SHAPES = {0: (3, 8, 8), 1: ()}

BASE_DEF = """\
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
filterSize=3
padding=1

[pool1]
type=pool
pool=max
inputs=conv1
channels=4
sizeX=2
stride=2

[fc1]
type=fc
inputs=pool1
outputs=5

[probs]
type=softmax
inputs=fc1

[cost]
type=cost.logreg
inputs=labels,probs
"""

W_PARAMS = "epsW=0.1\nepsB=0.2\nmomW=0.9\nmomB=0.8\nwc=0.001\n"
BASE_PARAMS = f"[conv1]\n{W_PARAMS}\n[fc1]\n{W_PARAMS}"


def write(tmp_path, def_text, params_text=BASE_PARAMS):
    d, p = tmp_path / "layers.cfg", tmp_path / "layer-params.cfg"
    d.write_text(def_text)
    p.write_text(params_text)
    return d, p


def parse(tmp_path, def_text=BASE_DEF, params_text=BASE_PARAMS, shapes=SHAPES):
    d, p = write(tmp_path, def_text, params_text)
    return {s.name: s for s in parse_layer_files(d, p, shapes)}


def edit(text, section, key, value):
    """Set (or with value None remove) ``key`` in ``section`` of an INI text."""
    out, cur = [], None
    done = False
    for line in text.splitlines():
        m = re.match(r"\[(.*)\]", line)
        if m:
            if cur == section and not done and value is not None:
                out.insert(len(out) - (out and out[-1] == ""), f"{key}={value}")
                done = True
            cur = m.group(1)
        elif cur == section and line.split("=")[0].strip() == key:
            if value is not None:
                out.append(f"{key}={value}")
            done = True
            continue
        out.append(line)
    if cur == section and not done and value is not None:
        out.append(f"{key}={value}")
    return "\n".join(out) + "\n"


def fails(tmp_path, match, def_text=BASE_DEF, params_text=BASE_PARAMS, shapes=SHAPES):
    with pytest.raises(ConfigError, match=match) as e:
        parse(tmp_path, def_text, params_text, shapes)
    msg = str(e.value)
    assert "\n" not in msg
    assert isinstance(e.value, ValueError)
    return msg


# --- real files ---------------------------------------------------------------------------------

def test_18pct_shapes(shared_data):
    d = shared_data / "cuda-convnet-layers"
    specs = parse_layer_files(d / "layers-18pct.cfg", d / "layer-params-18pct.cfg",
                              {0: (3, 32, 32), 1: ()})
    got = [(s.name, s.type, s.out_shape) for s in specs]
    assert got == [
        ("data", "data", (3, 32, 32)), ("labels", "data", ()),
        ("conv1", "conv", (32, 32, 32)), ("pool1", "pool", (32, 16, 16)),
        ("rnorm1", "rnorm", (32, 16, 16)), ("conv2", "conv", (32, 16, 16)),
        ("pool2", "pool", (32, 8, 8)), ("rnorm2", "rnorm", (32, 8, 8)),
        ("conv3", "conv", (64, 8, 8)), ("pool3", "pool", (64, 4, 4)), ("fc10", "fc", (10,)),
        ("probs", "softmax", (10,)), ("logprob", "cost.logreg", ())]
    s = {x.name: x for x in specs}
    assert s["conv1"].params["filter_size"] == (5,) and s["conv1"].params["padding"] == (2,)
    assert s["conv1"].params["init_w"] == (0.0001,) and s["conv1"].params["neuron"] is None
    assert s["conv2"].params["neuron"] == ("relu", ())
    assert s["pool1"].params["neuron"] == ("relu", ()) and s["pool1"].params["mode"] == "max"
    assert s["pool2"].params["mode"] == "avg" and s["pool2"].params["outputs"] == 8
    assert s["rnorm1"].learn == {"scale": 0.00005, "pow": 0.75, "min_div": 1.0}
    assert s["fc10"].params["in_features"] == (1024,)
    lr = s["fc10"].learn
    assert lr["eps_w"][0](0.5) == 0.001 and lr["eps_b"](0.0) == 0.002
    assert lr["mom_w"] == (0.9,) and lr["mom_b"] == 0.9 and lr["wc"] == (1.0,)
    assert s["logprob"].inputs == ("labels", "probs") and s["logprob"].learn["coeff"] == 1.0


def test_80sec_shapes(shared_data):
    d = shared_data / "cuda-convnet-layers"
    specs = parse_layer_files(d / "layers-80sec.cfg", d / "layer-params-80sec.cfg",
                              [(3, 32, 32), ()])
    assert [(s.name, s.out_shape) for s in specs][2:10] == [
        ("conv1", (32, 32, 32)), ("pool1", (32, 16, 16)), ("conv2", (32, 16, 16)),
        ("pool2", (32, 8, 8)), ("conv3", (64, 8, 8)), ("pool3", (64, 4, 4)), ("fc64", (64,)),
        ("fc10", (10,))]
    assert {x.name: x for x in specs}["fc64"].learn["wc"] == (0.03,)


def test_text_variant_matches_files(tmp_path, shared_data):
    d = shared_data / "cuda-convnet-layers"
    a = parse_layer_files(d / "layers-18pct.cfg", d / "layer-params-18pct.cfg", {0: (3, 32, 32), 1: ()})
    b = parse_layer_texts((d / "layers-18pct.cfg").read_text(),
                          (d / "layer-params-18pct.cfg").read_text(), {0: (3, 32, 32), 1: ()},
                          def_name="x.cfg", params_name="y.cfg")
    assert [(s.name, s.out_shape, s.params) for s in a] == [(s.name, s.out_shape, s.params) for s in b]
    with pytest.raises(ConfigError, match=r"^y\.cfg \[conv1\] epsW: missing"):
        parse_layer_texts((d / "layers-18pct.cfg").read_text(), "[conv1]\nepsB=1\n",
                          {0: (3, 32, 32), 1: ()}, def_name="x.cfg", params_name="y.cfg")


# --- structure, defaults, lists -----------------------------------------------------------------

def test_defaults_and_order(tmp_path):
    # sections in a scrambled order come out topologically sorted, data layers first
    blocks = BASE_DEF.strip().split("\n\n")
    scrambled = "\n\n".join(blocks[::-1]) + "\n"
    s = parse(tmp_path, scrambled)
    assert list(s) == ["labels", "data", "conv1", "pool1", "fc1", "probs", "cost"]
    c = s["conv1"].params
    assert (c["stride"], c["groups"], c["init_w"], c["init_b"], c["shared_biases"]) == \
        ((1,), (1,), (0.01,), 0.0, True)
    assert c["filters"] == 4 and c["modules"] == 8 and s["conv1"].out_shape == (4, 8, 8)
    assert s["pool1"].params["start"] == 0 and s["pool1"].out_shape == (4, 4, 4)
    assert s["fc1"].params["init_w"] == (0.01,) and s["fc1"].out_shape == (5,)
    assert s["cost"].learn == {"coeff": 1.0, "topk": 1}


def test_conv_groups_multi_input_and_broadcast(tmp_path):
    text = BASE_DEF.replace("[pool1]", """[conv2]
type=conv
inputs=conv1,data
channels=4,3
groups=2,1
filters=3,6
filterSize=3
stride=2
padding=1
sharedBiases=false
initW=0.1,0.2

[pool1]""").replace("inputs=conv1\nchannels=4", "inputs=conv2\nchannels=6")
    params = BASE_PARAMS + f"\n[conv2]\n{W_PARAMS}".replace("epsW=0.1", "epsW=0.1,dexp[base=1;tgtFactor=100;numSteps=3]")
    s = parse(tmp_path, text, params)["conv2"]
    p = s.params
    assert p["channels"] == (4, 3) and p["groups"] == (2, 1) and p["filter_size"] == (3, 3)
    assert p["filters"] == 6 and p["modules"] == 5 and s.out_shape == (6, 5, 5)  # 1 + ceil(7/2)
    assert p["shared_biases"] is False and p["init_w"] == (0.1, 0.2)
    assert p["in_shapes"] == ((4, 8, 8), (3, 8, 8))
    lr = s.learn
    assert lr["eps_w"][0](1.0) == 0.1
    assert [lr["eps_w"][1](q) for q in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.1, 0.01])
    assert lr["mom_w"] == (0.9, 0.9) and lr["wc"] == (0.001, 0.001)


def test_local_and_flat_input_as_images(tmp_path):
    # fc outputs 48 = 3 channels of 4x4, read as images by a local layer (as cuda-convnet did)
    text = BASE_DEF.replace("outputs=5", "outputs=48").replace("""[probs]
type=softmax
inputs=fc1""", """[loc]
type=local
inputs=fc1
channels=3
filters=2
filterSize=3

[probs]
type=softmax
inputs=loc""")
    s = parse(tmp_path, text, BASE_PARAMS + f"\n[loc]\n{W_PARAMS}")
    assert s["loc"].out_shape == (2, 2, 2) and s["loc"].params["shared_biases"] is False
    assert s["loc"].params["in_shapes"] == ((3, 4, 4),)
    assert s["probs"].out_shape == (8,) and s["cost"].params["classes"] == 8


def test_other_layer_types(tmp_path):
    text = BASE_DEF.replace("""[fc1]
type=fc
inputs=pool1""", """[n1]
type=cmrnorm
inputs=pool1
channels=4
size=3
scale=0.1
pow=0.5
neuron=brelu[6]

[n2]
type=cnorm
inputs=n1
channels=4
size=2

[act]
type=neuron
inputs=n2
neuron=linear[2, -1]

[cat]
type=concat
inputs=act,pool1

[catflat]
type=concat
inputs=act,fc0

[fc0]
type=fc
inputs=pool1
outputs=7

[sum]
type=eltsum
inputs=cat,cat
coeffs=1,-2

[max]
type=eltmax
inputs=sum,cat

[drop]
type=dropout2
inputs=max
keep=0.25

[fc1]
type=fc
inputs=drop,catflat""") + "\n[sq]\ntype=cost.sum2\ninputs=drop\n"
    params = BASE_PARAMS.replace("[fc1]", "[fc0]\n" + W_PARAMS + "\n[fc1]") + \
        "\n[n1]\npow=0.75\nminDiv=2\n[n2]\nscale=1\npow=0.5\n[drop]\nenable=0\n[sq]\ncoeff=0.5\n" \
        "[cost]\ntopk=3\n[sum]\ncoeffs=3\n"
    s = parse(tmp_path, text, params)
    assert s["n1"].params["neuron"] == ("brelu", (6.0,))
    assert s["n1"].learn == {"scale": 0.1, "pow": 0.75, "min_div": 2.0}  # params file wins
    assert s["act"].params["neuron"] == ("linear", (2.0, -1.0)) and s["act"].out_shape == (4, 4, 4)
    assert s["cat"].out_shape == (8, 4, 4) and s["cat"].params["sizes"] == (4, 4)
    assert s["catflat"].out_shape == (71,) and s["catflat"].params["sizes"] == (64, 7)
    assert s["sum"].params["coeffs"] == (1.0, -2.0) and s["sum"].learn["coeffs"] == (3.0, 3.0)
    assert s["max"].out_shape == (8, 4, 4)
    assert s["drop"].learn == {"keep": 0.25, "enable": False}
    assert s["fc1"].params["in_features"] == (128, 71)
    assert s["sq"].learn == {"coeff": 0.5} and s["sq"].out_shape == ()
    assert s["cost"].learn == {"coeff": 1.0, "topk": 3}


def test_hints_comments_and_case(tmp_path):
    text = edit(BASE_DEF, "conv1", "partialSum", "4")
    text = edit(text, "conv1", "sumWidth", "2")
    text = edit(text, "conv1", "randSparse", "0")
    text = edit(text, "conv1", "gpu", "0")
    text = edit(text, "fc1", "initWFunc", "")
    text = text.replace("filterSize=3", "FILTERSIZE=3   # inline comment")
    params = BASE_PARAMS.replace("epsW=0.1", "epsw=0.1 ; comment") + "updatePeriod=0\n"
    s = parse(tmp_path, text, params)
    assert s["conv1"].params["filter_size"] == (3,)
    assert s["conv1"].learn["eps_w"][0](0) == 0.1
    assert {"partialSum", "sumWidth", "gpu"} <= set(IGNORED_KEYS)
    assert {"randSparse", "initWFunc", "initCFunc", "weightSource"} <= set(UNSUPPORTED_KEYS)


def test_neuron_parsing_matches_ops():
    from pyconvnet.ops.neuron import NEURONS as OPS_NEURONS
    assert {k: len(v) for k, v in NEURONS.items()} == OPS_NEURONS
    assert parse_neuron(" tanh[1.7159, 0.6666] ") == ("tanh", (1.7159, 0.6666))
    assert parse_neuron("relu") == ("relu", ())
    for bad, msg in (("relux", "unknown neuron"), ("tanh[1]", "takes 2"), ("relu[1]", "takes 0"),
                     ("brelu[x]", "must be numbers"), ("brelu[-1]", "a must be > 0"),
                     ("tanh[0,1]", "nonzero"), ("linear[1,inf]", "finite")):
        with pytest.raises(ValueError, match=re.escape(msg)):
            parse_neuron(bad)


def test_apply_learn_params(tmp_path):
    s0 = list(parse(tmp_path).values())
    s1 = apply_learn_params(s0, BASE_PARAMS.replace("epsW=0.1", "epsW=exp[base=0.5;tgtFactor=10]"),
                            "new.cfg")
    a, b = {s.name: s for s in s0}, {s.name: s for s in s1}
    assert b["conv1"].learn["eps_w"][0](1.0) == pytest.approx(0.05)
    assert a["conv1"].learn["eps_w"][0](1.0) == 0.1  # the old specs are untouched
    assert b["conv1"].params is a["conv1"].params
    with pytest.raises(ConfigError, match=r"^new\.cfg \[fc1\] momB: missing"):
        apply_learn_params(s0, BASE_PARAMS[:-len("wc=0.001\n") - len("momB=0.8\n")] + "wc=0\n",
                           "new.cfg")


# --- mistakes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("section,key,value,match", [
    ("conv1", "type", "convv", r"layers\.cfg \[conv1\] type: unknown layer type 'convv'"),
    ("conv1", "filterSize", None, r"layers\.cfg \[conv1\] filterSize: missing"),
    ("conv1", "type", None, r"layers\.cfg \[conv1\] type: missing"),
    ("conv1", "inputs", None, r"layers\.cfg \[conv1\] inputs: missing"),
    ("conv1", "filterSize", "five", r"layers\.cfg \[conv1\] filterSize: expected an integer, got 'five'"),
    ("conv1", "filterSize", "3.0", r"\[conv1\] filterSize: expected an integer, got '3.0'"),
    ("conv1", "padding", "-1", r"\[conv1\] padding: must be >= 0, got -1"),
    ("conv1", "stride", "0", r"\[conv1\] stride: must be >= 1"),
    ("conv1", "initW", "abc", r"\[conv1\] initW: expected a number, got 'abc'"),
    ("conv1", "initB", "nan", r"\[conv1\] initB: expected a number, got 'nan'"),
    ("conv1", "sharedBiases", "maybe", r"\[conv1\] sharedBiases: expected 0, 1, true or false"),
    ("conv1", "filtersizee", "3", r"layers\.cfg \[conv1\] filtersizee: unknown key for a conv layer"),
    ("fc1", "sharedBiases", "1", r"\[fc1\] sharedBiases: unknown key for a fc layer"),
    ("conv1", "inputs", "dta", r"layers\.cfg \[conv1\] inputs: no layer named 'dta'"),
    ("conv1", "inputs", "data,", r"\[conv1\] inputs: empty layer name"),
    ("conv1", "inputs", "pool1", r"inputs: cycle (conv1 -> pool1 -> conv1|pool1 -> conv1 -> pool1)"),
    ("conv1", "channels", "4", r"layers\.cfg \[conv1\] channels: input 'data' has 3 channels, not 4"),
    ("conv1", "groups", "2", r"\[conv1\] groups: channels \(3\) not divisible by groups \(2\)"),
    ("conv1", "filterSize", "11", r"\[conv1\] filterSize: filter \(11\) larger than the padded image"),
    ("conv1", "filters", "2,2", r"\[conv1\] filters: expected 1 or 1 comma-separated values"),
    ("conv1", "neuron", "tanh[1]", r"\[conv1\] neuron: neuron tanh takes 2 parameter"),
    ("conv1", "neuron", "relux", r"\[conv1\] neuron: unknown neuron 'relux'"),
    ("conv1", "randSparse", "1", r"\[conv1\] randSparse: random sparse connectivity is not supported"),
    ("conv1", "initWFunc", "m.f", r"\[conv1\] initWFunc: weights from a Python function is not supported"),
    ("conv1", "initCFunc", "m.f", r"\[conv1\] initCFunc: .* not supported"),
    ("conv1", "weightSource", "fc1", r"\[conv1\] weightSource: weight sharing .* not supported"),
    ("conv1", "epsW", "0.1", r"layers\.cfg \[conv1\] epsW: belongs in the layer-parameter file"),
    ("pool1", "pool", "min", r"\[pool1\] pool: expected max or avg, got 'min'"),
    ("pool1", "sizeX", "9", r"\[pool1\] sizeX: must be <= 8, got 9"),
    ("pool1", "start", "8", r"\[pool1\] start: no output window: image 8, sizeX 2, start 8"),
    ("pool1", "outputsX", "9", r"\[pool1\] outputsX: window 8 starts at 16, outside"),
    ("pool1", "start", "-3", r"\[pool1\] start: window 0 covers \[-3, -1\) and misses"),
    ("pool1", "channels", "3", r"\[pool1\] channels: input 'conv1' has 4 channels, not 3"),
    ("fc1", "outputs", "0", r"\[fc1\] outputs: must be >= 1"),
    ("fc1", "inputs", "labels", r"\[fc1\] inputs: 'labels' gives labels"),
    ("fc1", "initW", "0.1,0.2", r"\[fc1\] initW: expected 1 or 1 comma-separated values"),
    ("probs", "neuron", "relu", r"layers\.cfg \[probs\] neuron: softmax layers take no neuron"),
    ("probs", "inputs", "fc1,fc1", r"\[probs\] inputs: softmax layers take exactly 1 input"),
    ("labels", "dataIdx", "5", r"layers\.cfg \[labels\] dataIdx: no data array 5: the data provider gives \[0, 1\]"),
    ("labels", "inputs", "data", r"\[labels\] inputs: data layers take no inputs"),
    ("cost", "inputs", "probs,labels", r"\[cost\] inputs: the first input must be the labels"),
    ("cost", "inputs", "labels,fc1", r"\[cost\] inputs: the second input must be a softmax layer, 'fc1' is a fc layer"),
    ("cost", "inputs", "labels", r"layers\.cfg \[cost\] inputs: cost\.logreg layers take exactly 2 input\(s\), got 1"),
    ("cost", "topk", "6", r"\[cost\] topk: must be <= 5, got 6"),
    ("cost", "children", "x", r"\[cost\] children: aggregated cost layers is not supported"),
])
def test_definition_mistakes(tmp_path, section, key, value, match):
    fails(tmp_path, match, edit(BASE_DEF, section, key, value))


def test_num_classes(tmp_path):
    d, p = write(tmp_path, BASE_DEF)
    assert parse_layer_files(d, p, SHAPES, num_classes=5)[-1].params["classes"] == 5
    with pytest.raises(ConfigError, match=r"layers\.cfg \[cost\] inputs: softmax 'probs' gives 5 "
                                          r"outputs, but the data has 10 classes"):
        parse_layer_files(d, p, SHAPES, num_classes=10)


def test_eltsum_eltmax_shape_mismatch(tmp_path):
    text = BASE_DEF.replace("[fc1]", "[bad]\ntype=eltsum\ninputs=pool1,conv1\n\n[fc1]") \
        .replace("inputs=pool1\noutputs=5", "inputs=bad\noutputs=5")
    fails(tmp_path, r"layers\.cfg \[bad\] inputs: all inputs of an eltsum layer must have the same "
                    r"size, got 'pool1' \(4, 4, 4\), 'conv1' \(4, 8, 8\)", text)
    fails(tmp_path, r"\[bad\] inputs: eltmax layers take at least 2 inputs",
          text.replace("type=eltsum\ninputs=pool1,conv1", "type=eltmax\ninputs=pool1"))
    fails(tmp_path, r"\[bad\] coeffs: expected 1 or 2 comma-separated values",
          text.replace("inputs=pool1,conv1", "inputs=pool1,pool1\ncoeffs=1,2,3"))


def test_multi_input_conv_mismatch(tmp_path):
    text = edit(edit(edit(BASE_DEF, "conv1", "inputs", "data,data"), "conv1", "channels", "3"),
                "conv1", "filters", "4,2")
    fails(tmp_path, r"\[conv1\] filters: every input must give the same number of output channels "
                    r"\(filters\*groups\), got \[4, 2\]", text)
    text = edit(edit(BASE_DEF, "conv1", "inputs", "data,data"), "conv1", "stride", "1,2")
    fails(tmp_path, r"\[conv1\] filterSize: every input must give the same output size, got \[8, 5\]",
          text)


def test_images_that_do_not_fit(tmp_path):
    # a flat 5-feature input cannot be 3-channel images; 12 features are 3 channels of 4 pixels (2x2)
    text = BASE_DEF.replace("""[probs]
type=softmax
inputs=fc1""", """[c2]
type=conv
inputs=fc1
channels=3
filters=2
filterSize=1

[probs]
type=softmax
inputs=c2""")
    params = BASE_PARAMS + f"\n[c2]\n{W_PARAMS}"
    fails(tmp_path, r"\[c2\] channels: input 'fc1' has shape \(5,\), not interpretable as 3-channel",
          text, params)
    fails(tmp_path, r"\[c2\] channels: input 'fc1' gives 3 pixels per channel, not a square image",
          text.replace("outputs=5", "outputs=9"), params)
    fails(tmp_path, r"\[conv1\] channels: input 'data' has non-square 8x6 images", BASE_DEF, BASE_PARAMS,
          {0: (3, 8, 6), 1: ()})


def test_ini_syntax_mistakes(tmp_path):
    fails(tmp_path, r"^\S*layers\.cfg \[conv1\]: section given twice", BASE_DEF + "\n[conv1]\ntype=conv\n")
    fails(tmp_path, r"layers\.cfg \[conv1\] filterSize: key given twice",
          BASE_DEF.replace("filterSize=3", "filterSize=3\nfilterSize=5"))
    fails(tmp_path, r"layers\.cfg \[conv1\] filtersize: key given twice",
          BASE_DEF.replace("filterSize=3", "filterSize=3\nfiltersize=5"))
    fails(tmp_path, r"layers\.cfg: line 1: 'type=data' comes before any \[section\]", "type=data\n" + BASE_DEF)
    fails(tmp_path, r"layers\.cfg: line \d+: cannot parse 'filterSize'", BASE_DEF.replace("filterSize=3", "filterSize"))
    fails(tmp_path, r"layers\.cfg: no layers", "# nothing\n")
    with pytest.raises(ConfigError, match=r"nope\.cfg: cannot read the layer-definition file"):
        parse_layer_files(tmp_path / "nope.cfg", tmp_path / "p.cfg", SHAPES)


def test_graph_mistakes(tmp_path):
    fails(tmp_path, r"layers\.cfg \[extra\]: layer is not used by any other layer",
          BASE_DEF + "\n[extra]\ntype=fc\ninputs=fc1\noutputs=3\n",
          BASE_PARAMS + f"\n[extra]\n{W_PARAMS}")
    fails(tmp_path, r"\[x\] inputs: 'cost' is a cost layer and has no output",
          BASE_DEF + "\n[x]\ntype=cost.sum2\ninputs=cost\n")
    fails(tmp_path, r"\[x\] inputs: cost\.sum2 layers take exactly 1 input\(s\), got 2",
          BASE_DEF + "\n[x]\ntype=cost.sum2\ninputs=fc1,fc1\n")
    fails(tmp_path, r"\[a\] inputs: cycle a -> b -> a",
          BASE_DEF + "\n[a]\ntype=neuron\nneuron=relu\ninputs=b\n\n[b]\ntype=neuron\nneuron=relu\n"
                     "inputs=a\n\n[q]\ntype=cost.sum2\ninputs=b\n")
    fails(tmp_path, r"\[a\] inputs: cycle a -> a",
          BASE_DEF + "\n[a]\ntype=neuron\nneuron=relu\ninputs=a\n")


@pytest.mark.parametrize("params,match", [
    (BASE_PARAMS + "\n[conv9]\nepsW=1\n",
     r"layer-params\.cfg \[conv9\]: no layer named 'conv9' in the layer-definition file"),
    (BASE_PARAMS.replace("epsW=0.1\n", "", 1), r"layer-params\.cfg \[conv1\] epsW: missing"),
    (BASE_PARAMS.replace("wc=0.001\n", "", 1), r"layer-params\.cfg \[conv1\] wc: missing"),
    (f"[fc1]\n{W_PARAMS}", r"layer-params\.cfg \[conv1\]: section missing; conv layer 'conv1' needs "
                           r"epsW, epsB, momW, momB, wc"),
    (BASE_PARAMS.replace("epsW=0.1", "epsW=exp[base=0.1]", 1),
     r"layer-params\.cfg \[conv1\] epsW: bad learning-rate schedule 'exp\[base=0\.1\]'"),
    (BASE_PARAMS.replace("epsW=0.1", "epsW=fast", 1), r"layer-params\.cfg \[conv1\] epsW: bad learning"),
    (BASE_PARAMS.replace("epsW=0.1", "epsW=0.1,0.2", 1),
     r"layer-params\.cfg \[conv1\] epsW: expected 1 or 1 comma-separated values"),
    (BASE_PARAMS.replace("momB=0.8", "momB=x", 1), r"layer-params\.cfg \[conv1\] momB: expected a number"),
    (BASE_PARAMS + "filterSize=3\n", r"layer-params\.cfg \[fc1\] filterSize: unknown key for a fc layer"),
    (BASE_PARAMS.replace("[fc1]\n", "[fc1]\noutputs=3\n"),
     r"layer-params\.cfg \[fc1\] outputs: belongs in the layer-definition file"),
    (BASE_PARAMS + "\n[pool1]\nscale=1\n", r"layer-params\.cfg \[pool1\] scale: unknown key for a pool layer"),
    (BASE_PARAMS + "\n[cost]\ncoeff=one\n", r"layer-params\.cfg \[cost\] coeff: expected a number, got 'one'"),
    (BASE_PARAMS + "\n[cost]\ntopk=0\n", r"layer-params\.cfg \[cost\] topk: must be >= 1, got 0"),
    (BASE_PARAMS + "updatePeriod=2\n", r"layer-params\.cfg \[fc1\] updatePeriod: delayed weight updates is not supported"),
    (BASE_PARAMS + "\n[conv1]\nepsW=1\n", r"layer-params\.cfg \[conv1\]: section given twice"),
])
def test_parameter_file_mistakes(tmp_path, params, match):
    fails(tmp_path, match, BASE_DEF, params)


def test_norm_and_dropout_parameters(tmp_path):
    text = BASE_DEF.replace("""[fc1]
type=fc
inputs=pool1""", """[rn]
type=rnorm
inputs=pool1
channels=4
size=3

[drop]
type=dropout
inputs=rn

[fc1]
type=fc
inputs=drop""")
    fails(tmp_path, r"layer-params\.cfg \[rn\]: section missing; rnorm layer 'rn' needs scale, pow", text)
    fails(tmp_path, r"layer-params\.cfg \[rn\] pow: missing", text, BASE_PARAMS + "\n[rn]\nscale=1\n")
    fails(tmp_path, r"layer-params\.cfg \[rn\] minDiv: must be > 0\.0, got 0\.0", text,
          BASE_PARAMS + "\n[rn]\nscale=1\npow=1\nminDiv=0\n")
    fails(tmp_path, r"layer-params\.cfg \[drop\] keep: must be > 0\.0, got 0\.0", text,
          BASE_PARAMS + "\n[rn]\nscale=1\npow=1\n[drop]\nkeep=0\n")
    fails(tmp_path, r"layer-params\.cfg \[drop\] enable: expected 0, 1, true or false", text,
          BASE_PARAMS + "\n[rn]\nscale=1\npow=1\n[drop]\nenable=yes\n")
    fails(tmp_path, r"layers\.cfg \[rn\] size: must be <= 4, got 5", text.replace("size=3", "size=5"),
          BASE_PARAMS + "\n[rn]\nscale=1\npow=1\n")
    fails(tmp_path, r"layers\.cfg \[rn\] blocked: blocked .* not supported", edit(text, "rn", "blocked", "1"))
    s = parse(tmp_path, text, BASE_PARAMS + "\n[rn]\nscale=1\npow=1\n")
    assert s["drop"].learn == {"keep": 0.5, "enable": True}
    assert s["rn"].learn == {"scale": 1.0, "pow": 1.0, "min_div": 1.0}
