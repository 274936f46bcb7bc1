"""``pyconvnet show``: cuda-convnet's shownet as three PNG files drawn with Pillow.

From one checkpoint (see :mod:`pyconvnet.checkpoint`):

- ``cost.png``: training cost and error per minibatch (faint: raw; bold: moving average) and the
  test cost and error at each test, against epochs;
- ``filters.png``: the filters of the first convolutional (or locally connected) layer as a grid of
  tiles, each normalised to its own min/max; RGB when the layer sees 3 channels, else the first
  channel in grey (nets without such a layer get a note instead);
- ``predictions.png``: test images with their true label and the net's three most probable classes,
  computed by rebuilding the net on the CPU from the checkpoint's layer files and weights.
"""
from __future__ import annotations

import configparser
import io
import math
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt_mod

BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)
GREY, LIGHT, BLACK, WHITE = (120, 120, 120), (225, 225, 225), (0, 0, 0), (255, 255, 255)


class ShowError(ValueError):
    """The checkpoint cannot be shown (no history, missing data); the message is one line."""


def show(checkpoint, out_dir=None, data_path=None, *, num_images=16, out=None):
    """Write ``cost.png``, ``filters.png`` and ``predictions.png``; return the paths written.

    ``checkpoint``: a checkpoint file or folder. ``out_dir``: where to write (default: the
    checkpoint's folder). ``data_path``: the data for the prediction grid (default: the one the
    checkpoint was trained on). Notes (a skipped filter image) go to ``out`` (default stderr).
    Raises :class:`ShowError` when the checkpoint has no training history or the test data cannot
    be read, :class:`pyconvnet.checkpoint.CheckpointError` when the file is not a checkpoint.
    """
    out = out if out is not None else sys.stderr
    f = ckpt_mod.checkpoint_file(checkpoint)
    params, incs, meta = ckpt_mod.load(f)
    hist = meta.get("history") or {}
    if not hist.get("train"):
        raise ShowError(f"{f}: no training history to plot (no minibatch was trained before it "
                        "was written)")
    _pil()
    dest = Path(out_dir) if out_dir is not None else f.parent
    dest.mkdir(parents=True, exist_ok=True)
    written = [draw_curves(hist, meta, dest / "cost.png", f.name)]
    layer = first_conv_layer(meta.get("layer_def_text", ""), params)
    if layer is None:
        out.write(f"pyconvnet show: note: the net in {f} has no conv or local layer, so no "
                  "filters.png was written\n")
    else:
        written.append(draw_filters(params[f"{layer}.w0"], layer, dest / "filters.png"))
    written.append(draw_predictions(f, params, incs, meta, dest / "predictions.png", data_path,
                                    num_images, done=written))
    return written


# ------------------------------------------------------------------------------------- Pillow
def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ShowError("pyconvnet show needs Pillow (pip install pillow)") from None
    return Image, ImageDraw, ImageFont


def _font(size):
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw, text, font):
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


