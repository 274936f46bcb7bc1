"""The trainer: minibatch SGD over a data provider, periodic tests and checkpoints.

One `Trainer` drives one `Net` with one training and one test provider. It prints cuda-convnet's
kind of output (a progress bar per epoch, one line per test with cost, error and images/s), tests
and writes an atomic checkpoint every ``test_freq`` minibatches and at the end of every epoch, and
stops with `TrainingDiverged` as soon as a cost is NaN or infinite, leaving the last good checkpoint
in place.

On the GPU backend the providers hand out raw uint8 minibatches, which a
`pyconvnet.cuda.feed.DeviceFeed` per provider copies on its own CUDA stream and crops, mirrors and
mean-subtracts on the device; while step k runs, the trainer peeks at minibatch k+1 (the provider does
not move) and starts its copy. Steps go through `Net.train_step_async`, so the host waits once per step.

Everything that decides what happens next is in the checkpoint: the weights and momentum buffers,
the step counter (which keys the dropout masks), the provider's position (which fixes the order,
crops and flips of the remaining minibatches) and the history, so a run that is stopped and resumed
with ``--load-file`` computes the same weights as one that was never stopped.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint


class TrainingDiverged(RuntimeError):
    """A cost became NaN or infinite; the last good checkpoint was kept."""


class TrainingStopped(Exception):
    """`Trainer.request_stop` was called (e.g. from a SIGINT/SIGTERM handler); the trainer stopped
    after the step in progress and wrote a checkpoint of that consistent state."""


@dataclass
class History:
    """What happened so far: one entry per training minibatch and one per test."""
    train: list = field(default_factory=list)  # [epoch, batch, cost/case, err, top-k err or None]
    test: list = field(default_factory=list)   # [epoch, batch, cost/case, err, top-k err, images/s]

    def to_json(self):
        return {"train": self.train, "test": self.test}

    @classmethod
    def from_json(cls, d):
        return cls(train=[list(r) for r in d.get("train", [])], test=[list(r) for r in d.get("test", [])])


def to_host(a):
    """A NumPy copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.array(a)


def _fmt(v):
    return "-" if v is None else f"{v:.4f}"


class ProgressBar:
    """A one-line bar per epoch on a terminal; a single summary line elsewhere (logs, CI)."""

    def __init__(self, stream, total, label):
        self.stream, self.total, self.label = stream, total, label
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, done, text):
        if self.tty:
            width = 30
            fill = int(width * done / max(self.total, 1))
            self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] "
                              f"{done}/{self.total} {text}\x1b[K")
            self.stream.flush()

    def close(self, text):
        self.stream.write(("\r" if self.tty else "") + f"{self.label} {self.total}/{self.total} "
                          f"{text}" + ("\x1b[K" if self.tty else "") + "\n")
        self.stream.flush()


