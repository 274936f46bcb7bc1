"""Data providers: CIFAR batches (real subset and cuda-convnet layout), the restricted unpickler,
image folders, crops/flips/multiview, PCA lighting, resume determinism and the synthetic set."""
from __future__ import annotations

import builtins
import json
import os
import pickle
import time

import numpy as np
import pytest

from pyconvnet.data import (ArraySource, DataError, Provider, augment, images, make_provider,
                            make_synthetic, parse_range)
from pyconvnet.data.synthetic import make_synthetic_batch

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


# ---------------------------------------------------------------------------------- helpers
def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def fake_cifar(tmp_path, n=7, side=8, nbatch=6, seed=0, mean=None, names=True):
    """cuda-convnet layout: data_batch_1..n with mixed key types, some batches stored D x N."""
    rng = np.random.default_rng(seed)
    D = 3 * side * side
    raw = []
    for k in range(1, nbatch + 1):
        x = rng.integers(0, 256, (n, D), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        raw.append((x, y))
        key = (lambda s: s.encode()) if k % 2 else str     # bytes keys on odd batches
        d = {key("data"): x.T.copy() if k % 3 == 0 else x,  # batches 3 and 6 transposed
             key("labels"): [int(v) for v in y], key("batch_label"): f"batch {k}".encode(),
             key("filenames"): [f"img{k}_{i}.png".encode() for i in range(n)]}
        write_pickle(tmp_path / f"data_batch_{k}", d)
    meta = {b"num_vis": np.int64(D)}                     # a numpy scalar, as Python 2 tools wrote
    if names:
        meta[b"label_names"] = [f"class{i}".encode() for i in range(10)]
    if mean is not None:
        meta["data_mean"] = mean.reshape(D, 1)
    write_pickle(tmp_path / "batches.meta", meta)
    return raw


def epoch_of(p):
    """All batches of the provider's current epoch: (images (C,S,S,N), labels (N,), batches)."""
    out = [p.next_batch() for _ in range(p.batches_per_epoch)]
    return (np.concatenate([b.data[0] for b in out], axis=3),
            np.concatenate([b.data[1] for b in out]), out)


def chw(x):
    """(N, D) uint8 rows -> float64 (N, 3, S, S)."""
    s = int(round((x.shape[1] / 3) ** 0.5))
    return x.reshape(len(x), 3, s, s).astype(np.float64)


# ---------------------------------------------------------------------------------- ranges
def test_parse_range():
    assert parse_range("1-5") == [1, 2, 3, 4, 5]
    assert parse_range("6") == [6]
    assert parse_range("1-3,5") == [1, 2, 3, 5]
    assert parse_range(" 2 - 3 , 7 ") == [2, 3, 7]
    assert parse_range([4, 2]) == [4, 2]


@pytest.mark.parametrize("bad, msg", [("1-", "not N or N-M"), ("a", "not N or N-M"),
                                      ("5-1", "decreasing"), ("", "not N or N-M"),
                                      ("1,1", "twice"), ("1--2", "not N or N-M"),
                                      ([], "non-empty"), ([1, -2], "non-empty"), (3.5, "expected")])
def test_parse_range_bad(bad, msg):
    with pytest.raises(DataError, match=msg):
        parse_range(bad)


# ---------------------------------------------------------------------------------- real CIFAR
def test_real_cifar_subset(shared_data):
    path = shared_data / "cifar10-subset"
    tr, te = make_provider("cifar", str(path), train_range="1-5", test_range="6", mini=128)
    with tr, te:
        assert (tr.num_cases, te.num_cases) == (4660, 932)
        assert tr.batches_per_epoch == 37 and te.batches_per_epoch == 8
        assert tr.data_dims == {0: (3, 32, 32), 1: ()} and tr.num_classes == 10
        assert tr.label_names[:3] == ["airplane", "automobile", "bird"]
        # independent reference: plain pickle on the trusted files
        raw = [pickle.loads((path / f).read_bytes(), encoding="bytes")
               for f in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]]
        xtr = np.concatenate([chw(d[b"data"]) for d in raw[:5]])
        ytr = np.concatenate([d[b"labels"] for d in raw[:5]])
        mean = xtr.mean(0)
        np.testing.assert_allclose(tr.mean, mean, rtol=0, atol=1e-3)
        x, y, batches = epoch_of(tr)
        assert [b.batch_idx for b in batches] == list(range(1, 38))
        assert {b.epoch for b in batches} == {1} and batches[-1].data[0].shape[3] == 4660 - 36 * 128
        assert x.dtype == np.float32 and y.dtype == np.int64 and y.min() == 0 and y.max() == 9
        np.testing.assert_array_equal(np.bincount(y), np.bincount(ytr))    # each case once
        assert np.abs(x.mean(axis=3)).max() < 1e-3                         # mean subtraction
        assert abs(float(x.std()) - (xtr - mean).std()) < 0.01
        # test batch in file order, pixels = raw - training mean
        tb = next(te.iter_test())
        ref = (chw(raw[5][b"data"][:128]) - mean).transpose(1, 2, 3, 0)
        np.testing.assert_allclose(tb.data[0], ref, rtol=0, atol=1e-3)
        np.testing.assert_array_equal(tb.data[1], raw[5][b"labels"][:128])
        np.testing.assert_array_equal(te.to_display(tb.data[0]),
                                      raw[5][b"data"][:128].reshape(-1, 3, 32, 32)
                                      .transpose(0, 2, 3, 1))


