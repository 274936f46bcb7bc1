"""`pyconvnet train` end to end on the CPU: the CLI on a tiny net, exact resume, atomic checkpoints,
divergence handling, --test-only and --check-grads. Each run is a few seconds on 2 cores."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pyconvnet import checkpoint
from pyconvnet.cli import main

TINY_DEF = """
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
filters=6
filterSize=5
padding=2
stride=2
initW=0.01
neuron=relu

[pool1]
type=pool
pool=max
inputs=conv1
sizeX=3
stride=2
channels=6

[drop]
type=dropout
inputs=pool1

[fc10]
type=fc
inputs=drop
outputs=10
initW=0.01

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
"""
TINY_PARAMS = """
[conv1]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.0005

[fc10]
epsW=dexp[base=0.001;tgtFactor=10;numSteps=2]
epsB=0.002
momW=0.9
momB=0.9
wc=0.0005

[drop]
keep=0.75

[logprob]
coeff=1
"""


@pytest.fixture
def tiny(tmp_path):
    d, p = tmp_path / "layers-tiny.cfg", tmp_path / "layer-params-tiny.cfg"
    d.write_text(TINY_DEF)
    p.write_text(TINY_PARAMS)
    return d, p


def run(*argv):
    """(exit status, stdout, stderr) of ``pyconvnet`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        code = main([str(a) for a in argv], out=out)
    finally:
        sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def common(tiny, *extra):
    d, p = tiny
    return ["train", "--layer-def", d, "--layer-params", p, "--data-provider", "synthetic", "--train-range",
            "1-2", "--test-range", "6", "--mini", "100", "--inner-size", "28", "--device", "cpu", "--seed", "3",
            *extra]


def test_cli_trains_tests_and_checkpoints(tiny, tmp_path):
    code, out, err = run(*common(tiny, "--epochs", "2", "--save-path", tmp_path / "a"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("pyconvnet ") and "training on the CPU (--device cpu)" in lines[0]
    assert "2,000 training / 1,000 test cases" in lines[1]
    tests = [ln for ln in lines if ln.startswith("test ")]
    assert [t.split(":")[0] for t in tests] == ["test 1.20", "test 2.20"]
    assert all("img/s" in t and " err " in t for t in tests)
    params, incs, meta = checkpoint.load(tmp_path / "a")
    assert set(params) == {"conv1.w0", "conv1.b", "fc10.w0", "fc10.b"} and set(incs) == set(params)
    assert meta["step"] == 40 and len(meta["history"]["train"]) == 40 and len(meta["history"]["test"]) == 2
    assert meta["layer_def_text"] == TINY_DEF and meta["layer_params_text"] == TINY_PARAMS
    err2 = meta["history"]["test"][-1][3]
    assert err2 < 0.85, f"test error {err2} after 2 epochs: not learning"  # chance is 0.9

    code, out, err = run("train", "--load-file", tmp_path / "a", "--test-only", "--device", "cpu")
    assert code == 0, err
    last = [ln for ln in out.splitlines() if ln.startswith("test ")][-1]
    assert f"err {err2:.4f}" in last  # the checkpoint's weights, the same test set


def _assert_same_run(a, b):
    pa, ia, ma = checkpoint.load(a)
    pb, ib, mb = checkpoint.load(b)
    assert ma["step"] == mb["step"]
    for k in pa:
        np.testing.assert_array_equal(pb[k], pa[k], err_msg=k)
        np.testing.assert_array_equal(ib[k], ia[k], err_msg=k)
    assert [r[:4] for r in mb["history"]["train"]] == [r[:4] for r in ma["history"]["train"]]


def test_interrupted_and_resumed_run_gives_the_same_weights(tiny, tmp_path, monkeypatch):
    """Ctrl-C in the middle of epoch 2 (a SIGINT during step 27's update) stops after that step with
    a checkpoint; resuming it ends with exactly the weights of a run that was never interrupted."""
    from pyconvnet.net import Net

    assert run(*common(tiny, "--epochs", "3", "--save-path", tmp_path / "full"))[0] == 0
    calls = {"n": 0}
    update = Net.update

    def update_then_sigint(self, progress):
        calls["n"] += 1
        if calls["n"] == 27:
            os.kill(os.getpid(), signal.SIGINT)
        return update(self, progress)

    monkeypatch.setattr(Net, "update", update_then_sigint)
    code, out, err = run(*common(tiny, "--epochs", "3", "--save-path", tmp_path / "part"))
    monkeypatch.setattr(Net, "update", update)
    assert code == 130, err
    assert "SIGINT: stopping after this step" in out and "stopped after epoch 2 minibatch 7 (step 27)" in out
    assert checkpoint.load(tmp_path / "part")[2]["step"] == 27
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back
    code, out, err = run("train", "--load-file", tmp_path / "part", "--device", "cpu")
    assert code == 0, err
    assert "resumed from" in out and "at step 27 (epoch 2)" in out
    _assert_same_run(tmp_path / "full", tmp_path / "part")


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tiny, tmp_path):
    """SIGKILL at an arbitrary moment, then --load-file: the same final weights as a run never killed."""
    assert run(*common(tiny, "--epochs", "3", "--test-freq", "4", "--save-path", tmp_path / "full"))[0] == 0
    cmd = [sys.executable, "-m", "pyconvnet", *map(str, common(tiny, "--epochs", "3", "--test-freq", "4",
                                                            "--save-path", tmp_path / "part"))]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:  # kill soon after the first test of epoch 2
            if line.startswith("test 2."):
                break
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    step = checkpoint.load(tmp_path / "part")[2]["step"]
    assert 20 < step < 60
    code, out, err = run("train", "--load-file", tmp_path / "part", "--device", "cpu")
    assert code == 0, err
    _assert_same_run(tmp_path / "full", tmp_path / "part")


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    d, p = tiny
    p.write_text(TINY_PARAMS.replace("epsW=0.001\n", "epsW=1e6\n", 1))
    code, out, err = run(*common(tiny, "--epochs", "3", "--test-freq", "1", "--save-path", tmp_path / "c"))
    assert code == 3
    assert err.startswith("pyconvnet: error: cost is not finite at epoch ") and err.count("\n") == 1
    assert "the last good checkpoint" in err and "is kept" in err
    params, _, meta = checkpoint.load(tmp_path / "c")
    assert all(np.isfinite(a).all() for a in params.values())
    assert 1 <= meta["step"] < 60


def test_check_grads_from_the_command_line(tiny):
    code, out, err = run(*common(tiny, "--check-grads"))
    assert code == 0, out + err
    assert "gradient check" in out and out.rstrip().endswith("PASSED")
    assert "conv1.w0" in out and "fc10.b" in out


def test_user_mistakes_are_one_line(tiny, tmp_path):
    d, p = tiny
    bad = tmp_path / "bad.cfg"
    bad.write_text(TINY_DEF.replace("filterSize=5", "filterSize=five"))
    code, _, err = run("train", "--layer-def", bad, "--layer-params", p, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"pyconvnet: error: {bad} [conv1] filterSize: ")
    code, _, err = run("train", "--load-file", tmp_path / "nothing-here", "--device", "cpu")
    assert code == 2 and "no checkpoint there" in err and err.count("\n") == 1
    code, _, err = run("train", "--data-provider", "cifar", "--device", "cpu")
    assert code == 2 and "needs --data-path" in err


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from pyconvnet import checkpoint
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        big = np.full((512, 1024), float(i), np.float32)
        checkpoint.save(sys.argv[1], {"w": big}, {"w": -big}, {"step": i})
""")


def test_checkpoint_survives_a_kill_during_writes(tmp_path):
    """A writer killed (SIGKILL) at arbitrary moments never leaves a torn or missing checkpoint."""
    target = tmp_path / "ck"
    checkpoint.save(target, {"w": np.zeros((512, 1024), np.float32)}, {"w": np.zeros((512, 1024), np.float32)},
                    {"step": 0})
    for delay in (0.05, 0.13, 0.31):
        with subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE,
                              text=True) as proc:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        params, incs, meta = checkpoint.load(target)
        step = meta["step"]
        assert (params["w"] == step).all() and (incs["w"] == -step).all()
    leftovers = [f.name for f in target.iterdir() if f.name != checkpoint.FILENAME]
    assert all(f.endswith(".tmp") for f in leftovers)  # a killed write may leave its temporary file


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"w": np.ones(3)}, {"w": np.zeros(3)}, {"step": 1})

    def broken(fh, **arrays):
        fh.write(b"PK\x03\x04 torn")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(tmp_path, {"w": np.full(3, 7.0)}, {"w": np.zeros(3)}, {"step": 2})
    monkeypatch.undo()
    params, _, meta = checkpoint.load(tmp_path)
    assert meta["step"] == 1 and (params["w"] == 1).all()
    assert [f.name for f in tmp_path.iterdir()] == [checkpoint.FILENAME]  # the temporary file is gone
