"""The ``pyconvnet`` command: ``train``, ``show`` and ``info``.

``pyconvnet train`` keeps cuda-convnet's option names (``--layer-def``, ``--layer-params``,
``--data-path``, ``--data-provider``, ``--train-range``, ``--test-range``, ``--save-path``,
``--load-file``, ``--epochs``, ``--mini``, ``--test-freq``, ``--test-only``, ``--multiview-test``,
``--inner-size``, ``--check-grads``, ``--write-features``/``--feature-path``, ``--gpu``) and adds
``--seed``, ``--device`` and ``--color-noise``. With no arguments it trains the built-in default net
on the built-in synthetic dataset. Every user error ends in one line ``pyconvnet: error: ...`` and
exit status 2; a diverged run exits with status 3 after keeping its last good checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NETS = Path(__file__).resolve().parent / "nets"
DEFAULTS = dict(layer_def="default", layer_params=None, data_provider=None, data_path=None,
                train_range=None, test_range=None, epochs=20, mini=128, test_freq=0,
                inner_size=0, color_noise=0.0, multiview_test=False, seed=0, workers=2)


class UsageError(Exception):
    """A mistake in the command line or its files: reported as one line, exit status 2."""


def _flag(text):
    """cuda-convnet's boolean option values: 0/1/true/false/yes/no."""
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0/1/true/false, got {text!r}")


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def _nonneg_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def build_parser():
    p = argparse.ArgumentParser(prog="pyconvnet", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser("train", help="train a net from cuda-convnet layer files (or test/inspect one)")
    S = argparse.SUPPRESS  # unset options stay unset, so a checkpoint's values can fill them
    t.add_argument("--layer-def", default=S, help="layer definition file, or a built-in net name "
                   f"({', '.join(sorted(x.stem for x in NETS.glob('*.cfg') if not x.stem.endswith('-params')))})")
    t.add_argument("--layer-params", default=S, help="layer parameter file (default: the built-in "
                   "net's, or NAME-params.cfg beside the layer definition)")
    t.add_argument("--data-provider", choices=["cifar", "images", "synthetic"], default=S)
    t.add_argument("--data-path", default=S, help="data folder (none: the built-in synthetic data)")
    t.add_argument("--train-range", default=S, help="training batches, e.g. 1-5")
    t.add_argument("--test-range", default=S, help="test batches, e.g. 6")
    t.add_argument("--save-path", default=S, help="folder for checkpoints (none: no checkpoints)")
    t.add_argument("--load-file", default=S, help="checkpoint (file or folder) to resume or test")
    t.add_argument("--epochs", type=_positive, default=S)
    t.add_argument("--mini", type=_positive, default=S, help="minibatch size (128)")
    t.add_argument("--test-freq", type=_positive, default=S,
                   help="test and checkpoint every N minibatches (0: at each epoch's end)")
    t.add_argument("--test-only", type=_flag, nargs="?", const=True, default=False)
    t.add_argument("--multiview-test", type=_flag, nargs="?", const=True, default=S)
    t.add_argument("--inner-size", type=_positive, default=S, help="random crops of this size")
    t.add_argument("--color-noise", type=_nonneg_float, default=S,
                   help="PCA lighting noise sigma (AlexNet paper: 0.1)")
    t.add_argument("--check-grads", type=_flag, nargs="?", const=True, default=False,
                   help="numerical gradient check of the whole net, then quit")
    t.add_argument("--write-features", default=None, metavar="LAYER")
    t.add_argument("--feature-path", default=None)
    t.add_argument("--seed", type=_positive, default=S)
    t.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    t.add_argument("--gpu", type=_positive, default=0, help="CUDA device number")
    t.add_argument("--workers", type=_positive, default=S,
                   help="image-decoding processes (image folders); 0: no background work at all")
    s = sub.add_parser("show", help="plots from a checkpoint (cuda-convnet's shownet)")
    s.add_argument("checkpoint", help="checkpoint file or folder")
    s.add_argument("--out", default=None, help="folder for the PNG files (default: beside it)")
    s.add_argument("--data-path", default=None, help="data for the prediction grid (default: "
                   "the checkpoint's)")
    sub.add_parser("info", help="which backends are usable here, and why not")
    return p


def resolve_net_files(layer_def, layer_params):
    """Paths of the two layer files; a bare name means a built-in net from pyconvnet/nets/."""
    d = Path(layer_def)
    if not d.exists() and not d.suffix and (NETS / f"{layer_def}.cfg").is_file():
        d = NETS / f"{layer_def}.cfg"
        if layer_params is None:
            layer_params = str(NETS / f"{layer_def}-params.cfg")
    if not d.is_file():
        raise UsageError(f"--layer-def {layer_def}: no such file")
    if layer_params is None:
        guess = d.with_name(d.stem.replace("layers", "layer-params", 1) + d.suffix) \
            if d.stem.startswith("layers") else d.with_name(d.stem + "-params" + d.suffix)
        if not guess.is_file():
            raise UsageError(f"--layer-params is required (no {guess.name} beside {d})")
        layer_params = str(guess)
    pp = Path(layer_params)
    if not pp.is_file():
        raise UsageError(f"--layer-params {layer_params}: no such file")
    return d, pp


def pick_backend(device, gpu, out):
    """The backend for --device; says which and why in the first line of output."""
    from .backend import get_backend
    from . import __version__
    if device in ("auto", "gpu"):
        try:
            b = get_backend("gpu", device_id=gpu)
        except Exception as e:  # CuPy absent, no device, kernels missing
            if device == "gpu":
                raise UsageError(f"--device gpu: the CUDA backend is not usable here: {e}") from None
            out.write(f"pyconvnet {__version__}: training on the CPU (GPU backend unavailable: "
                      f"{str(e).splitlines()[0]})\n")
            return get_backend("cpu")
        out.write(f"pyconvnet {__version__}: training on GPU {gpu}\n")
        return b
    out.write(f"pyconvnet {__version__}: training on the CPU (--device cpu)\n")
    return get_backend("cpu")


def main(argv=None, out=None):
    out = out if out is not None else sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(out)
        return 0
    try:
        if args.command == "info":
            from . import info
            out.write(info() + "\n")
            return 0
        if args.command == "show":
            from .show import show
            for f in show(args.checkpoint, out_dir=args.out, data_path=args.data_path):
                out.write(f"wrote {f}\n")
            return 0
        from .run import run_train
        return run_train(args, out)
    except UsageError as e:
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # ConfigError, DataError, CheckpointError, op argument errors
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