# ---------------------------------------------------------------------------- cuda-convnet layout
def test_cuda_convnet_layout(tmp_path):
    side = 8
    data_mean = np.full((3, side, side), 100.0, np.float32) + np.arange(side, dtype=np.float32)
    raw = fake_cifar(tmp_path, side=side, mean=data_mean)
    tr, te = make_provider("cifar", str(tmp_path), train_range="1-5", test_range="6",
                           mini=4, workers=0)
    assert tr.data_dims[0] == (3, side, side) and tr.label_names[9] == "class9"
    np.testing.assert_array_equal(tr.mean, data_mean)          # data_mean used, not recomputed
    x, y, _ = epoch_of(tr)
    assert x.shape == (3, side, side, 35)
    # each training case is one raw row minus data_mean (rows stored N x D and D x N alike)
    allx = np.concatenate([chw(r[0]) for r in raw[:5]]) - data_mean
    flat = x.transpose(3, 0, 1, 2).reshape(35, -1)
    d = np.abs(flat[:, None, :] - allx.reshape(35, -1)[None]).max(-1)
    match = d.argmin(1)
    assert d.min(1).max() < 1e-4 and sorted(match) == list(range(35))
    np.testing.assert_array_equal(y, np.concatenate([r[1] for r in raw[:5]])[match])
    tb = list(te.iter_test())                                    # batch 6 = data_batch_6 (D x N)
    tx = np.concatenate([b.data[0] for b in tb], axis=3)
    np.testing.assert_allclose(tx, (chw(raw[5][0]) - data_mean).transpose(1, 2, 3, 0), atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([b.data[1] for b in tb]), raw[5][1])


