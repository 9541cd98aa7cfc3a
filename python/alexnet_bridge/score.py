"""The PyTorch reference for `eval score`: a checkpoint scored on a built split with
centre or ten crops (softmax probabilities averaged over the crops), top-1 / top-5 and
every image's top-5. Written on the PyTorch side only (the bridge's shard reader,
`Preprocess` and modules; no Rust code), so that `eval/tests/check_agreement.py` can
compare `eval score` with it on a bare clone.

The model and its input follow the checkpoint's metadata (DESIGN.md "Checkpoints");
a file without metadata (weights exported from PyTorch, e.g. torchvision's) is taken as
owt with torchvision normalization, or as the paper's network at its defaults when it
has the paper's tensor names. Flags override. Top-5 is ordered by probability, ties to
the lower class index (a stable sort).

    PYTHONPATH=python python -m alexnet_bridge score CKPT DATASET --crops ten \\
        [--split val] [--crop N] [--normalize mean-image|mean-rgb|torchvision] \\
        [--batch 64] [--threads N] [--limit N] [--predictions FILE] [--device cpu]

prints `N images, crops=ten side=227 normalize=mean-image: top-1 0.xxxx top-5 0.xxxx;
... images/s` and writes `key,label,top5` rows (top5: class indices, space separated).
"""
import time

import torch

from .data import ShardDataset
from .models import load_checkpoint
from .transforms import Preprocess


def model_of(path, crop=0):
    """(module in eval mode, metadata dict) of a safetensors model file (`load_checkpoint`;
    `crop` overrides the crop side of a file without metadata)."""
    model, meta = load_checkpoint(path, crop=crop or None)
    if crop:
        meta["crop"] = str(crop)
    return model, meta


def score(ckpt, data, crops="ten", split="val", crop=0, normalize=None, batch=64, limit=0, device="cpu"):
    """{'top1', 'top5', 'images', 'keys', 'labels', 'top5_classes' [N, <=5]} of `ckpt`
    on `split` of the dataset `data`."""
    model, meta = model_of(ckpt, crop)
    model = model.to(device)
    side = int(meta["crop"])
    norm = normalize or meta.get("normalization") or ("mean-image" if meta["model"] == "paper" else "torchvision")
    ds = ShardDataset(data, split, transform=Preprocess.from_dataset(data, side, norm, crops))
    n = min(len(ds), limit) if limit else len(ds)
    labels, tops = [], []
    with torch.no_grad():
        for start in range(0, n, batch):
            items = [ds[i] for i in range(start, min(n, start + batch))]
            x = torch.stack([x for x, _ in items])                    # [B, K, 3, s, s]
            b, k = x.shape[:2]
            p = model(x.reshape(b * k, 3, side, side).to(device)).softmax(1).reshape(b, k, -1).mean(1).cpu()
            tops.append(torch.sort(p, dim=1, descending=True, stable=True).indices[:, :min(5, p.shape[1])])
            labels += [y for _, y in items]
    top5 = torch.cat(tops)
    lab = torch.tensor(labels)
    return {
        "top1": (top5[:, 0] == lab).float().mean().item(),
        "top5": (top5 == lab[:, None]).any(1).float().mean().item(),
        "images": n, "side": side, "normalize": norm,
        "keys": ds.keys[:n], "labels": labels, "top5_classes": top5.tolist(),
    }


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m alexnet_bridge score", description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("data")
    ap.add_argument("--crops", default="ten", choices=["ten", "center"])
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--crop", type=int, default=0, help="crop side (default: the checkpoint's)")
    ap.add_argument("--normalize", choices=["mean-image", "mean-rgb", "torchvision"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--predictions", help="write key,label,top5 per image")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    r = score(a.ckpt, a.data, a.crops, a.split, a.crop, a.normalize, a.batch, a.limit, a.device)
    dt = time.perf_counter() - t0
    if a.predictions:
        with open(a.predictions, "w") as f:
            f.write("key,label,top5\n")
            for k, lab, t5 in zip(r["keys"], r["labels"], r["top5_classes"]):
                f.write(f"{k},{lab},{' '.join(map(str, t5))}\n")
    print(f"{r['images']} images, crops={a.crops} side={r['side']} normalize={r['normalize']}: top-1 {r['top1']:.4f} "
          f"top-5 {r['top5']:.4f}; {r['images'] / dt:.1f} images/s, threads={torch.get_num_threads()}")
