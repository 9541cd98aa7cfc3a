#!/usr/bin/env python3
"""The bridge's data side (python/alexnet_bridge: shards, data, transforms) against the
Rust loader and against pyarrow and torchvision, on built datasets of non-square
procedural images:

1. the shard reader: every row's image bytes, label and key equal pyarrow's reading of
   the same shard, both splits; raw images are views of the memory map (no copy);
2. the Dataset's centre and ten crops equal the Rust loader's (`crops dump`, the
   example trainer/examples/crops.rs): uint8 crops exactly on raw shards; on JPEG shards
   within the two decoders' bound (zune-jpeg in Rust, libjpeg-turbo in Pillow: IDCT and
   chroma upsampling rounding), max |difference| <= JPEG_MAX grey levels and mean <=
   JPEG_MEAN; the normalized float input (Preprocess) within 1e-5 of the Rust one on raw
   shards (each normalization), and within JPEG_MAX (+ its scale) on JPEG shards;
3. the bridge's crops equal torchvision's center_crop / ten_crop exactly (the
   independent definition the scoring reference relies on);
4. every format version the Rust reader reads: DATASET is format 2; DATASET_V1 is the
   same dataset rewritten as format 1 by the Rust writer (`crops format1`); both read,
   with the same pixels; WHOLE_RAW and WHOLE_JPEG are format 3 (whole images, per-row
   sizes): the reader's bytes equal pyarrow's, each row's size its height/width
   columns, raw pixels and decoded JPEGs of that size, the Dataset's centre and ten
   crops of them torchvision's (the Rust loader does not crop whole images yet); a newer
   version is refused by name; MIXED (optional) is format 4, mixed shards: the reader's
   bytes equal pyarrow's, and the Dataset's crops equal the Rust loader's exactly on the
   raw rows and within the JPEG bound on the JPEG rows.

usage: check_bridge_data.py CROPS_BIN DATASET_RAW DATASET_JPEG WHOLE_RAW WHOLE_JPEG WORK_DIR [MIXED]
Prints each check; exits 1 on any failure.
"""
import json, os, shutil, subprocess, sys

import numpy as np
import pyarrow.parquet as pq
import torch
import torchvision.transforms.v2.functional as TF
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from alexnet_bridge import Preprocess, ShardDataset  # noqa: E402
from alexnet_bridge.shards import ShardError, load_manifest, open_dataset  # noqa: E402
from alexnet_bridge.transforms import crops, to_float_chw  # noqa: E402

JPEG_MAX, JPEG_MEAN = 4, 0.05
crops_bin, raw, jpeg, whole_raw, whole_jpeg, work = sys.argv[1:7]
mixed = sys.argv[7] if len(sys.argv) > 7 else None
torch.set_num_threads(2)
fails = 0


def check(what, ok, detail=""):
    global fails
    fails += not ok
    print(f"check_bridge_data: {what}: {detail} {'ok' if ok else 'FAIL'}")


def reader_vs_pyarrow(root):
    m, rows, same, views = load_manifest(root), 0, True, True
    sizes = set()
    for split in ("train", "val"):
        _, shards = open_dataset(root, split)
        for sh in shards:
            t = pq.read_table(sh.path)
            imgs = t.column("image").to_pylist()
            same &= [sh.raw(i).tobytes() for i in range(len(sh))] == imgs
            same &= sh.labels.tolist() == t.column("label").to_pylist() and sh.keys == t.column("key").to_pylist()
            if "height" in t.column_names:
                same &= sh.sizes.tolist() == [list(p) for p in zip(t.column("height").to_pylist(),
                                                                    t.column("width").to_pylist())]
            same &= all(sh.image(i).shape == (*sh.sizes[i], 3) for i in range(len(sh)))
            sizes |= {tuple(s) for s in sh.sizes.tolist()}
            if m["encoding"] in ("raw", "mixed"):  # raw rows are views of the map
                views &= all(not sh.image(i).flags.owndata and not sh.image(i).flags.writeable
                             for i in range(len(sh)) if sh.is_raw[i])
            rows += len(sh)
    check(f"{os.path.basename(root)} (format {m['format_version']}, {m['encoding']}): reader vs pyarrow",
          same and views, f"{rows} rows, bytes/labels/keys equal" + (", raw images are views of the map" if m["encoding"]
                                                                       != "jpeg" else "") + f"; {len(sizes)} image sizes")
    return sizes


def rust_crops(root, split, side, mode, norm):
    out = os.path.join(work, f"{os.path.basename(root)}-{split}-{side}-{mode}-{norm}.safetensors")
    subprocess.run([crops_bin, "dump", root, split, str(side), mode, norm, out], check=True, stdout=subprocess.DEVNULL)
    return load_file(out)


