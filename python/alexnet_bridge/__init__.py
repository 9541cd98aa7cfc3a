"""The project's PyTorch side: the two AlexNets with the trainer's exact parameter
names (`models`), so a checkpoint written by `train` loads with
`load_state_dict(strict=True)` and weights made here load into `train` and `eval`.

Plain package, no install step: `PYTHONPATH=python python -c "import alexnet_bridge"`.

    from alexnet_bridge import load_checkpoint
    model, meta = load_checkpoint("runs/demo/checkpoints/best.safetensors")
"""
from .models import (OwtAlexNet, PaperAlexNet, TowerLRN, from_metadata, layer_table, load_checkpoint,
                     paper_init_)

__all__ = ["OwtAlexNet", "PaperAlexNet", "TowerLRN", "from_metadata", "layer_table", "load_checkpoint",
           "paper_init_"]
