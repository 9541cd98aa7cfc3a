#!/usr/bin/env python3
"""Cross-checks a dataset built by `preprocess build` against the Python tools users
have: pyarrow reads every shard with the format's schema and physical layout; every
image equals the torchvision recipe on the source file (Pillow decode, exif_transpose,
convert("RGB"), Resize(256) + CenterCrop(256); for a whole-image dataset, format 3,
Resize(S) alone, at each row's own height and width) up to decoder rounding (a mixed
dataset, format 4: raw rows within the raw bound, JPEG rows within the JPEG one, and
round(raw_fraction * rows) raw rows in each shard); the
manifest's statistics, PCA and mean image (centre squares only) equal a direct numpy
computation over the train pixels.

usage: check_dataset.py DATASET_DIR SOURCE_DIR
"""
import io, json, os, sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageOps
import torchvision.transforms as T

SIDE = 256
ds, src = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(ds, "dataset.json")))
raw = m["encoding"] == "raw"
mixed = m["encoding"] == "mixed"
whole = m.get("layout", {"kind": "center-square"})["kind"] == "whole"
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


if mixed:
    assert m["format_version"] == 4 and 0 < m["build"]["raw_fraction"] < 1, m
if whole:
    assert m["format_version"] == (4 if mixed else 3) and "mean_image" not in m, m
    assert m["layout"]["resize"] == "shorter-side", "this check covers Resize(S) builds"
    ref_tf = T.Resize(m["image_size"])
else:
    ref_tf = T.Compose([T.Resize(SIDE), T.CenterCrop(SIDE)])


def reference(path):
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    return np.asarray(ref_tf(im.convert("RGB")))


