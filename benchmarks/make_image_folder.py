"""Write a synthetic image folder in the ImageNet layout, for timing `pyconvnet train` on image data
where no real data set is at hand (the GPU machine is offline).

    python benchmarks/make_image_folder.py OUT [--classes 10] [--train 320] [--val 64] [--size 256]

OUT/train/<class>/*.jpg and OUT/val/<class>/*.jpg: ``--train`` and ``--val`` JPEGs per class of
``--size`` x ``--size`` pixels (quality 90), each a smooth random colour field with a class-dependent
tint plus pixel noise, so that files decode like photographs (about the size of a resized ImageNet JPEG)
rather than like flat colour. Deterministic (seeded per file); files that exist are kept.
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def image(rng, size, tint):
    """uint8 (size, size, 3): a bilinearly upsampled 9x9 random field, tinted, plus noise."""
    coarse = rng.uniform(0, 255, (9, 9, 3))
    t = np.linspace(0, 8, size)
    i0 = np.minimum(t.astype(int), 7)
    f = (t - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]          # (size, 9, 3)
    img = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]      # (size, size, 3)
    img = 0.6 * img + 0.4 * tint + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train", type=int, default=320, help="training images per class")
    ap.add_argument("--val", type=int, default=64, help="validation images per class")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    from PIL import Image

    jobs = []
    for split, count in (("train", a.train), ("val", a.val)):
        for c in range(a.classes):
            d = os.path.join(a.out, split, f"class{c:04d}")
            os.makedirs(d, exist_ok=True)
            jobs += [(os.path.join(d, f"{split}_{c:04d}_{i:05d}.jpg"), split, c, i) for i in range(count)]

    def write(job):
        path, split, c, i = job
        if os.path.exists(path):
            return
        rng = np.random.default_rng([c, i, split == "val"])
        tint = np.random.default_rng(c).uniform(0, 255, 3)
        Image.fromarray(image(rng, a.size, tint)).save(path + ".part", format="JPEG", quality=90)
        os.replace(path + ".part", path)

    with ThreadPoolExecutor(a.workers) as ex:
        list(ex.map(write, jobs))
    print(f"{len(jobs)} images ({a.classes} classes, {a.train}+{a.val} per class, {a.size}x{a.size}) "
          f"in {a.out}")


if __name__ == "__main__":
    main()