# ------------------------------------------------------------------------------------- curves
def smooth(y, window):
    """Trailing moving average of a 1-D array (the first points average what exists so far)."""
    y = np.asarray(y, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(y)])
    i = np.arange(1, len(y) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def nice_ticks(lo, hi, n=6):
    """Round tick values covering [lo, hi]: returns (axis_lo, axis_hi, ticks, decimals)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        pad = 0.5 if hi == 0 else abs(hi) * 0.1
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    a, b = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    ticks = a + step * np.arange(int(round((b - a) / step)) + 1)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if round(step / mag, 6) == 2.5 else 0)
    return a, b, ticks, decimals


def _panel(draw, font, box, title, series, xlabel="epoch"):
    """One line chart in ``box`` (x0, y0, x1, y1): series = [(label, xs, ys, colour, width, dots)]."""
    bx0, by0, bx1, by1 = box
    tw, th = _text_size(draw, title, font)
    draw.text(((bx0 + bx1 - tw) // 2, by0), title, fill=BLACK, font=font)
    px0, py0, px1, py1 = bx0 + 64, by0 + th + 14, bx1 - 12, by1 - 2 * th - 16
    series = [(lab, np.asarray(x, float), np.asarray(y, float), c, w, d)
              for lab, x, y, c, w, d in series]
    series = [(lab, x[np.isfinite(y)], y[np.isfinite(y)], c, w, d) for lab, x, y, c, w, d in series]
    series = [s for s in series if len(s[1])]
    if not series:
        msg = "nothing recorded"
        mw, mh = _text_size(draw, msg, font)
        draw.rectangle((px0, py0, px1, py1), outline=GREY)
        draw.text(((px0 + px1 - mw) // 2, (py0 + py1 - mh) // 2), msg, fill=GREY, font=font)
        return
    allx = np.concatenate([s[1] for s in series])
    ally = np.concatenate([s[2] for s in series])
    xa, xb, xt, xd = nice_ticks(min(0.0, allx.min()), allx.max(), 8)
    ya, yb, yt, yd = nice_ticks(ally.min(), ally.max(), 6)

    def px(x):
        return px0 + (np.asarray(x) - xa) / (xb - xa) * (px1 - px0)

    def py(y):
        return py1 - (np.asarray(y) - ya) / (yb - ya) * (py1 - py0)

    for t in yt:
        y = float(py(t))
        draw.line((px0, y, px1, y), fill=LIGHT)
        s = f"{t:.{yd}f}"
        w, h = _text_size(draw, s, font)
        draw.text((px0 - w - 6, y - h / 2 - 2), s, fill=BLACK, font=font)
    for t in xt:
        x = float(px(t))
        draw.line((x, py0, x, py1), fill=LIGHT)
        s = f"{t:.{xd}f}"
        w, h = _text_size(draw, s, font)
        draw.text((x - w / 2, py1 + 5), s, fill=BLACK, font=font)
    draw.rectangle((px0, py0, px1, py1), outline=BLACK)
    w, h = _text_size(draw, xlabel, font)
    draw.text(((px0 + px1 - w) / 2, py1 + th + 10), xlabel, fill=BLACK, font=font)
    for _, x, y, colour, width, dots in series:
        pts = np.column_stack([px(x), py(y)]).ravel().tolist()
        if len(x) > 1:
            draw.line(pts, fill=colour, width=width, joint="curve")
        if dots or len(x) == 1:
            for cx, cy in zip(pts[0::2], pts[1::2]):  # a few test points
                draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=colour)
    # legend, top right inside the plot
    labels = [s for s in series if s[0]]
    lw = max(_text_size(draw, s[0], font)[0] for s in labels) + 40
    lx, ly = px1 - lw - 8, py0 + 8
    draw.rectangle((lx, ly, lx + lw, ly + 8 + len(labels) * (th + 8)), fill=WHITE, outline=GREY)
    for i, (lab, _, _, colour, _, _) in enumerate(labels):
        yy = ly + 6 + i * (th + 8)
        draw.line((lx + 6, yy + th / 2 + 2, lx + 28, yy + th / 2 + 2), fill=colour, width=3)
        draw.text((lx + 34, yy), lab, fill=BLACK, font=font)


def _column(rows, i):
    return np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=np.float64)


def draw_curves(hist, meta, path, name):
    """Two panels (cost, error) against epochs from a checkpoint's history; returns ``path``."""
    Image, ImageDraw, _ = _pil()
    train, test = hist.get("train", []), hist.get("test", [])
    prov = meta.get("provider") or {}
    if prov.get("num_cases") and prov.get("mini"):
        nb = -(-int(prov["num_cases"]) // int(prov["mini"]))
    else:
        nb = max(int(r[1]) for r in train)
    tx = _column(train, 0) - 1 + _column(train, 1) / nb
    win = max(1, len(train) // 40)
    sx = _column(test, 0) - 1 + _column(test, 1) / nb if test else np.zeros(0)
    img = Image.new("RGB", (1200, 520), WHITE)
    draw = ImageDraw.Draw(img)
    font, big = _font(14), _font(18)
    title = f"{name}: {len(train)} training minibatches, {len(test)} tests"
    w, _ = _text_size(draw, title, big)
    draw.text(((1200 - w) // 2, 10), title, fill=BLACK, font=big)
    smooth_lab = f"train (mean of {win})" if win > 1 else "train"
    for k, (what, col) in enumerate((("cost per case", 2), ("error rate", 3))):
        ty = _column(train, col)
        series = []
        if win > 1:
            series.append(("", tx, ty, (174, 199, 232), 1, False))
        ok = np.isfinite(ty)
        series.append((smooth_lab, tx[ok], smooth(ty[ok], win), BLUE, 2, False))
        if test:
            series.append(("test", sx, _column(test, col), ORANGE, 2, True))
            if col == 3 and any(r[4] is not None for r in test):
                series.append(("test top-k", sx, _column(test, 4), GREEN, 2, True))
        _panel(draw, font, (20 + k * 590, 50, 580 + k * 590, 510), what, series)
    img.save(path)
    return path


# ------------------------------------------------------------------------------------ filters
def first_conv_layer(def_text, params):
    """Name of the conv/local layer nearest the data (fewest layers between), or None.

    A layer counts when the checkpoint has its ``NAME.w0`` with 4 (conv) or 5 (local) dimensions.
    """
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    try:
        cp.read_string(def_text)
    except configparser.Error:
        cp = None
    inputs = {} if cp is None else {s: [x.strip() for x in cp[s].get("inputs", "").split(",")
                                        if x.strip()] for s in cp.sections()}
    depth = {}

    def d(name, seen=()):
        if name not in depth:
            ins = [i for i in inputs.get(name, []) if i in inputs and i not in seen]
            depth[name] = 1 + max((d(i, seen + (name,)) for i in ins), default=-1)
        return depth[name]

    cands = [k[:-3] for k, v in params.items() if k.endswith(".w0") and v.ndim in (4, 5)]
    return min(cands, key=lambda n: (d(n), list(params).index(f"{n}.w0")), default=None)


def filter_grid(w, zoom=None, border=2):
    """Tile conv filters (C, R, R, K) (or local filters: the centre position's) into an RGB image.

    Returns uint8 (H, W, 3): K tiles of R*zoom pixels in rows of up to 16, each filter scaled to its
    own [min, max]; RGB when C == 3, else channel 0 in grey. Borders are dark grey.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 5:
        w = w[w.shape[0] // 2]
    C, R, _, K = w.shape
    t = w[:3] if C == 3 else w[:1].repeat(3, axis=0)          # (3, R, R, K)
    t = t.transpose(3, 1, 2, 0)                                # (K, R, R, 3)
    lo = t.min(axis=(1, 2, 3), keepdims=True)
    hi = t.max(axis=(1, 2, 3), keepdims=True)
    t = np.rint(255 * (t - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.uint8)
    zoom = zoom or max(1, math.ceil(48 / R))
    t = t.repeat(zoom, axis=1).repeat(zoom, axis=2)
    cols = min(K, 16)
    rows = -(-K // cols)
    pad = np.full((rows * cols - K,) + t.shape[1:], 60, np.uint8)
    t = np.concatenate([t, pad])
    t = np.pad(t, ((0, 0), (border, 0), (border, 0), (0, 0)), constant_values=60)
    s = t.shape[1]
    g = t.reshape(rows, cols, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, cols * s, 3)
    return np.pad(g, ((0, border), (0, border), (0, 0)), constant_values=60)


def draw_filters(w, layer, path):
    """Write the filter grid of ``layer`` (weights ``w``) with a title; returns ``path``."""
    Image, ImageDraw, _ = _pil()
    grid = filter_grid(w)
    C, R, K = w.shape[-4], w.shape[-3], w.shape[-1]
    kind = "RGB" if C == 3 else f"channel 1 of {C}"
    title = f"{layer}: {K} filters, {R}x{R}, {kind}" + (" (centre position)" if w.ndim == 5 else "")
    font = _font(16)
    width = max(grid.shape[1] + 20, 420)
    img = Image.new("RGB", (width, grid.shape[0] + 50), WHITE)
    draw = ImageDraw.Draw(img)
    tw, _ = _text_size(draw, title, font)
    draw.text(((width - tw) // 2, 12), title, fill=BLACK, font=font)
    img.paste(Image.fromarray(grid), ((width - grid.shape[1]) // 2, 40))
    img.save(path)
    return path


# -------------------------------------------------------------------------------- predictions
def predict_test_images(f, params, incs, meta, data_path, n):
    """Rebuild the net on the CPU; return (display uint8 (n, S, S, 3), labels (n,), probs (F, n),
    label names)."""
    from .backend import get_backend
    from .cli import DEFAULTS
    from .data import DataError
    from .run import build
    from .train import load_arrays, to_host
    opts = dict(DEFAULTS, save_path=None, layer_params=None)
    opts.update(meta.get("options") or {})
    opts.update(multiview_test=False, color_noise=0.0, workers=0, mini=n)
    if data_path is not None:
        opts["data_path"] = str(data_path)
        if opts.get("data_provider") in (None, "synthetic"):
            opts["data_provider"] = "cifar"
    where = opts.get("data_path") or "the built-in synthetic data"
    try:
        net, train, test, _ = build(opts, (params, incs, meta), get_backend("cpu"), io.StringIO())
    except (DataError, OSError) as e:
        raise ShowError(f"cannot read the test data ({where}) for predictions.png: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                        "give the data folder with --data-path") from None
    try:
        load_arrays(net, params, incs)
        batch = next(iter(test.iter_test()))
        images, labels = batch.data[0][..., :n], to_host(batch.data[1][:n])
        images = np.ascontiguousarray(to_host(images))
        probs = to_host(net.predict(images))
        names = meta.get("label_names") or test.label_names
        return test.to_display(images), labels.astype(np.int64), probs, names
    finally:
        for p in (train, test):
            p.close()


def draw_predictions(f, params, incs, meta, path, data_path, n, done=()):
    """Grid of test images with true label and top-3 predictions as bars; returns ``path``."""
    Image, ImageDraw, _ = _pil()
    try:
        disp, labels, probs, names = predict_test_images(f, params, incs, meta, data_path, n)
    except ShowError as e:
        note = f" ({', '.join(p.name for p in done)} written)" if done else ""
        raise ShowError(f"{f}: {e}{note}") from None
    n, F = len(labels), probs.shape[0]
    names = list(names) if names else [str(i) for i in range(F)]
    names += [str(i) for i in range(len(names), F)]
    font, big = _font(14), _font(18)
    side, cw, ch, cols = 96, 380, 124, 4
    rows = -(-n // cols)
    img = Image.new("RGB", (cols * cw + 20, rows * ch + 60), WHITE)
    draw = ImageDraw.Draw(img)
    top = np.argsort(-probs, axis=0)[:3]                       # (3, n)
    right = int((top[0] == labels).sum())
    title = f"{f.name}: {n} test images, {right} classified right (top-1)"
    tw, _ = _text_size(draw, title, big)
    draw.text(((img.width - tw) // 2, 14), title, fill=BLACK, font=big)
    S = disp.shape[1]
    rs = getattr(Image, "Resampling", Image)
    resample = rs.NEAREST if S <= side else rs.BILINEAR
    for i in range(n):  # one cell per shown image (16 by default)
        x, y = 10 + (i % cols) * cw, 50 + (i // cols) * ch
        img.paste(Image.fromarray(disp[i]).resize((side, side), resample), (x, y + 4))
        ok = top[0, i] == labels[i]
        draw.text((x + side + 10, y + 2), f"true: {names[labels[i]]}",
                  fill=GREEN if ok else RED, font=font)
        for j in range(3):
            k, p = top[j, i], float(probs[top[j, i], i])
            by = y + 28 + j * 30
            draw.rectangle((x + side + 10, by, x + cw - 20, by + 22), outline=LIGHT)
            draw.rectangle((x + side + 10, by, x + side + 10 + p * (cw - side - 30), by + 22),
                           fill=(GREEN if k == labels[i] else (174, 199, 232)))
            draw.text((x + side + 14, by + 3), f"{names[k]}  {p:.2f}", fill=BLACK, font=font)
    img.save(path)
    return path