fields = [
    pa.field("image", pa.binary(SIDE * SIDE * 3) if raw and not whole else pa.binary(), nullable=False),
    pa.field("label", pa.int16(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
]
if m["format_version"] >= 2:
    fields.append(pa.field("crc32c", pa.uint32(), nullable=False))
if whole:
    fields += [pa.field("height", pa.uint16(), nullable=False), pa.field("width", pa.uint16(), nullable=False)]
if mixed:
    fields.append(pa.field("raw", pa.bool_(), nullable=False))
want_schema = pa.schema(fields)

# CRC-32C (Castagnoli, reflected 0x82F63B78), table-driven: the per-row check of
# format 2 is over the image bytes, the label as int16 little-endian, the key's UTF-8.
_T = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value
train_pixels = []
diffs = {}
for split, entry in m["splits"].items():
    split_dir = os.path.join(src, split)
    rows = 0
    for sh in entry["shards"]:
        f = pq.ParquetFile(os.path.join(ds, sh["file"]))
        t = f.read()
        if not t.schema.remove_metadata().equals(want_schema):
            fail(f"{sh['file']}: schema {t.schema} != {want_schema}")
        if t.num_rows != sh["rows"]:
            fail(f"{sh['file']}: {t.num_rows} rows, manifest {sh['rows']}")
        rows += t.num_rows
        if m["format_version"] >= 2:
            # Pure Python is slow over raw pixels: check the first row of every shard.
            r0 = t.slice(0, 1).to_pylist()[0]
            data = r0["image"] + int(r0["label"]).to_bytes(2, "little", signed=True) + r0["key"].encode()
            if whole:  # format 3: then the height and width, uint16 little-endian
                data += int(r0["height"]).to_bytes(2, "little") + int(r0["width"]).to_bytes(2, "little")
            if mixed:  # format 4: then the raw flag, one byte
                data += bytes([int(r0["raw"])])
            if crc32c(data) != r0["crc32c"]:
                fail(f"{sh['file']} row 0: crc32c {r0['crc32c']:08x} != {crc32c(data):08x}")
        for i in range(f.metadata.num_row_groups):
            c = f.metadata.row_group(i).column(0)
            if c.compression != "UNCOMPRESSED":
                fail(f"{sh['file']} rg {i}: compression {c.compression}")
            if set(c.encodings) - {"PLAIN", "RLE", "BIT_PACKED"}:
                fail(f"{sh['file']} rg {i}: encodings {c.encodings}")
            if c.has_dictionary_page or c.is_stats_set:
                fail(f"{sh['file']} rg {i}: dictionary {c.has_dictionary_page} statistics {c.is_stats_set}")
            if not c.has_offset_index:
                fail(f"{sh['file']} rg {i}: no offset index")
        labels = t.column("label").to_pylist()
        if split == "train" and len(set(labels)) < 2 and t.num_rows >= 32:
            fail(f"{sh['file']}: train shard is not class-mixed: {set(labels)}")
        sizes = zip(t.column("height").to_pylist(), t.column("width").to_pylist()) if whole else \
            [(SIDE, SIDE)] * t.num_rows
        flags = t.column("raw").to_pylist() if mixed else [raw] * t.num_rows
        if mixed:
            n_raw = sum(flags)
            if abs(n_raw - m["build"]["raw_fraction"] * t.num_rows) > 0.5 + 1e-9:  # round(f * rows)
                fail(f"{sh['file']}: {n_raw} raw rows of {t.num_rows}, fraction {m['build']['raw_fraction']}")
        for img, label, key, (h, w), is_raw in zip(t.column("image").to_pylist(), labels, t.column("key").to_pylist(),
                                                    sizes, flags):
            a = np.frombuffer(img, np.uint8).reshape(h, w, 3) if is_raw else \
                np.asarray(Image.open(io.BytesIO(img)).convert("RGB"))
            if a.shape != (h, w, 3):
                fail(f"{key}: image is {a.shape}, the row says {h}x{w}")
                continue
            if split == "train":
                train_pixels.append(a)
                if m["classes"][label]["wnid"] != key.split("/")[0]:
                    fail(f"{key}: label {label} is not its folder's class")
            r = reference(os.path.join(split_dir, key)).astype(np.int16)
            if r.shape != a.shape:
                fail(f"{key}: stored {a.shape}, torchvision's Resize gives {r.shape}")
                continue
            d = np.abs(a.astype(np.int16) - r)
            diffs[key] = (d.mean(), np.percentile(d, 99), d.max())
            # Decoders differ by IDCT rounding (and JPEG shards add their own loss).
            lim_mean, lim_p99 = (0.5, 2) if is_raw else (3.5, 16)
            if d.mean() > lim_mean or np.percentile(d, 99) > lim_p99:
                fail(f"{key}: differs from torchvision's {ref_tf}: "
                     f"mean abs {d.mean():.2f}, p99 {np.percentile(d, 99)}, max {d.max()}")
    if rows != entry["rows"]:
        fail(f"{split}: {rows} rows, manifest {entry['rows']}")

# Statistics against numpy, on the raw build only (JPEG shards hold lossy pixels;
# the manifest's statistics are of the pixels before encoding).
if raw:
    px = np.concatenate([p.reshape(-1, 3) for p in train_pixels]).astype(np.float64)
    mean = px.mean(0)
    cov = np.cov(px.T, bias=True)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1]
    st = m["stats"]
    if not np.allclose(st["mean_rgb"], mean, rtol=0, atol=1e-9):
        fail(f"mean_rgb {st['mean_rgb']} != numpy {mean}")
    if not np.allclose(st["std_rgb"], np.sqrt(np.diag(cov)), rtol=1e-9, atol=1e-9):
        fail(f"std_rgb {st['std_rgb']} != numpy {np.sqrt(np.diag(cov))}")
    if not np.allclose(st["pca"]["eigenvalues"], w[order], rtol=1e-9, atol=1e-6):
        fail(f"eigenvalues {st['pca']['eigenvalues']} != numpy {w[order]}")
    for i, k in enumerate(order):
        ours = np.array(st["pca"]["eigenvectors"][i])
        if abs(abs(ours @ v[:, k]) - 1) > 1e-9:
            fail(f"eigenvector {i} {ours} != numpy {v[:, k]} (up to sign)")
    if not whole:
        x = np.stack(train_pixels)
        mean_img = np.load(os.path.join(ds, m["mean_image"]))
        if mean_img.shape != (SIDE, SIDE, 3) or mean_img.dtype != np.float32:
            fail(f"mean image {mean_img.shape} {mean_img.dtype}")
        if not np.allclose(mean_img, x.astype(np.float64).mean(0), atol=1e-4):
            fail("mean image != numpy mean of the train images")

rej = open(os.path.join(ds, "rejects.tsv")).read().splitlines()[1:]
if len(rej) != m["rejected"] or not any("truncated" in r for r in rej):
    fail(f"rejects.tsv: {rej} (manifest rejected {m['rejected']})")

means = np.array([d[0] for d in diffs.values()])
worst = max(diffs, key=lambda k: diffs[k][0])
print(f"{ds}: {len(diffs)} images vs torchvision: mean abs difference {means.mean():.3f}, "
      f"worst {worst} {diffs[worst][0]:.3f} (p99 {diffs[worst][1]}, max {diffs[worst][2]}); "
      f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
