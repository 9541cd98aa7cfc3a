"""Export a checkpoint for inference outside this project, and convert PyTorch weights
for `train run --init`:

- `to_onnx(ckpt, path)`: an ONNX model (torch.onnx's dynamo exporter; needs the `onnx`
  and `onnxscript` packages), input `image` float [N, 3, crop, crop] normalized as the
  checkpoint says (see `Preprocess`), output `logits` [N, classes], N dynamic;
- `to_torch_export(ckpt, path)`: a `torch.export` program (`torch.export.save`; load it
  with `torch.export.load(path).module()`), the same input and output;
- `convert(pth, out)`: a PyTorch pickle of an AlexNet state dict (torchvision's
  `alexnet-owt-7be5be79.pth`, or a `{"state_dict": ...}` / `{"model": ...}` training
  checkpoint, DistributedDataParallel's `module.` prefix removed) -> safetensors with the
  trainer's tensor names, for `train run --init` and `eval`.

    PYTHONPATH=python python -m alexnet_bridge export CKPT --onnx model.onnx --torch-export model.pt2
    PYTHONPATH=python python -m alexnet_bridge convert alexnet-owt-7be5be79.pth alexnet.safetensors

TorchScript is not offered (deprecated upstream). Checked by python/tests/check_export.py:
onnxruntime's outputs within 1e-5 of the module's, the program's logits equal.
"""
import os

import torch

from .models import OwtAlexNet, PaperAlexNet, load_checkpoint


def _example(meta, batch=2):
    crop = int(meta["crop"])
    return torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0)) * 50


def to_torch_export(ckpt, path):
    """Writes the `torch.export` program of `ckpt` to `path`; returns the ExportedProgram."""
    model, meta = load_checkpoint(ckpt)
    batch = torch.export.Dim("batch", min=1, max=65536)
    ep = torch.export.export(model, (_example(meta),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, path)
    return ep


def to_onnx(ckpt, path, opset=18):
    """Writes `ckpt` as an ONNX model (input `image`, output `logits`, dynamic batch)."""
    model, meta = load_checkpoint(ckpt)
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(model, (_example(meta),), path, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, external_data=False)
    return path


def _tensor_names(model):
    return set(model.state_dict())


def convert(src, dst):
    """A PyTorch pickle of AlexNet weights -> safetensors (see the module doc); returns
    (model kind, class count)."""
    from safetensors.torch import save_file
    obj = torch.load(src, map_location="cpu", weights_only=True)
    for k in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{src}: not a state dict of tensors (a whole pickled module? save its state_dict())")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    if "classifier.6.weight" not in sd:
        raise ValueError(f"{src}: no classifier.6.weight: not an AlexNet state dict (tensors {sorted(sd)[:6]}...)")
    n_cls = sd["classifier.6.weight"].shape[0]
    owt, paper = OwtAlexNet(n_cls), PaperAlexNet(n_cls)
    if set(sd) == _tensor_names(owt):
        owt.load_state_dict(sd, strict=True)        # the shapes too
        kind = "owt"
    elif set(sd) == _tensor_names(paper):
        kind = "paper"                               # width and crop unknown here: train/eval check the shapes
    else:
        raise ValueError(f"{src}: its tensors are neither torchvision's alexnet nor the paper's network: "
                         f"{sorted(set(sd) ^ _tensor_names(owt))[:8]} differ from owt's")
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}, dst,
              metadata={"converted_from": os.path.basename(src), "model_kind": kind})
    return kind, n_cls
