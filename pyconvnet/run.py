"""``pyconvnet train``: from parsed options to a trained (or tested, or checked) net.

Options come from three places, later ones winning: the defaults, the checkpoint named by
``--load-file`` (the options of the run that wrote it), and the command line. The layer definition
is always the checkpoint's own text on resume (the architecture is fixed for the run); the layer
parameter file is re-read from its path when it still exists, as cuda-convnet did, so learning
rates can be edited between runs.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np

from . import checkpoint
from .cli import DEFAULTS, UsageError, resolve_net_files, pick_backend
from .train import Trainer, TrainingDiverged, TrainingStopped, to_host

OPTION_KEYS = ("data_provider", "data_path", "train_range", "test_range", "epochs", "mini",
               "test_freq", "inner_size", "color_noise", "multiview_test", "seed", "workers",
               "save_path")


def merged_options(args):
    """Defaults < checkpoint options < command line; returns (opts, checkpoint or None)."""
    given = vars(args)
    opts = dict(DEFAULTS, save_path=None)
    ckpt = None
    if "load_file" in given:
        params, incs, meta = checkpoint.load(given["load_file"])
        ckpt = (params, incs, meta)
        opts.update({k: v for k, v in meta.get("options", {}).items() if k in OPTION_KEYS})
    opts.update({k: v for k, v in given.items() if k in OPTION_KEYS + ("layer_def", "layer_params")})
    if opts["data_provider"] is None:
        opts["data_provider"] = "synthetic" if opts["data_path"] is None else "cifar"
    if opts["data_provider"] != "synthetic" and opts["data_path"] is None:
        raise UsageError(f"--data-provider {opts['data_provider']} needs --data-path")
    if opts["data_provider"] == "cifar":
        opts["train_range"] = opts["train_range"] or "1-5"
        opts["test_range"] = opts["test_range"] or "6"
    if opts["mini"] < 1:
        raise UsageError("--mini must be at least 1")
    return opts, ckpt


def layer_texts(opts, ckpt):
    """(def_name, def_text, params_name, params_text) for this run."""
    if ckpt is not None:
        meta = ckpt[2]
        def_name, def_text = meta["layer_def_name"], meta["layer_def_text"]
        if opts.get("layer_params") is not None:
            pp = Path(opts["layer_params"])
            if not pp.is_file():
                raise UsageError(f"--layer-params {pp}: no such file")
            return def_name, def_text, str(pp), pp.read_text()
        pp = Path(meta["layer_params_name"])
        if pp.is_file():  # re-read: the user may have changed learning rates
            return def_name, def_text, str(pp), pp.read_text()
        return def_name, def_text, meta["layer_params_name"], meta["layer_params_text"]
    d, p = resolve_net_files(opts["layer_def"], opts["layer_params"])
    return str(d), d.read_text(), str(p), p.read_text()


def build(opts, ckpt, backend, out):
    from .config import parse_layer_texts
    from .data import make_provider, parse_range
    from .net import Net
    try:
        train_range = parse_range(opts["train_range"]) if opts["train_range"] else None
        test_range = parse_range(opts["test_range"]) if opts["test_range"] else None
    except ValueError as e:
        raise UsageError(f"--train-range/--test-range: {e}") from None
    train, test = make_provider(opts["data_provider"], opts["data_path"], train_range=train_range,
                                test_range=test_range, inner_size=opts["inner_size"],
                                color_noise=opts["color_noise"], multiview=opts["multiview_test"],
                                seed=opts["seed"], mini=opts["mini"], workers=opts["workers"])
    def_name, def_text, params_name, params_text = layer_texts(opts, ckpt)
    specs = parse_layer_texts(def_text, params_text, train.data_dims,
                              def_name=def_name, params_name=params_name)
    net = Net(specs, backend, seed=opts["seed"])
    meta = dict(layer_def_name=def_name, layer_def_text=def_text, layer_params_name=params_name,
                layer_params_text=params_text, label_names=train.label_names,
                options={k: opts[k] for k in OPTION_KEYS})
    return net, train, test, meta


def run_train(args, out):
    opts, ckpt = merged_options(args)
    backend = pick_backend(args.device, args.gpu, out)
    net, train, test, meta = build(opts, ckpt, backend, out)
    try:
        return _run(args, opts, ckpt, net, train, test, meta, out)
    finally:
        for p in (train, test):
            if hasattr(p, "close"):
                p.close()


def _run(args, opts, ckpt, net, train, test, meta, out):
    nparams = sum(int(np.prod(a.shape)) for a in net.params().values())
    out.write(f"net: {len(net.layers)} layers, {nparams:,} parameters; data: "
              f"{opts['data_provider']} {train.num_cases:,} training / {test.num_cases:,} test cases, "
              f"{train.num_classes} classes, minibatch {opts['mini']}\n")
    save_path = opts["save_path"]
    trainer = Trainer(net, train, test, epochs=opts["epochs"], test_freq=opts["test_freq"],
                      save_path=save_path, meta=meta, out=out)
    if ckpt is not None:
        trainer.restore(*ckpt)
        out.write(f"resumed from {checkpoint.checkpoint_file(args.load_file)} at step "
                  f"{trainer.step} (epoch {train.get_state()['epoch']})\n")
    if args.check_grads:
        batch = train.next_batch()
        small = [batch.data[0][..., :4], batch.data[1][:4]]
        report = net.check_grads([np.ascontiguousarray(to_host(a)) for a in small])
        out.write(str(report) + "\n")
        return 0 if report.passed else 1
    if args.write_features is not None:
        return write_features(net, test, args.write_features, args.feature_path, out)
    if args.test_only:
        cost, err, topk = trainer.test(train.get_state()["epoch"], 0)
        return 0
    if save_path is None:
        out.write("note: no --save-path given, so no checkpoints are written\n")
    # The first SIGINT (Ctrl-C) or SIGTERM asks the trainer to stop after the step in progress and
    # checkpoint that consistent state; a second SIGINT interrupts at once.
    def stop(signum, frame):
        if trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.request_stop()
        out.write(f"\n{signal.Signals(signum).name}: stopping after this step\n")

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, stop)
    try:
        trainer.train()
    except TrainingDiverged as e:
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 3
    except TrainingStopped as e:
        out.write(f"{e}\n")
        return 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if trainer.last_checkpoint:
        out.write(f"checkpoint: {trainer.last_checkpoint}\n")
    return 0


def write_features(net, test, layer, path, out):
    """Run the test set through the net and save LAYER's outputs as (N, features) arrays."""
    if path is None:
        raise UsageError("--write-features needs --feature-path")
    names = [l.name for l in net.layers]
    if layer not in names:
        raise UsageError(f"--write-features {layer}: no such layer (layers: {', '.join(names)})")
    Path(path).mkdir(parents=True, exist_ok=True)
    n_files = 0
    for i, batch in enumerate(test.iter_test(), 1):
        images, labels = batch.data
        if isinstance(images, (list, tuple)):  # multiview testing: the plain centre crop (view 4)
            images = images[4]
        data = [images, labels]
        net.forward(data, train=False, step=0)
        feats = to_host(net.outputs(layer))
        n = feats.shape[-1]
        np.savez(Path(path) / f"data_batch_{i}.npz", data=feats.reshape(-1, n).T.copy(),
                 labels=to_host(data[1]))
        n_files += 1
    out.write(f"wrote the outputs of {layer} for the test set to {n_files} files in {path}\n")
    return 0
