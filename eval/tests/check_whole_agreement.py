#!/usr/bin/env python3
"""Agreement of `eval score` on a whole-image dataset with torchvision's own eval
pipeline on the source files: Image.open, exif_transpose, convert("RGB"), Resize(S),
CenterCrop(crop), ToTensor, then the checkpoint's normalization (torchvision's
Normalize, or the dataset's mean RGB on the 0..255 scale), then the
checkpoint's network through the project's PyTorch definitions (python/alexnet_bridge).
`eval score` defaults to the centre crop for a checkpoint trained with
RandomResizedCrop (its metadata), and is run without --crops to check that. Passes when
the top-1 class of each image (joined by key) is the same on at least 99% of the images
and top-1 / top-5 are within 0.5 points (the only difference is the resampling of the
two Resize implementations, as in the dataset check).

usage: check_whole_agreement.py EVAL_BIN WHOLE_DATASET CHECKPOINT SOURCE_DIR WORK_DIR
"""
import csv, json, os, subprocess, sys

import torch
import torchvision.transforms as T
from PIL import Image, ImageOps

eval_bin, data, ckpt, src, work = sys.argv[1:6]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from alexnet_bridge import load_checkpoint  # noqa: E402

torch.set_num_threads(2)
m = json.load(open(os.path.join(data, "dataset.json")))
assert m["layout"] == {"kind": "whole", "resize": "shorter-side"}, m.get("layout")
size = m["image_size"]

preds, js = os.path.join(work, "whole.rust.csv"), os.path.join(work, "whole.rust.json")
subprocess.run([eval_bin, "score", "--checkpoint", ckpt, "--data", data, "--threads", "2", "--batch-size", "16",
                "--predictions", preds, "--json", js, "--quiet"], check=True, stdout=subprocess.DEVNULL)
report = json.load(open(js))
ok = report["crops"] == 1
if not ok:
    print(f"FAIL: eval score chose {report['crops']} crops per image, expected the centre crop for a "
          "RandomResizedCrop checkpoint")
with open(preds) as f:
    rust = {r["key"]: (int(r["label"]), [int(r[f"class_{i}"]) for i in range(1, 6) if f"class_{i}" in r])
            for r in csv.DictReader(f)}

model, meta = load_checkpoint(ckpt)
assert meta.get("train_crop") == "random-resized-crop", meta
crop = int(meta["crop"])
if meta["normalization"] == "torchvision":
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
else:
    assert meta["normalization"] == "mean-rgb", meta["normalization"]
    mean_rgb = torch.tensor(m["stats"]["mean_rgb"]).view(3, 1, 1)
    norm = lambda t: t * 255 - mean_rgb  # noqa: E731
tf = T.Compose([T.Resize(size), T.CenterCrop(crop), T.ToTensor(), norm])
keys = sorted(rust)
top1 = top5 = same1 = 0
with torch.no_grad():
    for i in range(0, len(keys), 16):
        chunk = keys[i:i + 16]
        x = torch.stack([tf(ImageOps.exif_transpose(Image.open(os.path.join(src, "val", k))).convert("RGB"))
                         for k in chunk])
        order = model(x).softmax(1).topk(min(5, len(m["classes"])), 1).indices
        for k, row in zip(chunk, order.tolist()):
            label, ours = rust[k]
            top1 += row[0] == label
            top5 += label in row
            same1 += row[0] == ours[0]
n = len(keys)
t1, t5, s1 = top1 / n, top5 / n, same1 / n
d1, d5 = 100 * abs(t1 - report["top1"]), 100 * abs(t5 - report["top5"])
ok = ok and n == report["images"] and s1 >= 0.99 and d1 <= 0.5 and d5 <= 0.5
print(f"whole-image centre crop ({n} images, Resize({size}) + CenterCrop({crop})): eval top-1 "
      f"{100 * report['top1']:.2f}% top-5 {100 * report['top5']:.2f}%, torchvision on the source files top-1 "
      f"{100 * t1:.2f}% top-5 {100 * t5:.2f}% (|diff| {d1:.2f} / {d5:.2f} points); same top-1 class "
      f"{100 * s1:.1f}% {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