class Trainer:
    """Train ``net`` on ``train_data``, testing on ``test_data``.

    ``meta`` is the part of the checkpoint that the trainer does not own (layer-file texts, options);
    it is stored with every checkpoint. ``save_path`` None writes no checkpoints.
    """

    def __init__(self, net, train_data, test_data, *, epochs, test_freq=0, save_path=None,
                 meta=None, out=None):
        self.net, self.train_data, self.test_data = net, train_data, test_data
        self.epochs = int(epochs)
        self.test_freq = int(test_freq)
        self.save_path = save_path
        self.meta = dict(meta or {})
        self.out = out if out is not None else sys.stdout
        self.step = 0
        self.history = History()
        self.last_checkpoint = None
        self._stop = False
        self._feeds = {}  # "train" / "test" -> DeviceFeed (GPU backend), made on first use

    # ----------------------------------------------------------------- state
    def state_meta(self):
        return dict(self.meta, step=self.step, epochs=self.epochs,
                    provider=self.train_data.get_state(), history=self.history.to_json())

    def save(self):
        if self.save_path is None:
            return None
        params = {k: to_host(v) for k, v in self.net.params().items()}
        incs = {k: to_host(v) for k, v in self.net.incs().items()}
        self.last_checkpoint = checkpoint.save(self.save_path, params, incs, self.state_meta())
        return self.last_checkpoint

    def restore(self, params, incs, meta):
        """Put a checkpoint's weights, momenta, position and history back."""
        load_arrays(self.net, params, incs)
        self.step = int(meta.get("step", 0))
        self.history = History.from_json(meta.get("history", {}))
        if "provider" in meta:
            self.train_data.set_state(meta["provider"])

    def request_stop(self):
        """Stop after the step in progress (safe to call from a signal handler)."""
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    # ------------------------------------------------------------------ loop
    def progress(self, epoch, batch_idx):
        """Training progress p in [0, 1] for the learning-rate schedules."""
        nb = self.train_data.batches_per_epoch
        return min(1.0, ((epoch - 1) + batch_idx / nb) / self.epochs)

    def train(self):
        """Run until ``epochs`` epochs are done; returns the history.

        NumPy's overflow and invalid-value warnings are silenced here: a diverging run is caught by
        the finiteness check on the cost, which says what happened in one line.
        """
        nb = self.train_data.batches_per_epoch
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while True:
                st = self.train_data.get_state()
                epoch = int(st["epoch"])
                if epoch > self.epochs:
                    break
                self._train_epoch(epoch, nb)
        return self.history

    def _feed(self, provider):
        """The `pyconvnet.cuda.feed.DeviceFeed` of ``provider`` on the GPU backend (uint8 uploads on a
        copy stream, crops/flips/mean on the device), or None: the provider's float data is used."""
        if self.net.backend.name != "gpu" or not hasattr(provider, "make_raw"):
            return None
        key = "train" if provider is self.train_data else "test"
        if key not in self._feeds:
            from .cuda.feed import DeviceFeed
            self._feeds[key] = DeviceFeed(provider.mean, provider.size, self.net.dtype)
        return self._feeds[key]

    def _train_epoch(self, epoch, nb):
        bar = ProgressBar(self.out, nb, f"epoch {epoch}/{self.epochs}")
        t0 = time.perf_counter()
        n_img = 0
        sums = [0.0, 0.0, 0]
        last_idx = 0
        feed = self._feed(self.train_data)
        while True:
            if feed is None:
                batch = self.train_data.next_batch()
                data = batch.data
            else:
                batch = self.train_data.next_batch(raw=True)
                data = feed.get((batch.epoch, batch.batch_idx), batch.data)
            n = batch.data[1].shape[0]
            pending = self.net.train_step_async(data, step=self.step)  # forward + backward
            last = batch.epoch == self.epochs and batch.batch_idx == nb
            if feed is not None and not last and not self._stop:
                # the next batch goes to the GPU on the copy stream while this step computes; the
                # provider does not move (its position is what a checkpoint saves)
                nxt = self.train_data.peek_batch(raw=True)
                feed.prefetch((nxt.epoch, nxt.batch_idx), nxt.data)
            costs = pending.result()
            cost, nerr, _ = self._main_cost(costs)
            if not all(math.isfinite(c[0]) for c in costs.values()):
                bad = ", ".join(f"{k}={c[0]}" for k, c in costs.items())
                kept = (f"the last good checkpoint {self.last_checkpoint} is kept"
                        if self.last_checkpoint else "no checkpoint was written")
                raise TrainingDiverged(f"cost is not finite at epoch {batch.epoch} minibatch "
                                       f"{batch.batch_idx} ({bad}); training stopped, {kept}. "
                                       "Lower the learning rates (epsW/epsB) or the initW values.")
            self.net.update(self.progress(batch.epoch, batch.batch_idx))
            self.step += 1
            row = [batch.epoch, batch.batch_idx, cost / n, None if nerr is None else nerr / n]
            self.history.train.append(row)
            n_img += n
            sums[0] += cost
            sums[1] += nerr or 0
            sums[2] += n
            last_idx = batch.batch_idx
            rate = n_img / (time.perf_counter() - t0)
            bar.update(batch.batch_idx, f"cost {sums[0] / sums[2]:.4f} err {sums[1] / sums[2]:.4f} "
                                        f"{rate:,.0f} img/s")
            if self.test_freq and self.step % self.test_freq == 0 and batch.batch_idx != nb:
                self.test(batch.epoch, batch.batch_idx)
                self.save()
            if batch.batch_idx == nb:
                break
            if self._stop:
                bar.close(f"train cost {sums[0] / sums[2]:.4f} err {sums[1] / sums[2]:.4f} (stopped)")
                self._stopped(batch.epoch, batch.batch_idx, self.save())
        rate = n_img / (time.perf_counter() - t0)
        bar.close(f"train cost {sums[0] / sums[2]:.4f} err {sums[1] / sums[2]:.4f} "
                  f"{rate:,.0f} img/s")
        self.history.train[-1].append(rate)
        self.test(epoch, last_idx)
        f = self.save()
        if self._stop:
            self._stopped(epoch, last_idx, f)

    def _stopped(self, epoch, batch_idx, written):
        raise TrainingStopped(f"stopped after epoch {epoch} minibatch {batch_idx} (step {self.step})"
                              + (f"; checkpoint written to {written}" if written else
                                 "; no --save-path, nothing written"))

    @staticmethod
    def _main_cost(costs):
        """The first logreg-like cost (one with an error count), else the first cost."""
        for c in costs.values():
            if c[1] is not None:
                return c
        return next(iter(costs.values()))

    def test_batches(self):
        """One pass over the test set as ``[images, labels]`` (images: a list of views with
        multiview testing), on the GPU through the test provider's device feed (each batch uploaded
        while the one before is evaluated)."""
        feed = self._feed(self.test_data)
        if feed is None:
            for batch in self.test_data.iter_test():
                yield batch.data
            return
        prev = None
        for batch in self.test_data.iter_test(raw=True):
            up = feed.upload(batch.data)
            if prev is not None:
                yield feed.take(prev)
            prev = up
        if prev is not None:
            yield feed.take(prev)

    def evaluate(self):
        """Cost and error over the whole test set; returns (cost/case, err, top-k err, images/s)."""
        t0 = time.perf_counter()
        tot = [0.0, 0, 0, 0]
        topk_seen = False
        for data in self.test_batches():
            images, labels = data
            n = int(labels.shape[0])
            if isinstance(images, (list, tuple)):
                c, e, k = multiview_scores(self.net, [[v, labels] for v in images])
            else:
                c, e, k = self._main_cost(self.net.forward(data, train=False, step=self.step))
            tot[0] += c
            tot[1] += e or 0
            if k is not None:
                topk_seen = True
                tot[2] += k
            tot[3] += n
        dt = time.perf_counter() - t0
        n = max(tot[3], 1)
        return tot[0] / n, tot[1] / n, (tot[2] / n if topk_seen else None), tot[3] / dt

    def test(self, epoch, batch_idx):
        cost, err, topk, rate = self.evaluate()
        self.history.test.append([epoch, batch_idx, cost, err, topk, rate])
        top = "" if topk is None else f" top-k err {topk:.4f}"
        self.out.write(f"test {epoch}.{batch_idx}: cost {cost:.4f} err {err:.4f}{top} "
                       f"({rate:,.0f} img/s)\n")
        self.out.flush()
        return cost, err, topk


