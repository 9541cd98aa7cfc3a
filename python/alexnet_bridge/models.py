"""The trainer's two AlexNets as PyTorch modules, with every experiment switch.

Parameter names and shapes are those of `trainer/src/model.rs` (and of the checkpoint
files): `features.N` and `classifier.N` are the indices of the `nn.Sequential`s below,
and a switched-off layer (LRN off) is an `nn.Identity` at its index, so conv2 is
`features.4` in every paper variant. Checked against the Rust models by
`trainer/tests/check_parity.py` (same weights, same logits, both ways).

- `PaperAlexNet`: the paper's network (section 3, figure 2) and its ablations:
  activation relu | tanh (3.1), LRN on | off (3.3), overlapping 3x3/2 | non-overlapping
  2x2/2 pooling (3.4), two towers | the one-GPU net (3.2), dropout rate (4.2); `width`
  and `crop` shrink it for demos and tests (not the paper).
- `OwtAlexNet`: torchvision's single-tower `alexnet` ("one weird trick"), the same
  module tree as `torchvision.models.alexnet`, without needing torchvision.
"""
import json

import torch
import torch.nn as nn

ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}
POOLING = {"overlapping": (3, 2), "non-overlapping": (2, 2)}


class TowerLRN(nn.Module):
    """`nn.LocalResponseNorm(5, alpha, 0.75, 2)` within each of `towers` groups of maps
    (the paper normalised each GPU's maps separately); towers=1: over all maps."""

    def __init__(self, towers=2, alpha=1e-4):
        super().__init__()
        self.towers = towers
        self.lrn = nn.LocalResponseNorm(5, alpha=alpha, beta=0.75, k=2.0)

    def forward(self, x):
        if self.towers == 1:
            return self.lrn(x)
        return torch.cat([self.lrn(t) for t in x.chunk(self.towers, 1)], 1)


def _even(c):
    return max(2, 2 * round(c / 2))


def _side(n, f, p, s):
    """The paper's layer arithmetic: floor((n - f + 2p) / s) + 1."""
    return (n - f + 2 * p) // s + 1


class PaperAlexNet(nn.Module):
    """Krizhevsky, Sutskever, Hinton (2012), one network of the paper's Table 2, and its
    ablations. 227x227 input (the paper says 224; the arithmetic needs 227).

    towers=2: the two-GPU connectivity as groups=2 on conv2, conv4, conv5; towers=1: the
    one-GPU net of section 3.2 (48-128-192-192-256 kernels: half of every convolution but
    the last, and the same fully connected layers, as the paper's footnote says), LRN
    then over all maps (lrn_towers must be 1). LRN in the cuda-convnet/Caffe/PyTorch
    convention (alpha divided by n; the paper's literal formula is lrn_alpha=5e-4).
    """

    def __init__(self, num_classes=1000, lrn_alpha=1e-4, lrn_towers=2, width=1.0, crop=227,
                 activation="relu", lrn=True, pooling="overlapping", towers=2, dropout=0.5):
        super().__init__()
        if activation not in ACTIVATIONS or pooling not in POOLING or towers not in (1, 2):
            raise ValueError(f"activation {activation!r}, pooling {pooling!r}, towers {towers!r}: expected "
                             f"{sorted(ACTIVATIONS)}, {sorted(POOLING)}, 1 or 2")
        if towers == 1 and lrn_towers != 1:
            raise ValueError("lrn_towers 2 needs two towers: the one-GPU net normalizes over all its maps")
        base = (48, 128, 192, 192, 256) if towers == 1 else (96, 256, 384, 384, 256)
        c1, c2, c3, c4, c5 = (_even(c * width) for c in base)
        g = towers
        fc = max(1, round(4096 * width))
        k, s = POOLING[pooling]
        side = _side(crop, 11, 0, 4)                               # conv1
        for _ in range(3):
            side = _side(side, k, 0, s)                             # pool1, pool2, pool5
        act = ACTIVATIONS[activation]
        norm = (lambda: TowerLRN(lrn_towers, lrn_alpha)) if lrn else nn.Identity
        pool = lambda: nn.MaxPool2d(k, s)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4),                         # 0  [N, 96, 55, 55]
            act(), norm(), pool(),                                  # 1-3 [N, 96, 27, 27]
            nn.Conv2d(c1, c2, 5, padding=2, groups=g),              # 4  [N, 256, 27, 27]
            act(), norm(), pool(),                                  # 5-7 [N, 256, 13, 13]
            nn.Conv2d(c2, c3, 3, padding=1),                        # 8  [N, 384, 13, 13]
            act(),
            nn.Conv2d(c3, c4, 3, padding=1, groups=g),              # 10 [N, 384, 13, 13]
            act(),
            nn.Conv2d(c4, c5, 3, padding=1, groups=g),              # 12 [N, 256, 13, 13]
            act(), pool(),                                          # 13-14 [N, 256, 6, 6]
        )
        self.classifier = nn.Sequential(
            nn.Linear(c5 * side * side, fc), act(), nn.Dropout(dropout),  # 0-2 fc6
            nn.Linear(fc, fc), act(), nn.Dropout(dropout),                # 3-5 fc7
            nn.Linear(fc, num_classes),                                   # 6 fc8
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class OwtAlexNet(nn.Module):
    """torchvision's `alexnet` (64-192-384-256-256, adaptive 6x6 average pool), module
    for module, so its state dict and torchvision's are interchangeable."""

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),   # 0-2
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),            # 3-5
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),                               # 6-7
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),                               # 8-9
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),           # 10-12
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),   # 0-2 fc6
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),          # 3-5 fc7
            nn.Linear(4096, num_classes),                                               # 6 fc8
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def paper_init_(model):
    """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7; else 0."""
    ones = {"features.4", "features.10", "features.12", "classifier.0", "classifier.3"}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if name in ones else 0.0)
    return model


