"""The GPU feed's crop + mirror + mean subtraction (+ colour shift) of uint8 batches: an AlexNet batch
(128x3x256x256 -> 224) and a CIFAR one (128x3x32x32, no crop), against the same in torch (slicing the
uint8 crop, converting, subtracting the mean, mirroring half the cases, adding the shift)."""
from __future__ import annotations

import numpy as np

from harness import Case

SHAPES = [(128, 3, 256, 224), (128, 3, 32, 32)]  # n, C, H (= W), S


def cases(cp, torch):
    from pyconvnet.cuda.ops import augment
    from pyconvnet.data.augment import pack_geometry, random_crops

    for n, C, H, S in SHAPES:
        rng = np.random.default_rng(0)
        imgs = cp.asarray(rng.integers(0, 256, (n, C, H, H), dtype=np.uint8))
        mean = cp.asarray(rng.uniform(0, 255, (C, H, H)).astype(np.float32))
        oy, ox, flip = random_crops(n, H, H, S, rng)
        geom = cp.asarray(pack_geometry(oy, ox, flip, H, H, S))
        shift = cp.asarray(rng.normal(0, 3, (n, C)).astype(np.float32))
        out = cp.empty((C, S, S, n), cp.float32)
        label = f"{n}x{C}x{H}x{H}->{S}"
        nbytes = n * C * S * S * (1 + 4) + C * H * H * 4 + n * C * 4 + n * 12
        trun = None
        if torch is not None:
            ti = torch.as_tensor(imgs, device="cuda")
            tm = torch.as_tensor(mean, device="cuda")
            ts = torch.as_tensor(shift, device="cuda")
            y0, x0 = int(oy[0]), int(ox[0])  # one corner for all cases: torch's best case
            half = n // 2

            def trun():
                x = ti[:, :, y0:y0 + S, x0:x0 + S].float() - tm[:, y0:y0 + S, x0:x0 + S]
                x[:half] = x[:half].flip(3)
                x += ts[:, :, None, None]
                return x.permute(1, 2, 3, 0).contiguous()
        yield Case("augment", "fwd", label,
                   lambda: augment.prepare(imgs, mean, geom, S, shift, out=out), nbytes=nbytes,
                   torch_run=trun, note="uint8 in, float32 (C,S,S,n) out; torch: one crop corner, "
                                        "slice + float + flip + permute")