def test_cifar_standard_layout_test_batch(tmp_path):
    raw = fake_cifar(tmp_path, nbatch=2, names=False)
    os.rename(tmp_path / "data_batch_2", tmp_path / "test_batch")
    # the original download names numpy 1.x's module for the array reconstructor
    b = (tmp_path / "test_batch").read_bytes()
    assert b"numpy._core.multiarray" in b
    (tmp_path / "test_batch").write_bytes(b.replace(b"numpy._core.multiarray",
                                                    b"numpy.core.multiarray"))
    tr, te = make_provider("cifar", str(tmp_path), train_range=[1], test_range=[6], workers=0)
    assert tr.label_names is None and tr.num_classes == 10
    np.testing.assert_allclose(tr.mean, chw(raw[0][0]).mean(0), atol=1e-4)  # computed mean
    np.testing.assert_array_equal(next(te.iter_test()).data[1], raw[1][1])


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError, match="nope is not a directory"):
        make_provider("cifar", str(tmp_path / "nope"))
    fake_cifar(tmp_path, nbatch=3)
    with pytest.raises(DataError, match=r"batch 6 not found .*data_batch_6 or test_batch"):
        make_provider("cifar", str(tmp_path), train_range="1-3", test_range="6")
    with pytest.raises(DataError, match=r"batch 4 not found"):
        make_provider("cifar", str(tmp_path), train_range="1-4", test_range="3")
    write_pickle(tmp_path / "data_batch_2", {"data": np.zeros((5, 100), np.uint8),
                                             "labels": [0] * 5})
    with pytest.raises(DataError, match=r"data_batch_2: 'data' has shape \(5, 100\)"):
        make_provider("cifar", str(tmp_path), train_range="1-2", test_range="3")
    write_pickle(tmp_path / "data_batch_2", {"data": np.zeros((2, 192), np.uint8),
                                             "labels": [0, 10]})
    with pytest.raises(DataError, match=r"data_batch_2: labels must be in 0..9, found 0..10"):
        make_provider("cifar", str(tmp_path), train_range="1-2", test_range="3")
    write_pickle(tmp_path / "data_batch_2", {"labels": [0]})
    with pytest.raises(DataError, match=r"data_batch_2: no 'data' entry"):
        make_provider("cifar", str(tmp_path), train_range="1-2", test_range="3")
    (tmp_path / "data_batch_2").write_bytes(b"\x80\x02}q\x00")     # truncated pickle
    with pytest.raises(DataError, match=r"data_batch_2: not a readable pickle"):
        make_provider("cifar", str(tmp_path), train_range="1-2", test_range="3")
    with pytest.raises(DataError, match="unknown option"):
        make_provider("cifar", str(tmp_path), train_range="1", test_range="3", image_size=3)


# ---------------------------------------------------------------------------------- safe unpickling
class _Payload:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("kind", ["system", "eval"])
@pytest.mark.parametrize("target", ["data_batch_1", "batches.meta"])
def test_malicious_pickle_refused(tmp_path, kind, target):
    fake_cifar(tmp_path, nbatch=2)
    flag = tmp_path / "pwned"
    if kind == "system":
        payload, glob = _Payload(os.system, f"touch {flag}"), r"(posix|os)\.system"
    else:
        code = f"__import__('pathlib').Path({str(flag)!r}).touch()"
        payload, glob = _Payload(builtins.eval, code), r"(__builtin__|builtins)\.eval"
    write_pickle(tmp_path / target, {b"data": np.zeros((1, 192), np.uint8), b"labels": [0],
                                     b"filenames": [payload]})
    with pytest.raises(DataError, match=rf"{target}: refused to load global '{glob}'") as e:
        make_provider("cifar", str(tmp_path), train_range="1", test_range="2", workers=0)
    assert "\n" not in str(e.value)
    assert not flag.exists()                 # the payload never ran
    if target == "data_batch_1":             # ... though plain pickle would have run it
        pickle.loads((tmp_path / target).read_bytes())
        assert flag.exists()


def test_codecs_encode_only_latin1(tmp_path):
    import codecs

    class Rot13:
        def __reduce__(self):
            return codecs.encode, ("abc", "rot13")

    write_pickle(tmp_path / "data_batch_1", {"labels": [Rot13()]})
    with pytest.raises(DataError, match=r"data_batch_1: refused to load global '_codecs.encode "
                                        r"with encoding 'rot13''"):
        make_provider("cifar", str(tmp_path), train_range="1", test_range="1")


# ---------------------------------------------------------------------------------- crops, views
def _direct(n=6, H=9, S=5, **kw):
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (n, 3, H, H), dtype=np.uint8)
    mean = rng.uniform(0, 255, (3, H, H)).astype(np.float32)
    src = ArraySource(imgs, rng.integers(0, 4, n))
    return imgs, mean, src


