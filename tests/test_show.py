"""`pyconvnet show`: the three PNG files from a checkpoint, their helpers, and the error cases."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from pyconvnet import checkpoint, cli, show
from pyconvnet.data.synthetic import make_synthetic_batch

PIL = pytest.importorskip("PIL.Image")

FC_NET = """# an fc-only net (no filters to show)
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc10]
type=fc
inputs=data
outputs=10
initW=0.01
[probs]
type=softmax
inputs=fc10
[logprob]
type=cost.logreg
inputs=labels,probs
"""
FC_PARAMS = "[fc10]\nepsW=0.001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0\n"

# 1 training batch of 1000 synthetic cases, test on batch 2: 10 minibatches, tests at 3, 6, 9, 10.
TRAIN_ARGS = ["train", "--device", "cpu", "--train-range", "1", "--test-range", "2", "--epochs",
              "1", "--mini", "100", "--test-freq", "3", "--workers", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of the default net after a short training run through the CLI."""
    d = tmp_path_factory.mktemp("ckpt")
    rc = cli.main(TRAIN_ARGS + ["--save-path", str(d)], out=io.StringIO())
    assert rc == 0
    return d / checkpoint.FILENAME


def image(path):
    with PIL.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_show_writes_three_nonblank_pngs(trained, tmp_path):
    files = show.show(trained, out_dir=tmp_path / "plots")
    assert [Path(f).name for f in files] == ["cost.png", "filters.png", "predictions.png"]
    for f, (h, w) in zip(files, [(400, 800), (90, 800), (400, 800)]):
        a = image(f)
        assert a.shape[0] >= h and a.shape[1] >= w, f
        assert a.reshape(-1, 3).std(axis=0).max() > 10, f      # not one flat colour
        assert len(np.unique(a.reshape(-1, 3), axis=0)) > 20, f  # curves, text, images
    # filters.png is at least as wide as the default net's 16 conv1 filters (5x5, shown 10x)


def test_show_default_folder_is_the_checkpoints(trained):
    files = show.show(trained.parent)
    assert all(Path(f).parent == trained.parent for f in files)


def test_cli_show(trained, tmp_path, capsys):
    out = io.StringIO()
    assert cli.main(["show", str(trained), "--out", str(tmp_path)], out=out) == 0
    assert out.getvalue().count("wrote ") == 3
    assert (tmp_path / "predictions.png").is_file()


def test_predictions_use_the_checkpoint_weights(trained):
    """The prediction path rebuilds the net; over the whole test set its mean -log p(label) must
    equal the last test cost the trainer recorded with the same weights."""
    params, incs, meta = checkpoint.load(trained)
    disp, labels, probs, names = show.predict_test_images(trained, params, incs, meta, None, 1000)
    ref_images, ref_labels = make_synthetic_batch(2)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(disp, ref_images.transpose(0, 2, 3, 1))  # mean added back exactly
    assert probs.shape == (10, 1000)
    np.testing.assert_allclose(probs.sum(axis=0), 1, rtol=1e-5)
    cost = -np.log(probs[labels, np.arange(1000)].astype(np.float64)).mean()
    assert cost == pytest.approx(meta["history"]["test"][-1][2], rel=1e-4)
    assert names[0] == "stripes-0"


def fake_checkpoint(path, def_text, params_text, history, options=None):
    from pyconvnet.backend import get_backend
    from pyconvnet.config import parse_layer_texts
    from pyconvnet.net import Net
    net = Net(parse_layer_texts(def_text, params_text, {0: (3, 32, 32), 1: ()}),
              get_backend("cpu"), seed=0)
    opts = dict(cli.DEFAULTS, data_provider="synthetic", train_range="1", test_range="2",
                save_path=None)
    opts.update(options or {})
    meta = dict(layer_def_name="fc.cfg", layer_def_text=def_text, layer_params_name="no/such.cfg",
                layer_params_text=params_text, label_names=None, options=opts, step=3, epochs=1,
                history=history)
    return checkpoint.save(path, net.params(), net.incs(), meta)


HISTORY = {"train": [[1, 1, 2.3, 0.9, None], [1, 2, 2.2, 0.85, None], [1, 3, 2.0, 0.8, None, 500.0]],
           "test": [[1, 3, 2.1, 0.8, None, 900.0]]}


def test_net_without_conv_layer_skips_filters_with_a_note(tmp_path):
    f = fake_checkpoint(tmp_path / "c.npz", FC_NET, FC_PARAMS, HISTORY)
    note = io.StringIO()
    files = show.show(f, out=note)
    assert [Path(p).name for p in files] == ["cost.png", "predictions.png"]
    assert "no conv or local layer" in note.getvalue() and "filters.png" in note.getvalue()
    assert not (tmp_path / "filters.png").exists()
    # no provider state in this checkpoint: minibatches per epoch come from the history
    assert image(files[0]).std() > 0