def multiview_scores(net, views):
    """Average the softmax outputs over the views of one minibatch; returns (cost, nerr, nerr_topk).

    ``views`` is a list of ``[images, labels]`` (same labels in each). The cost is the logreg cost of
    the averaged probabilities; errors count the averaged prediction.
    """
    probs = None
    for v in views:
        p = to_host(net.predict(v[0]))
        probs = p if probs is None else probs + p
    probs /= len(views)
    labels = to_host(views[0][1]).astype(np.int64)
    return logreg_host(probs, labels, net.topk)


def logreg_host(probs, labels, topk):
    """Summed -log p[label], top-1 and top-k error counts, on host arrays."""
    n = labels.shape[0]
    p = np.maximum(probs[labels, np.arange(n)], np.finfo(probs.dtype).tiny)
    cost = float(-np.log(p.astype(np.float64)).sum())
    rank = (probs > probs[labels, np.arange(n)]).sum(axis=0)  # how many classes beat the label
    return cost, int((rank >= 1).sum()), int((rank >= topk).sum()) if topk and topk > 1 else None


def load_arrays(net, params, incs):
    """Copy host arrays into the net's live parameter and momentum arrays, checking names/shapes."""
    for kind, live, new in (("weights", net.params(), params), ("momentum", net.incs(), incs)):
        missing = sorted(set(live) - set(new))
        extra = sorted(set(new) - set(live))
        if missing or extra:
            raise checkpoint.CheckpointError(
                f"checkpoint {kind} do not fit the net: missing {missing or '-'}, unexpected {extra or '-'}")
        for k, a in live.items():
            v = new[k]
            if tuple(v.shape) != tuple(a.shape):
                raise checkpoint.CheckpointError(
                    f"checkpoint {kind} {k}: shape {tuple(v.shape)}, the net has {tuple(a.shape)}")
            v = np.ascontiguousarray(v, dtype=a.dtype)
            if isinstance(a, np.ndarray):
                a[...] = v
            else:  # a device array
                a.set(v)
