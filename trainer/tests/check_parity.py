#!/usr/bin/env python3
"""PyTorch side of the parity check (see trainer/examples/parity.rs).

1. Loads each model the trainer wrote into the reference module of
   ../shared/anchors/reference_models.py with load_state_dict(strict=True) and checks its
   logits on the same input (max |diff| <= 1e-4 * max |logit|).
2. Makes weights in PyTorch (seeded), saves them with safetensors (no metadata) with
   their logits, for `parity check` to load on the Rust side.

usage: check_parity.py DIR ANCHORS_DIR
"""
import json, os, sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

d, anchors = sys.argv[1], sys.argv[2]
sys.path.insert(0, anchors)
import reference_models as rm  # noqa: E402

torch.set_num_threads(2)
fails = 0
for name in ["paper_small", "paper_small_lrn1_alpha5e-4", "paper_full", "owt"]:
    path = os.path.join(d, name + ".safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "alexnet-checkpoint-v1", meta
    assert len(json.loads(meta["wnids"])) == int(meta["num_classes"])
    nc = int(meta["num_classes"])

    def make():
        if meta["model"] == "paper":
            return rm.PaperAlexNet(nc, float(meta["lrn_alpha"]), int(meta["lrn_towers"]),
                                   float(meta["width"]), int(meta["crop"]))
        return rm.owt_alexnet(nc)

    m = make().eval()
    m.load_state_dict(load_file(path), strict=True)
    io = load_file(os.path.join(d, name + ".io.safetensors"))
    with torch.no_grad():
        got = m(io["input"])
    scale = max(1e-6, io["logits"].abs().max().item())
    diff = (got - io["logits"]).abs().max().item()
    ok = diff <= 1e-4 * scale
    fails += not ok
    print(f"{name}: trainer weights in PyTorch (strict=True): max |logit difference| {diff:.3e} "
          f"(scale {scale:.2f}) {'ok' if ok else 'FAIL'}")

    # PyTorch -> Rust
    torch.manual_seed(1)
    t = make().eval()
    if meta["model"] == "paper":
        rm.paper_init_(t)
    save_file({k: v.contiguous() for k, v in t.state_dict().items()}, os.path.join(d, name + ".torch.safetensors"))
    with torch.no_grad():
        x = io["input"]
        save_file({"input": x, "logits": t(x)}, os.path.join(d, name + ".torch_io.safetensors"))
sys.exit(1 if fails else 0)
