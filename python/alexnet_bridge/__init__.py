"""The project's PyTorch side (plain package, no install step: `PYTHONPATH=python`):

- `models`: the two AlexNets with the trainer's exact parameter names, so a checkpoint
  written by `train` loads with `load_state_dict(strict=True)` and weights made here
  load into `train` and `eval`; `load_checkpoint` reads a checkpoint's metadata and
  returns the right module with its weights;
- `transforms`: the evaluation preprocessing (mean image, centre and ten crops) of the
  Rust loader, `Preprocess`;
- `shards` and `data`: built shards read as the Rust reader does (memory-mapped, raw
  images zero-copy), `ShardDataset` for a PyTorch `DataLoader`;
- `score`: the PyTorch reference for `eval score`;
- `export`: ONNX and `torch.export`, and `convert` (a .pth -> safetensors for `--init`).

    from alexnet_bridge import load_checkpoint, Preprocess, ShardDataset
    model, meta = load_checkpoint("runs/demo/checkpoints/best.safetensors")
    val = ShardDataset("data/demo", "val", transform=Preprocess.from_metadata(meta, crops="ten"))

Command line: `python -m alexnet_bridge convert|export|score ...`.
"""
from .data import ShardDataset
from .models import (OwtAlexNet, PaperAlexNet, TowerLRN, from_metadata, layer_table, load_checkpoint,
                     paper_init_)
from .transforms import Preprocess, center_crop, mean_image, normalize, ten_crops

__all__ = ["OwtAlexNet", "PaperAlexNet", "Preprocess", "ShardDataset", "TowerLRN", "center_crop", "from_metadata",
           "layer_table", "load_checkpoint", "mean_image", "normalize", "paper_init_", "ten_crops"]
