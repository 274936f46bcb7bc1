"""The input pipeline of GPU training: raw (uint8) minibatches, peeking at the next batch without moving
the provider, the device feed (uploads on a copy stream, crops/flips/mean on the device) and the trainer
on both backends.

CPU part: raw batches and `Provider.finish`, `peek_batch` leaves the order and the saved state alone,
multiview testing through the trainer. GPU part: `DeviceFeed` gives exactly `Provider.finish`'s data, and
`pyconvnet train --device gpu` follows `--device cpu` on a small net with dropout."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet import checkpoint
from pyconvnet.data import ArraySource, Provider
from pyconvnet.data.provider import RawBatch

import test_train
from test_train import common, run

tiny = test_train.tiny  # the small net with dropout of the CLI tests, as a fixture here too


def _source(n=37, C=3, H=12, seed=0):
    rng = np.random.default_rng(seed)
    return ArraySource(rng.integers(0, 256, (n, C, H, H), dtype=np.uint8), rng.integers(0, 4, n))


def _providers(**kw):
    src = _source()
    mean = np.random.default_rng(1).uniform(0, 255, (3, 12, 12)).astype(np.float32)
    cov = np.array([[0.06, 0.01, 0.0], [0.01, 0.05, 0.01], [0.0, 0.01, 0.04]])
    from pyconvnet.data import augment
    common_kw = dict(mean=mean, mini=8, seed=5, **kw)
    return {
        "train crops+flips+colour": Provider(src, train=True, inner_size=9, color_noise=0.1,
                                             pca=augment.pca(cov), **common_kw),
        "train uncropped": Provider(src, train=True, **common_kw),
        "test centre": Provider(src, train=False, inner_size=9, **common_kw),
        "test multiview": Provider(src, train=False, inner_size=9, multiview=True, **common_kw),
    }


def test_raw_batches_hold_what_finish_needs():
    for name, p in _providers(workers=0).items():
        raw = p.make_raw(1, 2)
        assert isinstance(raw, RawBatch), name
        assert raw.images.dtype == np.uint8 and raw.images.shape == (8, 3, 12, 12), name
        assert raw.labels.dtype == np.int64 and raw.labels.shape == (8,), name
        assert len(raw.views) == (10 if "multiview" in name else 1), name
        for geom, shift in raw.views:
            assert geom.dtype == np.int32 and geom.shape == (8, 3) and geom.flags.c_contiguous
            assert geom[:, :2].min() >= 0 and geom[:, :2].max() <= 12 - p.size
            assert set(np.unique(geom[:, 2])) <= {0, 1}
            assert (shift is not None) == ("colour" in name), name
        if "multiview" in name:
            assert [int(g[0, 2]) for g, _ in raw.views] == [0] * 5 + [1] * 5
        got = p.finish(raw)
        want = p.make_batch(1, 2)
        imgs = got[0] if isinstance(got[0], list) else [got[0]]
        ref = want[0] if isinstance(want[0], list) else [want[0]]
        for a, b in zip(imgs, ref):
            assert a.dtype == np.float32 and a.flags.c_contiguous
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got[1], want[1])
        p.close()


def test_peeking_moves_nothing():
    """peek_batch returns the batch next_batch returns next, and the saved state (what checkpoints keep)
    is the same as without peeking, so a run that prefetches resumes exactly."""
    pa, pb = _providers(workers=0), _providers(workers=2)
    a, b = pa["train crops+flips+colour"], pb["train crops+flips+colour"]
    for i in range(12):  # across an epoch boundary (5 batches per epoch)
        want = a.next_batch(raw=True)
        state = b.get_state()
        if i % 3 != 2:
            peek = b.peek_batch(raw=True)
            assert b.get_state() == state
            assert (peek.epoch, peek.batch_idx) == (want.epoch, want.batch_idx)
            np.testing.assert_array_equal(peek.data.images, want.data.images)
        got = b.next_batch(raw=True)
        assert (got.epoch, got.batch_idx) == (want.epoch, want.batch_idx)
        np.testing.assert_array_equal(got.data.images, want.data.images)
        np.testing.assert_array_equal(got.data.views[0][0], want.data.views[0][0])
        np.testing.assert_array_equal(got.data.views[0][1], want.data.views[0][1])
        assert a.get_state() == b.get_state()
    # a peeked batch of the old position is dropped by set_state
    b.peek_batch(raw=True)
    b.set_state(dict(a.get_state(), position=0, epoch=1))
    np.testing.assert_array_equal(b.next_batch().data[0], a.make_batch(1, 0)[0])
    for p in (*pa.values(), *pb.values()):
        p.close()


def test_buffer_ring_hands_out_each_keys_buffers_in_turn():
    from pyconvnet.cuda.feed import _Ring

    made = []

    def make():
        made.append(object())
        return made[-1]
    ring = _Ring(2)
    got = [ring.next("a", make) for _ in range(5)]
    assert got == [made[0], made[1], made[0], made[1], made[0]] and len(made) == 2
    assert ring.next("b", make) is made[2]  # another key has buffers of its own


def test_multiview_testing_through_the_trainer(tiny):
    code, out, err = run(*common(tiny, "--epochs", "1", "--multiview-test", "1"))
    assert code == 0, err
    tests = [ln for ln in out.splitlines() if ln.startswith("test ")]
    assert len(tests) == 1 and " err " in tests[0]


# --- GPU ----------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_device_feed_gives_the_hosts_data():
    from pyconvnet.cuda.feed import DeviceFeed

    for name, p in _providers(workers=0).items():
        feed = DeviceFeed(p.mean, p.size)
        raws = [p.make_raw(1, b) for b in range(p.batches_per_epoch)]  # the last batch is short
        ups = [feed.upload(r) for r in raws[:2]]
        got = [feed.take(ups[0])]
        for r in raws[2:]:  # two uploads in flight, buffers reused
            ups.append(feed.upload(r))
            got.append(feed.take(ups[len(got)]))
        got.append(feed.take(ups[len(got)]))
        for r, g in zip(raws, got):
            want = p.finish(r)
            views = g[0] if isinstance(g[0], list) else [g[0]]
            ref = want[0] if isinstance(want[0], list) else [want[0]]
            assert len(views) == len(ref), name
            for v, w in zip(views, ref):
                np.testing.assert_array_equal(v.get(), w, err_msg=name)
            np.testing.assert_array_equal(g[1].get(), want[1], err_msg=name)
        # prefetch / get: the prefetched upload under its tag, a fresh one otherwise
        feed.prefetch("b1", raws[1])
        np.testing.assert_array_equal(_first(feed.get("b1", raws[1])), _first(p.finish(raws[1])))
        feed.prefetch("b2", raws[2])
        np.testing.assert_array_equal(_first(feed.get("other", raws[0])), _first(p.finish(raws[0])))
        p.close()


def _first(data):
    a = data[0][0] if isinstance(data[0], list) else data[0]
    return a.get() if hasattr(a, "get") else a


@pytest.mark.gpu
def test_gpu_training_follows_the_cpu(tiny, tmp_path):
    """The same seed on both backends: the same data order, crops, flips and dropout masks, so the
    first steps' costs agree to float32 rounding and the weights after an epoch stay close."""
    for dev in ("cpu", "gpu"):
        argv = [a if a != "cpu" else dev for a in common(tiny, "--epochs", "1", "--save-path", tmp_path / dev)]
        code, out, err = run(*argv)
        assert code == 0, err
    pc, _, mc = checkpoint.load(tmp_path / "cpu")
    pg, _, mg = checkpoint.load(tmp_path / "gpu")
    assert mc["step"] == mg["step"] == 20
    hc, hg = mc["history"]["train"], mg["history"]["train"]
    for rc, rg in zip(hc[:5], hg[:5]):
        assert rg[2] == pytest.approx(rc[2], rel=1e-4)
    for k, a in pc.items():
        np.testing.assert_allclose(pg[k], a, rtol=2e-3, atol=2e-5, err_msg=k)
    tc, tg = mc["history"]["test"][-1], mg["history"]["test"][-1]
    assert tg[2] == pytest.approx(tc[2], rel=1e-3)