def crops_vs_rust(root, split, side, mode, norm):
    enc = load_manifest(root)["encoding"]
    r = rust_crops(root, split, side, mode, norm)
    k = 10 if mode == "ten" else 1
    rows = r["rows"].view(-1, k)[:, 0].tolist()
    plain = ShardDataset(root, split)
    pre = ShardDataset(root, split, transform=Preprocess.from_dataset(root, side, norm, mode))
    mine = torch.stack([crops(torch.from_numpy(np.array(plain[i][0])).permute(2, 0, 1), side, mode) for i in rows])
    theirs = r["u8"].view(len(rows), k, side, side, 3).permute(0, 1, 4, 2, 3)
    d = (mine.int() - theirs.int()).abs().float()
    labels_ok = torch.equal(torch.tensor([plain[i][1] for i in rows]), r["labels"].view(-1, k)[:, 0])
    f = torch.stack([pre[i][0] for i in rows])
    df = (f - r["f32"].view(len(rows), k, 3, side, side)).abs().max().item()
    scale = 1 / (255 * 0.225) if norm == "torchvision" else 1.0
    if enc == "raw":
        ok = d.max().item() == 0 and df <= 1e-5
        bound = "uint8 equal, float within 1e-5"
    elif enc == "mixed":
        sh = plain._open()
        is_raw = torch.tensor([bool(sh[s].is_raw[r]) for s, r in map(plain.locate, rows)])
        ok = is_raw.any().item() and (~is_raw).any().item() and d[is_raw].max().item() == 0 \
            and d[~is_raw].max().item() <= JPEG_MAX and df <= JPEG_MAX * scale + 1e-5
        bound = f"{int(is_raw.sum())} raw rows uint8 equal, the others within {JPEG_MAX}"
    else:
        ok = d.max().item() <= JPEG_MAX and d.mean().item() <= JPEG_MEAN and df <= JPEG_MAX * scale + 1e-5
        bound = f"uint8 within {JPEG_MAX} (mean {JPEG_MEAN})"
    check(f"{os.path.basename(root)} {split} {mode} {side} {norm}: Dataset vs Rust loader", ok and labels_ok,
          f"{len(rows)} images x {k}, uint8 max |diff| {d.max().item():.0f} mean {d.mean().item():.4f}, float max "
          f"|diff| {df:.2e} ({bound}); same rows and labels: {labels_ok}")
    return mine


def crops_vs_torchvision(root, sides, rows=(0,)):
    ds = ShardDataset(root, "val")
    ok, shapes = True, set()
    for r in rows:
        x = to_float_chw(ds[r][0])
        shapes.add(tuple(x.shape[1:]))
        for side in sides:
            ok &= torch.equal(crops(x, side, "center")[0], TF.center_crop(x, [side, side]))
            ok &= torch.equal(crops(x, side, "ten"), torch.stack(TF.ten_crop(x, [side, side])))
    check(f"{os.path.basename(root)}: centre and ten crops vs torchvision {sides}", ok,
          f"equal on {len(rows)} images of sizes {sorted(shapes)}")


def format1(root):
    dst = os.path.join(work, os.path.basename(root) + "-v1")
    subprocess.run([crops_bin, "format1", root, dst], check=True, stdout=subprocess.DEVNULL)
    m = load_manifest(dst)
    _, shards = open_dataset(dst, "val")
    check(f"{os.path.basename(root)} as format 1", m["format_version"] == 1 and shards[0].version == 1
          and shards[0].crc32c is None, "columns image, label, key")
    return dst


def newer_refused(root):
    dst = os.path.join(work, "newer")
    shutil.copytree(root, dst)
    p = os.path.join(dst, "dataset.json")
    m = json.load(open(p))
    m["format_version"] = 99
    json.dump(m, open(p, "w"))
    try:
        ShardDataset(dst, "val")
        check("a newer format version", False, "was read")
    except ShardError as e:
        check("a newer format version", "format_version 99 is not supported" in str(e) and "newer" in str(e), str(e))


os.makedirs(work, exist_ok=True)
for root in (raw, jpeg):
    reader_vs_pyarrow(root)
a = crops_vs_rust(raw, "val", 227, "center", "mean-image")
crops_vs_rust(raw, "val", 99, "ten", "mean-rgb")
crops_vs_rust(raw, "train", 224, "center", "torchvision")
crops_vs_rust(jpeg, "val", 227, "center", "mean-image")
crops_vs_rust(jpeg, "val", 99, "ten", "torchvision")
crops_vs_torchvision(raw, (227, 224, 99, 67))
for root in (whole_raw, whole_jpeg):
    sizes = reader_vs_pyarrow(root)
    check(f"{os.path.basename(root)} holds non-square images of several sizes",
          len(sizes) > 1 and any(h != w for h, w in sizes), f"{sorted(sizes)[:4]}...")
    crops_vs_torchvision(root, (64, 57), rows=range(0, len(ShardDataset(root, "val")), 5))
raw1 = format1(raw)
reader_vs_pyarrow(raw1)
b = crops_vs_rust(raw1, "val", 227, "center", "mean-image")
check("format 1 and format 2 give the same crops", torch.equal(a, b), "")
jpeg1 = format1(jpeg)
reader_vs_pyarrow(jpeg1)
crops_vs_rust(jpeg1, "val", 99, "ten", "mean-image")
newer_refused(raw)
if mixed:
    reader_vs_pyarrow(mixed)
    crops_vs_rust(mixed, "train", 227, "center", "mean-image")
    crops_vs_rust(mixed, "val", 99, "ten", "mean-rgb")
# A DataLoader over the Dataset (worker processes map their own shards).
dl = torch.utils.data.DataLoader(ShardDataset(raw, "val", transform=Preprocess.from_dataset(raw, 99, "mean-image")),
                                 batch_size=8, num_workers=2)
xs, ys = zip(*dl)
n = sum(len(y) for y in ys)
check("DataLoader with 2 workers", n == len(ShardDataset(raw, "val")) and xs[0].shape == (8, 1, 3, 99, 99),
      f"{n} images, batch {tuple(xs[0].shape)}")
sys.exit(1 if fails else 0)
