"""Neuron (activation) kernels: ReLU and tanh forward and backward on AlexNet-sized tensors."""
from __future__ import annotations

from harness import Case

SHAPES = [(64, 55, 55, 128), (4096, 4096)]


def cases(cp, torch):
    from pyconvnet.cuda.ops import neuron

    for shape in SHAPES:
        rng = cp.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=cp.float32)
        dy = rng.standard_normal(shape, dtype=cp.float32)
        y, dx = cp.empty_like(x), cp.empty_like(x)
        neuron.neuron_fwd(x, "relu", out=y)
        n = x.size * 4
        label = "x".join(map(str, shape))
        tx = tdy = None
        if torch is not None:
            tx = torch.randn(shape, device="cuda")
            tdy = torch.randn(shape, device="cuda")
            ty = torch.relu(tx)
        yield Case("relu", "fwd", label, lambda: neuron.neuron_fwd(x, "relu", out=y), nbytes=2 * n,
                   torch_run=(lambda: torch.relu(tx)) if torch is not None else None, note="torch.relu")
        yield Case("relu", "bwd", label, lambda: neuron.neuron_bwd(dy, x, y, "relu", out=dx), nbytes=3 * n,
                   torch_run=(lambda: torch.ops.aten.threshold_backward(tdy, ty, 0)) if torch is not None else None,
                   note="reads dy, y; torch: aten.threshold_backward")
        yield Case("tanh[1.7159,0.6667]", "fwd", label,
                   lambda: neuron.neuron_fwd(x, "tanh", (1.7159, 0.6667), out=y), nbytes=2 * n,
                   torch_run=(lambda: 1.7159 * torch.tanh(0.6667 * tx)) if torch is not None else None,
                   note="torch: eager a*tanh(b*x), 3 kernels")