def from_metadata(meta):
    """The model a checkpoint's `__metadata__` (a dict of strings) describes. Keys
    written before the switches existed are absent: the paper's (or torchvision's)."""
    if meta.get("format") != "alexnet-checkpoint-v1":
        raise ValueError(f"format {meta.get('format')!r}, expected 'alexnet-checkpoint-v1'")
    nc = int(meta["num_classes"])
    dropout = float(meta.get("dropout", 0.5))
    if meta["model"] == "owt":
        return OwtAlexNet(nc, dropout)
    if meta["model"] != "paper":
        raise ValueError(f"unknown model {meta['model']!r}")
    lrn = {"true": True, "false": False}[meta.get("lrn", "true")]
    return PaperAlexNet(nc, float(meta["lrn_alpha"]), int(meta["lrn_towers"]), float(meta["width"]),
                        int(meta["crop"]), meta.get("activation", "relu"), lrn,
                        meta.get("pooling", "overlapping"), int(meta.get("towers", "2")), dropout)


def load_checkpoint(path, strict=True, device="cpu", crop=None):
    """(model in eval mode, metadata dict) of a model file: a checkpoint written by
    `train` (its metadata says which model), or a file without metadata (weights saved
    from PyTorch, e.g. torchvision's): owt when it has owt's tensor names, else the
    paper's network at its defaults (crop 227, or `crop`); the dict then says what was
    assumed."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata() or {})
    sd = load_file(path, device=device)
    if meta.get("format"):
        model = from_metadata(meta)
    else:
        nc = sd["classifier.6.weight"].shape[0]
        paper = "features.12.weight" in sd
        side = crop or (227 if paper else 224)
        model = PaperAlexNet(nc, crop=side) if paper else OwtAlexNet(nc)
        meta.update(model="paper" if paper else "owt", num_classes=str(nc), crop=str(side),
                    normalization="mean-image" if paper else "torchvision")
    model.load_state_dict(sd, strict=strict)
    meta["wnids"] = json.loads(meta["wnids"]) if "wnids" in meta else None
    return model.to(device).eval(), meta


def layer_table(model, crop):
    """[(module name, output shape without the batch, parameters)] of every module of
    `features`, `avgpool` (owt) and `classifier` on one crop x crop image (eval mode):
    what `train describe` computes, measured on the PyTorch side."""
    rows, hooks = [], []
    for prefix in ("features", "avgpool", "classifier"):
        seq = getattr(model, prefix, None)
        if seq is None:
            continue
        mods = list(seq.named_children()) if isinstance(seq, nn.Sequential) else [(None, seq)]
        for name, m in mods:
            full = prefix if name is None else f"{prefix}.{name}"
            params = sum(p.numel() for p in m.parameters())
            hooks.append(m.register_forward_hook(
                lambda _m, _i, out, full=full, params=params: rows.append((full, list(out.shape[1:]), params))))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, crop, crop))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return rows