def test_crops_flips_multiview():
    imgs, mean, src = _direct()
    S, H = 5, 9
    ref = imgs.astype(np.float32) - mean                     # (n, 3, H, H)
    te = Provider(src, mean=mean, train=False, inner_size=S, mini=4, workers=0)
    mv = Provider(src, mean=mean, train=False, inner_size=S, multiview=True, mini=4, workers=0)
    centre = np.concatenate([b.data[0] for b in te.iter_test()], axis=3)
    np.testing.assert_array_equal(centre, ref[:, :, 2:7, 2:7].transpose(1, 2, 3, 0))
    views = [np.concatenate(v, axis=3) for v in zip(*[b.data[0] for b in mv.iter_test()])]
    assert len(views) == 10 and all(v.shape == (3, S, S, 6) for v in views)
    corners = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    for i, (y, x) in enumerate(corners):
        want = ref[:, :, y:y + S, x:x + S].transpose(1, 2, 3, 0)
        np.testing.assert_array_equal(views[i], want)
        np.testing.assert_array_equal(views[5 + i], want[:, :, ::-1])     # mirrored
    np.testing.assert_array_equal(views[4], centre)
    # training: each case is some S x S crop of (image - mean), maybe mirrored
    tr = Provider(src, mean=mean, train=True, inner_size=S, mini=4, workers=0, seed=1)
    seen = set()
    for _ in range(8):
        b = tr.next_batch()
        idx = tr._indices(b.epoch, b.batch_idx - 1)
        for j, i in enumerate(idx):
            got = b.data[0][..., j]
            hits = [(y, x, f) for y in range(H - S + 1) for x in range(H - S + 1) for f in (0, 1)
                    if np.array_equal(got, ref[i, :, y:y + S, x:x + S][:, :, ::-1 if f else 1])]
            assert len(hits) == 1
            seen.add(hits[0])
    assert {f for _, _, f in seen} == {0, 1} and len(seen) > 10


def test_color_noise_is_constant_shift_per_image():
    imgs, mean, src = _direct(n=8)
    vecs, vals = augment.pca(np.array([[3.0, 1, 0], [1, 2, 0], [0, 0, 1]]) * 1e-2)
    common = dict(mean=mean, train=True, inner_size=5, mini=8, workers=0, seed=4)
    plain = Provider(src, **common).next_batch().data[0]
    noisy = Provider(src, color_noise=0.1, pca=(vecs, vals), **common).next_batch().data[0]
    diff = (noisy - plain).reshape(3, -1, 8)                 # (C, pixels, n)
    assert np.abs(diff - diff[:, :1]).max() < 1e-3            # constant over pixels of an image
    shift = diff[:, 0].T.astype(np.float64)                   # (n, 3)
    assert np.all(np.abs(shift).max(1) > 1e-3)                # every image shifted
    assert np.abs(shift[0] - shift[1]).max() > 1e-3           # differently per image
    # shift = 255 * V @ (alpha * lambda): recover alpha and check it is a plausible N(0, 0.1^2)
    alpha = (shift / 255.0) @ vecs / vals
    assert np.abs(alpha).max() < 0.6
    # eigen-decomposition: covariance recovered, eigenvalues decreasing
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T,
                               np.array([[3.0, 1, 0], [1, 2, 0], [0, 0, 1]]) * 1e-2, atol=1e-12)
    assert vals[0] >= vals[1] >= vals[2]
    # lighting_shift formula on hand values
    rng = np.random.Generator(np.random.PCG64(0))
    a = np.random.Generator(np.random.PCG64(0)).normal(0, 0.1, (2, 3))
    V, lam = np.eye(3)[:, [2, 0, 1]], np.array([0.5, 0.2, 0.1])
    np.testing.assert_allclose(augment.lighting_shift(V, lam, 0.1, 2, rng),
                               255 * (a * lam)[:, [1, 2, 0]], rtol=1e-6)


def test_pixel_moments():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 3, 4, 5), dtype=np.uint8)
    mean, cov = augment.pixel_moments(x, chunk=3)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-6)
    p = x.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    np.testing.assert_allclose(cov, np.cov(p, bias=True), atol=1e-12)


