"""The same network in PyTorch: a `torch.nn.Module` built from pyconvnet's parsed layer specs, for
whole-net comparisons (benchmarks/bench_net.py). NCHW tensors, the same layer sizes, the same math
where PyTorch has it:

- conv: F.conv2d with groups; cuda-convnet's output-size rule (ceil) is matched by padding the bottom
  and right edges further when the last window runs past the padded image;
- pool: max/avg with ceil_mode=True (cuda-convnet's clipped windows; avg divides by the in-image
  count) -- start must be 0;
- cmrnorm: F.local_response_norm(size, alpha=scale, beta=pow, k=minDiv) (torch divides alpha by size,
  as cuda-convnet does); rnorm: the same over a size x size window of one channel, through avg_pool2d;
  cnorm is not translated;
- fc: a matmul over the flattened input; dropout/dropout2: F.dropout (torch's RNG, torch's scaling);
  softmax + logreg: log_softmax + nll_loss (summed over the batch);
- learning rule: torch.optim.SGD(lr=eps, momentum=mom, weight_decay=wc) per weight array, which is
  cuda-convnet's rule for constant learning rates, on the minibatch-averaged gradient.
"""
from __future__ import annotations


def build(specs, torch, device="cuda"):
    """(module, optimizer) for ``specs`` (pyconvnet.config.LayerSpec list, topological order)."""
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.specs = specs
            self.w = nn.ParameterDict()
            for s in specs:
                p = s.params
                if s.type == "conv":
                    c, g, r = p["channels"][0], p["groups"][0], p["filter_size"][0]
                    self.w[s.name + "_w"] = nn.Parameter(torch.randn(p["filters"], c // g, r, r) * 0.01)
                    self.w[s.name + "_b"] = nn.Parameter(torch.zeros(p["filters"]))
                elif s.type == "fc":
                    fin = sum(p["in_features"])
                    self.w[s.name + "_w"] = nn.Parameter(torch.randn(p["outputs"], fin) * 0.01)
                    self.w[s.name + "_b"] = nn.Parameter(torch.zeros(p["outputs"]))
                elif s.type in ("local", "cnorm", "eltmax", "cost.sum2"):
                    raise NotImplementedError(f"torchnet: layer type {s.type} is not translated")

        def forward(self, images, labels):
            outs, loss = {}, None
            for s in self.specs:
                p = s.params
                ins = [outs.get(i) for i in s.inputs]
                if s.type == "data":
                    outs[s.name] = images if p["data_idx"] == 0 else labels
                    continue
                x = ins[0] if ins else None
                if s.type == "conv":
                    pad, st, r, img = p["padding"][0], p["stride"][0], p["filter_size"][0], p["img_size"][0]
                    extra = (p["modules"] - 1) * st + r - (img + 2 * pad)  # cuda-convnet's ceil rule
                    if extra > 0:
                        x = F.pad(x, (0, extra, 0, extra))
                    y = F.conv2d(x, self.w[s.name + "_w"], self.w[s.name + "_b"], stride=st, padding=pad,
                                 groups=p["groups"][0])
                elif s.type == "pool":
                    if p["start"] != 0:
                        raise NotImplementedError("torchnet: pool start != 0")
                    f = F.max_pool2d if p["mode"] == "max" else F.avg_pool2d
                    y = f(x, p["size"], p["stride"], ceil_mode=True)
                elif s.type == "cmrnorm":
                    y = F.local_response_norm(x, p["size"], alpha=s.learn["scale"], beta=s.learn["pow"],
                                              k=s.learn.get("min_div", 1.0))
                elif s.type == "rnorm":
                    size = p["size"]
                    sq = F.avg_pool2d(x * x, size, 1, padding=size // 2, count_include_pad=True) * size * size
                    y = x * (s.learn.get("min_div", 1.0) + s.learn["scale"] / (size * size) * sq) ** -s.learn["pow"]
                elif s.type == "fc":
                    y = F.linear(x.flatten(1), self.w[s.name + "_w"], self.w[s.name + "_b"])
                elif s.type in ("dropout", "dropout2"):
                    y = F.dropout(x, 1 - s.learn.get("keep", p.get("keep", 0.5)), self.training)
                elif s.type == "softmax":
                    y = F.log_softmax(x, dim=1)  # the logreg cost below takes log-probabilities
                    self.last_logp = y.detach()
                elif s.type == "cost.logreg":
                    lab, logp = ins
                    loss = F.nll_loss(logp, lab, reduction="sum") * s.learn.get("coeff", 1.0)
                    y = None
                elif s.type == "eltsum":
                    y = sum(c * a for c, a in zip(s.learn.get("coeffs", p["coeffs"]), ins))
                elif s.type == "concat":
                    y = torch.cat([a.flatten(1) if a.dim() == 2 else a for a in ins], dim=1)
                elif s.type == "neuron":
                    y = x
                else:
                    raise NotImplementedError(f"torchnet: layer type {s.type}")
                neuron = p.get("neuron")
                if neuron is not None and y is not None:
                    y = _neuron(torch, y, *neuron)
                outs[s.name] = y
            return loss

    net = Net().to(device)
    groups = []
    for s in specs:
        if s.type in ("conv", "fc"):
            lr = s.learn
            groups.append(dict(params=[net.w[s.name + "_w"]], lr=lr["eps_w"][0](0.0), momentum=lr["mom_w"][0],
                               weight_decay=lr["wc"][0]))
            groups.append(dict(params=[net.w[s.name + "_b"]], lr=lr["eps_b"](0.0), momentum=lr["mom_b"],
                               weight_decay=0.0))
    opt = torch.optim.SGD(groups, lr=0.0)
    return net, opt


def _neuron(torch, y, name, params):
    if name == "relu":
        return torch.relu(y)
    if name == "ident":
        return y
    if name == "logistic":
        return torch.sigmoid(y)
    if name == "tanh":
        a, b = params
        return a * torch.tanh(b * y)
    if name == "brelu":
        return torch.clamp(y, 0, params[0])
    if name == "softrelu":
        return torch.nn.functional.softplus(y)
    if name == "abs":
        return y.abs()
    if name == "square":
        return y * y
    if name == "sqrt":
        return y.sqrt()
    if name == "linear":
        a, b = params
        return a * y + b
    raise NotImplementedError(name)


def train_step(net, opt, images, labels, n):
    """One step of cuda-convnet's rule: the gradient averaged over the batch, then SGD."""
    opt.zero_grad(set_to_none=False)
    loss = net(images, labels)
    (loss / n).backward()
    opt.step()
    return loss
