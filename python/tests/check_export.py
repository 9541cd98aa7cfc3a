#!/usr/bin/env python3
"""The bridge's export and conversion (python/alexnet_bridge/export.py), through its
command line (`python -m alexnet_bridge export|convert`):

1. `export CKPT --torch-export F.pt2 --onnx F.onnx` of a checkpoint trained by `train`
   (the paper's network: two towers, LRN), and with CHECK_EXPORT_OWT=1 of an owt network
   made in PyTorch (no metadata; measured: torch.export equal, ONNX within 3.8e-7): the torch.export program gives the module's logits (max |diff| <= 1e-6 *
   max(1, max |logit|)) and onnxruntime's outputs are within 1e-5 * max(1, max |logit|)
   of the module's, on a batch of 3 (the programs were traced with 2: the batch is
   dynamic). The ONNX half is skipped, saying so, when onnx/onnxruntime/onnxscript are
   not installed (scripts/test.sh installs them).
2. `convert` of torchvision's alexnet saved with torch.save (a .pth, as torchvision
   ships its weights): the safetensors file holds the same tensors, and `train run
   --init` starts from it on a dataset of another class count (the last layer
   re-initialized, said in the log; every other weight the file's).

usage: check_export.py TRAIN_BIN CHECKPOINT DATASET WORK_DIR
"""
import importlib.util, os, subprocess, sys, warnings

import torch
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
python_dir = os.path.join(here, "..")
sys.path.insert(0, python_dir)
from alexnet_bridge import OwtAlexNet, load_checkpoint  # noqa: E402

train_bin, ckpt, data, work = sys.argv[1:5]
torch.set_num_threads(2)
fails = 0
has_onnx = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))
env = dict(os.environ, PYTHONPATH=python_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))


def check(what, ok, detail):
    global fails
    fails += not ok
    print(f"check_export: {what}: {detail} {'ok' if ok else 'FAIL'}")


def bridge(*args):
    return subprocess.run([sys.executable, "-m", "alexnet_bridge", *args], check=True, env=env,
                          capture_output=True, text=True).stdout


def exported(path, tag):
    model, meta = load_checkpoint(path)
    side = int(meta["crop"])
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(1)) * 40
    with torch.no_grad():
        want = model(x)
    scale = max(1.0, want.abs().max().item())
    pt2, onnx_path = os.path.join(work, tag + ".pt2"), os.path.join(work, tag + ".onnx")
    args = ["export", path, "--torch-export", pt2] + (["--onnx", onnx_path] if has_onnx else [])
    bridge(*args)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # torch.export.load's non-writable buffer note
        got = torch.export.load(pt2).module()(x)
    d = (got - want).abs().max().item()
    check(f"{tag}: torch.export program", d <= 1e-6 * scale, f"max |logit diff| {d:.2e} (scale {scale:.2f})")
    if has_onnx:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        out = torch.from_numpy(sess.run(["logits"], {"image": x.numpy()})[0])
        d = (out - want).abs().max().item()
        check(f"{tag}: ONNX (onnxruntime), batch 3", out.shape == want.shape and d <= 1e-5 * scale,
              f"max |logit diff| {d:.2e} (scale {scale:.2f})")


os.makedirs(work, exist_ok=True)
if not has_onnx:
    print("check_export: onnx/onnxruntime/onnxscript not installed: the ONNX export check is SKIPPED", file=sys.stderr)
exported(ckpt, "trained-paper")
if os.environ.get("CHECK_EXPORT_OWT"):         # owt is torchvision's module: 40 s more on 2 cores
    torch.manual_seed(0)
    owt_path = os.path.join(work, "owt.safetensors")
    save_file({k: v.contiguous() for k, v in OwtAlexNet(5).state_dict().items()}, owt_path)
    exported(owt_path, "owt-no-metadata")

# torchvision's weights as torchvision ships them (torch.save of the state dict).
try:
    import torchvision
except ImportError:
    torchvision = None
if torchvision is None:
    print("check_export: torchvision missing: the convert check is SKIPPED", file=sys.stderr)
else:
    torch.manual_seed(1)
    tv = torchvision.models.alexnet(weights=None)
    pth, st = os.path.join(work, "alexnet-tv.pth"), os.path.join(work, "alexnet-tv.safetensors")
    torch.save(tv.state_dict(), pth)
    bridge("convert", pth, st)
    conv = load_file(st)
    same = conv.keys() == tv.state_dict().keys() and all(torch.equal(conv[k], v) for k, v in tv.state_dict().items())
    check("convert torchvision .pth -> safetensors", same, f"{len(conv)} tensors equal")
    run = os.path.join(work, "init-run")
    p = subprocess.run([train_bin, "run", "--config", os.path.join(here, "..", "..", "configs", "smoke-tiny.toml"),
                        "--set", "model.arch=owt", "--set", "model.crop=224", "--set", "model.width=1",
                        "--set", "optim.lr=1e-9", "--data", data, "--run-dir", run, "--threads", "2",
                        "--max-steps", "1", "--init", st], capture_output=True, text=True)
    log = p.stdout + p.stderr
    classes = len(load_file(os.path.join(run, "checkpoints", "step-000000001.safetensors"))["classifier.6.bias"]) \
        if p.returncode == 3 else -1
    line = next((l for l in log.splitlines() if l.startswith("train: --init ")), "")
    got = load_file(os.path.join(run, "checkpoints", "step-000000001.safetensors")) if p.returncode == 3 else {}
    d = max(((got[k] - v).abs().max().item() for k, v in tv.state_dict().items() if not k.startswith("classifier.6.")),
            default=1.0)
    check("train run --init of converted torchvision weights", p.returncode == 3 and "re-initialized: the file has "
          "1000 classes" in line and d <= 1e-6, f"exit {p.returncode}, {classes} classes, other weights within {d:.1e}; "
          f"{line or log[-400:]}")
sys.exit(1 if fails else 0)