# ---------------------------------------------------------------------------------- state
def test_resume_is_deterministic():
    kw = dict(train_range="1-2", test_range="3", inner_size=28, color_noise=0.1, mini=64,
              seed=7, batch_size=100)
    a, _ = make_provider("synthetic", None, workers=2, **kw)
    for _ in range(3):
        a.next_batch()
    state = json.loads(json.dumps(a.get_state()))
    assert state["epoch"] == 1 and state["position"] == 3
    rest = [a.next_batch() for _ in range(6)]                # crosses into epochs 2 and 3
    assert [(b.epoch, b.batch_idx) for b in rest] == [(1, 4), (2, 1), (2, 2), (2, 3), (2, 4),
                                                       (3, 1)]
    b_, _ = make_provider("synthetic", None, workers=0, **kw)
    b_.set_state(state)
    for x, y in zip(rest, [b_.next_batch() for _ in range(6)]):
        assert (x.epoch, x.batch_idx) == (y.epoch, y.batch_idx)
        np.testing.assert_array_equal(x.data[0], y.data[0])
        np.testing.assert_array_equal(x.data[1], y.data[1])
    # another seed gives other batches; each epoch visits every case once
    c, _ = make_provider("synthetic", None, workers=0, **{**kw, "seed": 8})
    _, y8, _ = epoch_of(c)
    assert not np.array_equal(y8[:64], rest[1].data[1])
    np.testing.assert_array_equal(np.sort(y8), np.sort(c.source.labels))
    with pytest.raises(DataError, match="saved state is for 200 cases"):
        make_provider("synthetic", None, workers=0, **{**kw, "train_range": "1"})[0] \
            .set_state(state)
    for p in (a, b_, c):
        p.close()


# ---------------------------------------------------------------------------------- image folders
COLOURS = {"ant": (200, 30, 40), "bee": (20, 180, 60), "cat": (40, 50, 210)}


def image_tree(root):
    sizes = [(37, 23), (20, 41), (33, 33)]
    for split, n in (("train", 3), ("val", 2)):
        for c, col in COLOURS.items():
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[i]
                ext = "png" if i != 1 else "jpg"
                Image.new("RGB", (w, h), col).save(d / f"{i}.{ext}")
    (root / "train" / "ant" / "notes.txt").write_text("not an image")


def test_image_folders(tmp_path):
    image_tree(tmp_path)
    kw = dict(inner_size=12, mini=4, image_size=14)
    tr, te = make_provider("images", str(tmp_path), workers=2, **kw)
    with tr, te:
        assert tr.label_names == ["ant", "bee", "cat"] and tr.num_classes == 3
        assert (tr.num_cases, te.num_cases, tr.batches_per_epoch) == (9, 6, 3)
        assert tr.data_dims == {0: (3, 12, 12), 1: ()}
        # mean over the 9 training images: every pixel the mean colour
        np.testing.assert_allclose(tr.mean[:, 7, 7], np.mean(list(COLOURS.values()), 0), atol=2)
        x, y, _ = epoch_of(tr)
        assert x.shape == (3, 12, 12, 9) and sorted(y) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        batches = list(te.iter_test())
        labels = np.concatenate([b.data[1] for b in batches])
        np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
        shown = np.concatenate([te.to_display(b.data[0]) for b in batches])
        assert shown.shape == (6, 12, 12, 3) and shown.dtype == np.uint8
        want = np.array([COLOURS[c] for c in ("ant", "ant", "bee", "bee", "cat", "cat")])
        assert np.abs(shown.astype(int) - want[:, None, None, :]).max() <= 3   # jpeg slack
        # the decoding processes give the same batches as inline decoding
        tr0, te0 = make_provider("images", str(tmp_path), workers=0, **kw)
        np.testing.assert_array_equal(x, epoch_of(tr0)[0])
        tr0.close(), te0.close()


