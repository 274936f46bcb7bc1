"""Train a layer-file net in PyTorch with pyconvnet's data and initial weights: the reference run
that `pyconvnet train`'s test error is compared with (README, "CIFAR-10 with cuda-convnet's
layers-18pct").

The net is benchmarks/torchnet.py's translation of the same two files; its weights start as the
copy of the pyconvnet Net built with the same seed, and every minibatch comes from pyconvnet's own
Provider with that seed (the same case order, crops and flips, the same mean subtraction). What
differs from `pyconvnet train` is only the arithmetic: PyTorch's kernels and their float32
rounding. So over several seeds the two test-error distributions must agree; a gap between them
is a semantic difference to find.

    python benchmarks/train_torch.py --layer-def ../shared/data/cuda-convnet-layers/layers-18pct.cfg \
        --layer-params ../shared/data/cuda-convnet-layers/layer-params-18pct.cfg \
        --data-path ../shared/data/cifar10-subset --train-range 1-5 --test-range 6 --epochs 60 \
        --seed 0 [--json out.json]

Prints one line per epoch, like `pyconvnet train`: ``test E: cost C err R``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def copy_weights(net, tnet, specs, torch):
    """Copy pyconvnet's conv/fc weights ((C, r, r, F) filters, (in, out) matrices) into torchnet's
    (F, C, r, r) / (out, in) parameters."""
    params = net.params()
    with torch.no_grad():
        for s in specs:
            if s.type not in ("conv", "fc"):
                continue
            if len(s.inputs) != 1:
                raise SystemExit(f"train_torch: layer {s.name} has several inputs; not translated")
            w = np.asarray(params[s.name + ".w0"])
            w = w.transpose(3, 0, 1, 2) if s.type == "conv" else w.T
            tnet.w[s.name + "_w"].copy_(torch.from_numpy(np.ascontiguousarray(w)))
            tnet.w[s.name + "_b"].copy_(torch.from_numpy(np.asarray(params[s.name + ".b"]).ravel()))


def to_nchw(images, torch):
    """pyconvnet's (C, H, W, N) float32 batch as a contiguous (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(3, 0, 1, 2)))


def fixed_order(train, n_files, mini):
    """cuda-convnet's training order: the data batches one after another, each cut into
    minibatches in file order (the last one of each batch smaller), the same every epoch. Assumes
    the ``n_files`` batches hold equally many cases, as CIFAR's do."""
    src = train.source
    per_file, rest = divmod(src.num_cases, n_files)
    if rest or train.crop or train.color_noise:
        raise SystemExit("train_torch: --order cuda-convnet needs equal batches and no augmentation")

    def minibatches():
        for f in range(n_files):
            for lo in range(f * per_file, (f + 1) * per_file, mini):
                idx = np.arange(lo, min(lo + mini, (f + 1) * per_file))
                x = src.images[idx].astype(np.float32) - train.mean[None]
                yield x.transpose(1, 2, 3, 0), np.asarray(src.labels[idx], dtype=np.int64)
    return minibatches


def evaluate(tnet, test, torch):
    """(cost per case, top-1 error) over one pass of ``test``."""
    tnet.eval()
    cost = wrong = n = 0.0
    with torch.no_grad():
        for batch in test.iter_test():
            images, labels = batch.data
            x, lab = to_nchw(images, torch), torch.from_numpy(labels)
            cost += float(tnet(x, lab))
            logp = tnet.last_logp
            wrong += float((logp.argmax(1) != lab).sum())
            n += len(labels)
    tnet.train()
    return cost / n, wrong / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer-def", required=True)
    ap.add_argument("--layer-params", required=True)
    ap.add_argument("--data-provider", default="cifar")
    ap.add_argument("--data-path", required=True)
    ap.add_argument("--train-range", default="1-5")
    ap.add_argument("--test-range", default="6")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--mini", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--order", choices=("shuffled", "cuda-convnet"), default="shuffled",
                    help="shuffled: pyconvnet's order (all training cases shuffled per epoch); "
                         "cuda-convnet: its fixed order, each data batch in turn, minibatches cut "
                         "in file order within one batch (no cropping)")
    ap.add_argument("--json", help="write the per-epoch history here")
    args = ap.parse_args(argv)

    import torch

    from pyconvnet.backend import get_backend
    from pyconvnet.config import parse_layer_files
    from pyconvnet.data import make_provider, parse_range
    from pyconvnet.net import Net

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torchnet import build, train_step

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # dropout masks (torch's own generator)
    train, test = make_provider(args.data_provider, args.data_path, train_range=args.train_range,
                                test_range=args.test_range, seed=args.seed, mini=args.mini)
    specs = parse_layer_files(args.layer_def, args.layer_params, train.data_dims)
    net = Net(specs, get_backend("cpu"), seed=args.seed)
    tnet, opt = build(specs, torch, "cpu")
    copy_weights(net, tnet, specs, torch)
    del net

    if args.order == "shuffled":
        def minibatches():
            for _ in range(train.batches_per_epoch):
                yield train.next_batch().data
    else:
        minibatches = fixed_order(train, len(parse_range(args.train_range)), args.mini)

    history = []
    t0 = time.perf_counter()
    try:
        for epoch in range(1, args.epochs + 1):
            te = time.perf_counter()
            cost = wrong = n = 0.0
            for images, labels in minibatches():
                lab = torch.from_numpy(labels)
                cost += float(train_step(tnet, opt, to_nchw(images, torch), lab, len(labels)).detach())
                wrong += float((tnet.last_logp.argmax(1) != lab).sum())
                n += len(labels)
            rate = n / (time.perf_counter() - te)
            tcost, terr = evaluate(tnet, test, torch)
            history.append(dict(epoch=epoch, train_cost=cost / n, train_err=wrong / n,
                                test_cost=tcost, test_err=terr, images_per_s=rate))
            print(f"epoch {epoch}/{args.epochs} train cost {cost / n:.4f} err {wrong / n:.4f} "
                  f"{rate:,.0f} img/s", flush=True)
            print(f"test {epoch}: cost {tcost:.4f} err {terr:.4f}", flush=True)
    finally:
        train.close()
        test.close()
    print(f"seed {args.seed}: final test error {history[-1]['test_err']:.4f}, wall "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(seed=args.seed, args=vars(args),
                                                   history=history), indent=1))


if __name__ == "__main__":
    main()