def test_no_history_is_an_error(tmp_path, capsys):
    f = fake_checkpoint(tmp_path / "c.npz", FC_NET, FC_PARAMS, {"train": [], "test": []})
    with pytest.raises(show.ShowError, match=r"c\.npz: no training history"):
        show.show(f)
    assert cli.main(["show", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyconvnet: error: ") and "no training history" in err
    assert err.count("\n") == 1


def test_missing_data_is_an_error(tmp_path):
    gone = tmp_path / "no-such-cifar"
    f = fake_checkpoint(tmp_path / "c.npz", FC_NET, FC_PARAMS, HISTORY,
                        dict(data_provider="cifar", data_path=str(gone), train_range="1-5",
                             test_range="6"))
    with pytest.raises(show.ShowError, match=r"cannot read the test data .*no-such-cifar.*"
                       r"--data-path.*cost\.png written"):
        show.show(f, out=io.StringIO())
    assert (tmp_path / "cost.png").is_file()  # the curves were still written
    with pytest.raises(show.ShowError, match="elsewhere"):
        show.show(f, out_dir=tmp_path / "o", data_path=tmp_path / "elsewhere", out=io.StringIO())


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        show.show(tmp_path / "x.npz")


# ------------------------------------------------------------------------------------ helpers
def test_filter_grid_normalises_each_filter_and_tiles():
    w = np.zeros((3, 2, 2, 3), np.float32)
    w[0, 0, 0, 0], w[2, 1, 1, 0] = -1.0, 3.0         # filter 0: min at (0,0,R), max at (1,1,B)
    w[:, :, :, 1] = 7.0                              # filter 1: constant -> all 0
    w[1, 0, 1, 2] = 1e-6                             # filter 2: tiny range still spans 0..255
    g = show.filter_grid(w, zoom=1, border=1)
    assert g.shape == (1 + 2 + 1, 3 * (1 + 2) + 1, 3) and g.dtype == np.uint8
    t0 = g[1:3, 1:3]
    assert tuple(t0[0, 0]) == (0, 64, 64)  # (-1 - -1)/4, (0 - -1)/4 * 255 = 63.75 -> 64
    assert tuple(t0[1, 1]) == (64, 64, 255)
    assert (g[1:3, 4:6] == 0).all()
    assert tuple(g[1, 8]) == (0, 255, 0) and g[1:3, 7:9].sum() == 255
    assert (g[0] == 60).all() and (g[:, 0] == 60).all()  # borders


def test_filter_grid_grey_zoom_and_rows():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3, 3, 20))               # 5 channels: grey from channel 0
    g = show.filter_grid(w, zoom=2, border=1)
    assert g.shape == (2 * 7 + 1, 16 * 7 + 1, 3)      # 16 per row, 2 rows, last 12 tiles empty
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    k = 17                                            # row 1, column 1
    tile = g[8:14, 8:14, 0]
    c0 = w[0, :, :, k]
    ref = np.rint(255 * (c0 - c0.min()) / (c0.max() - c0.min()))
    np.testing.assert_array_equal(tile, ref.repeat(2, 0).repeat(2, 1))
    assert (g[8:14, 29:35] == 60).all()              # row 1, column 4 would be tile 20: empty
    local = np.stack([w * 0, w, w * 0])               # (positions, C, R, R, K): centre position
    np.testing.assert_array_equal(show.filter_grid(local, zoom=2, border=1), g)


def test_first_conv_layer_follows_the_graph_not_the_file():
    text = "[b]\ntype=conv\ninputs=a\n[a]\ntype=conv\ninputs=data\n[data]\ntype=data\n"
    params = {"b.w0": np.zeros((2, 3, 3, 4)), "a.w0": np.zeros((3, 5, 5, 2)),
              "f.w0": np.zeros((4, 4))}
    assert show.first_conv_layer(text, params) == "a"
    assert show.first_conv_layer(text, {"f.w0": np.zeros((4, 4))}) is None


def test_nice_ticks_and_smooth():
    a, b, t, d = show.nice_ticks(0.0, 1.0)
    assert (a, b, d) == (0.0, 1.0, 1) and np.allclose(t, np.arange(6) * 0.2)
    a, b, t, d = show.nice_ticks(0.13, 0.87, 3)
    assert np.allclose(t, [0, 0.25, 0.5, 0.75, 1.0]) and d == 2
    a, b, t, d = show.nice_ticks(5.0, 5.0)             # a flat curve still gets an axis
    assert a < 5 < b
    np.testing.assert_allclose(show.smooth([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(show.smooth([4, 2], 10), [4, 3])