def test_decoder_processes_serve_several_threads_and_report_a_dead_worker(tmp_path):
    """Two threads load at once (the provider's two prefetch threads): each gets exactly its images.
    A worker process that dies makes the next load a one-line DataError, not a hang."""
    import threading

    rng = np.random.default_rng(0)
    paths = []
    for i in range(24):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (10 + i % 3, 12, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    src = images.FolderSource(paths, np.zeros(24, np.int64), 8, workers=3)
    want = np.stack([images.decode(p, 8) for p in paths])
    got = {}

    def load(k):
        got[k] = src.load(np.arange(k, 24, 2))
    threads = [threading.Thread(target=load, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        np.testing.assert_array_equal(got[k], want[k::2])
    assert src._pool.decode_rows([], 8).shape == (0, 3, 8, 8)  # no files: no request, no error
    src._pool._procs[1].kill()
    src._pool._procs[1].wait()
    deadline = time.time() + 10
    while not src._pool._dead[1] and time.time() < deadline:
        time.sleep(0.01)
    with pytest.raises(DataError, match="a decoding worker process stopped"):
        src.load(np.arange(6))
    src.close()


def test_decode_resizes_centre_square(tmp_path):
    yy, xx = np.mgrid[0:120, 0:200]
    arr = np.stack([xx, yy * 2, 255 - xx], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(arr).save(tmp_path / "big.png")
    got_png = images.decode(tmp_path / "big.png", 16)         # (3, 16, 16)
    want = Image.fromarray(arr[:, 40:160]).resize((16, 16), Image.Resampling.BILINEAR)
    # resizing with a box lets the filter see past the crop: at most 1-2 levels off at the edges
    assert np.abs(got_png.astype(int) - np.asarray(want).transpose(2, 0, 1)).max() <= 2
    got_jpg = images.decode(tmp_path / "big.jpg", 16)         # decoded at 1/4 scale by draft
    assert got_jpg.shape == (3, 16, 16)
    assert np.abs(got_jpg.astype(int) - got_png).mean() < 4


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        make_provider("images", str(tmp_path / "none"))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="has no class sub-directories"):
        make_provider("images", str(tmp_path))
    (tmp_path / "train" / "a").mkdir()
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/a holds no \.jpg"):
        make_provider("images", str(tmp_path))
    Image.new("RGB", (9, 9)).save(tmp_path / "train" / "a" / "x.png")
    Image.new("RGB", (9, 9)).save(tmp_path / "val" / "a" / "x.png")
    (tmp_path / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read .*train/a/broken\.jpg"):
        make_provider("images", str(tmp_path), image_size=8, workers=2)
    os.remove(tmp_path / "train" / "a" / "broken.jpg")
    (tmp_path / "val" / "zz").mkdir()
    with pytest.raises(DataError, match=r"val/zz is not a class of the training set"):
        make_provider("images", str(tmp_path), image_size=8)


# ---------------------------------------------------------------------------------- synthetic
def test_synthetic_set():
    t = time.perf_counter()
    x, y = make_synthetic(range(1, 7))
    assert time.perf_counter() - t < 2.0
    assert x.shape == (6000, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y[:1000]), [100] * 10)
    x1, y1 = make_synthetic_batch(1)
    np.testing.assert_array_equal(x1, x[:1000])
    np.testing.assert_array_equal(y1, y[:1000])
    assert not np.array_equal(make_synthetic_batch(1, seed=1)[0], x1)
    assert not np.array_equal(make_synthetic_batch(2)[0], x1)
    # nearest class mean on raw pixels is far from separating the classes
    a = x[:4000].reshape(4000, -1).astype(np.float32)
    b = x[5000:].reshape(1000, -1).astype(np.float32)
    means = np.stack([a[y[:4000] == c].mean(0) for c in range(10)])
    dist = (b * b).sum(1)[:, None] - 2 * b @ means.T + (means * means).sum(1)[None]
    acc = (dist.argmin(1) == y[5000:]).mean()
    assert acc < 0.5


def test_provider_option_errors(tmp_path):
    with pytest.raises(DataError, match="unknown data provider 'mnist'"):
        make_provider("mnist", None)
    with pytest.raises(DataError, match="multiview testing needs inner_size"):
        make_provider("synthetic", None, multiview=True)
    with pytest.raises(DataError, match="inner_size must be 0 .* or 1..32"):
        make_provider("synthetic", None, train_range="1", test_range="2", inner_size=33)
    with pytest.raises(DataError, match="mini must be an int >= 1"):
        make_provider("synthetic", None, train_range="1", test_range="2", mini=0)
    with pytest.raises(DataError, match="unknown option.*colour"):
        make_provider("synthetic", None, colour=1)
    with pytest.raises(DataError, match="bad range '5-1'"):
        make_provider("synthetic", None, train_range="5-1")
    tr, te = make_provider("synthetic", None, train_range="1", test_range="2", workers=0)
    with pytest.raises(DataError, match=r"to_display wants images of shape \(3, 32, 32, N\)"):
        tr.to_display(np.zeros((3, 24, 24, 2), np.float32))
    with pytest.raises(DataError, match="bad provider state"):
        tr.set_state({"epoch": 1})
