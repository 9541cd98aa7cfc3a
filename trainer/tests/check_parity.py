#!/usr/bin/env python3
"""PyTorch side of the parity check (see trainer/examples/parity.rs), for every switch
combination, against the project's own definitions (python/alexnet_bridge).

For each case `parity dump` wrote:
1. builds the model its metadata describes (alexnet_bridge.from_metadata), loads the
   trainer's weights with load_state_dict(strict=True) and checks the logits on the same
   input (max |diff| <= 1e-4 * max |logit|), the dropout rate, and every module's output
   shape and parameter count against the trainer's layer table (what `train describe`
   prints);
2. makes weights in PyTorch (seeded), saves them with safetensors (no metadata) with
   their logits, for `parity check` to load on the Rust side;
3. extra, independent checks where they are available: the cases the reference
   modules of ANCHORS_DIR/reference_models.py express (the paper's net, owt) load there
   with strict=True and give the same logits; owt matches torchvision's alexnet.

usage: check_parity.py DIR [ANCHORS_DIR]   (without ANCHORS_DIR, or where it has no
       reference_models.py, step 3's reference check is skipped, saying so)
"""
import json, os, sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "python"))
import alexnet_bridge as ab  # noqa: E402

d = sys.argv[1]
anchors = sys.argv[2] if len(sys.argv) > 2 else None
rm = None
if anchors and os.path.isfile(os.path.join(anchors, "reference_models.py")):
    sys.path.insert(0, anchors)
    import reference_models as rm  # noqa: E402
else:
    print(f"check_parity: no reference_models.py in {anchors!r}: the reference-module check is skipped "
          "(the project's own definitions are checked)")
try:
    import torchvision
except ImportError:
    torchvision = None

torch.set_num_threads(2)
fails = 0


def check(what, ok, detail):
    global fails
    fails += not ok
    print(f"{what}: {detail} {'ok' if ok else 'FAIL'}")


def logit_diff(m, io):
    with torch.no_grad():
        got = m(io["input"])
    scale = max(1e-6, io["logits"].abs().max().item())
    diff = (got - io["logits"]).abs().max().item()
    return diff <= 1e-4 * scale, f"max |logit difference| {diff:.3e} (scale {scale:.2f})"


def reference(meta):
    """The anchors' module for this case, or None where they do not express it."""
    nc = int(meta["num_classes"])
    if meta["model"] == "owt":
        return rm.owt_alexnet(nc) if torchvision else None
    if (meta["activation"], meta["lrn"], meta["pooling"], meta["towers"]) != ("relu", "true", "overlapping", "2"):
        return None
    return rm.PaperAlexNet(nc, float(meta["lrn_alpha"]), int(meta["lrn_towers"]), float(meta["width"]),
                           int(meta["crop"]))


cases = json.load(open(os.path.join(d, "cases.json")))
for name in cases:
    path = os.path.join(d, name + ".safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert len(json.loads(meta["wnids"])) == int(meta["num_classes"])
    io = load_file(os.path.join(d, name + ".io.safetensors"))

    # 1. Rust -> PyTorch (the project's definitions)
    m, _ = ab.load_checkpoint(path, strict=True)
    check(f"{name}: trainer weights in alexnet_bridge (strict=True)", *logit_diff(m, io))
    drops = [x.p for x in m.modules() if isinstance(x, torch.nn.Dropout)]
    check(f"{name}: dropout", drops == [float(meta["dropout"])] * 2, f"{drops} (metadata {meta['dropout']})")
    table = json.load(open(os.path.join(d, name + ".layers.json")))
    mine = [list(r) for r in ab.layer_table(m, int(meta["crop"]))]
    same = mine == table["layers"] and sum(p.numel() for p in m.parameters()) == table["parameters"]
    first = next((f"{a} here, {b} in describe" for a, b in zip(mine, table["layers"]) if a != b), "")
    check(f"{name}: layer shapes and parameters", same,
          f"{len(mine)} modules, {table['parameters']} parameters {first}".rstrip())

    # 3. the reference modules, where they exist
    if rm is not None:
        r = reference(meta)
        if r is not None:
            r.eval().load_state_dict(load_file(path), strict=True)
            check(f"{name}: trainer weights in reference_models (strict=True)", *logit_diff(r, io))
    if meta["model"] == "owt" and torchvision is not None:
        tv = torchvision.models.alexnet(num_classes=int(meta["num_classes"])).eval()
        tv.load_state_dict(load_file(path), strict=True)
        check(f"{name}: trainer weights in torchvision's alexnet (strict=True)", *logit_diff(tv, io))

    # 2. PyTorch -> Rust
    torch.manual_seed(1)
    t = ab.from_metadata(meta).eval()
    if meta["model"] == "paper":
        ab.paper_init_(t)
    save_file({k: v.contiguous() for k, v in t.state_dict().items()}, os.path.join(d, name + ".torch.safetensors"))
    with torch.no_grad():
        x = io["input"]
        save_file({"input": x, "logits": t(x)}, os.path.join(d, name + ".torch_io.safetensors"))
print(f"check_parity: {len(cases)} models, {'all agree' if not fails else f'{fails} FAILED'}")
sys.exit(1 if fails else 0)
