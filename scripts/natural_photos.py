#!/usr/bin/env python3
"""A folder of natural photographs in ImageNet's layout, for the decoder benchmarks
(BENCHMARKS.md, "Natural photographs"): the procedural demo images are smoother than
photographs, and a JPEG decoder's time grows with the detail it has to entropy-decode.

The photographs are the colour ones that scikit-image and scikit-learn ship inside
their wheels (astronaut, chelsea, coffee, motorcycle left/right, rocket, china, flower,
hubble_deep_field: 9 photographs of 300x451 to 512x640 pixels), taken from the wheels
`pip download` fetches, without installing them. Each photograph is one class; each
image is a random box of it (60% to all of its shorter side, aspect 3:4 to 4:3, randomly
flipped) at the photograph's own resolution, saved as a quality 95 JPEG; the build then
rescales it as it does any input (shorter side 256).

usage: natural_photos.py WHEELS_DIR OUT_DIR [--train-per-class N] [--val-per-class N] [--seed S]
"""
import argparse
import io
import os
import random
import sys
import zipfile

from PIL import Image

PHOTOS = {
    "skimage/data/astronaut.png", "skimage/data/chelsea.png", "skimage/data/coffee.png",
    "skimage/data/motorcycle_left.png", "skimage/data/motorcycle_right.png", "skimage/data/rocket.jpg",
    "skimage/data/hubble_deep_field.jpg", "sklearn/datasets/images/china.jpg",
    "sklearn/datasets/images/flower.jpg",
}


def photos(wheels):
    found = {}
    for name in sorted(os.listdir(wheels)):
        if not name.endswith(".whl"):
            continue
        with zipfile.ZipFile(os.path.join(wheels, name)) as z:
            for member in z.namelist():
                if member in PHOTOS:
                    found[member] = Image.open(io.BytesIO(z.read(member))).convert("RGB")
    missing = PHOTOS - set(found)
    if missing:
        sys.exit(f"natural_photos.py: {wheels}: no {sorted(missing)} in the wheels there "
                 "(pip download --no-deps scikit-image scikit-learn)")
    return [found[k] for k in sorted(found)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wheels")
    ap.add_argument("out")
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--val-per-class", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for c, img in enumerate(photos(a.wheels)):
        w, h = img.size
        for split, n in (("train", a.train_per_class), ("val", a.val_per_class)):
            d = os.path.join(a.out, split, f"n{c:08d}")
            os.makedirs(d, exist_ok=True)
            for k in range(n):
                short = min(w, h)
                side = rng.uniform(0.6, 1.0) * short
                aspect = rng.uniform(3 / 4, 4 / 3)
                bw, bh = min(w, side * aspect ** 0.5), min(h, side / aspect ** 0.5)
                x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                box = img.crop((round(x0), round(y0), round(x0 + bw), round(y0 + bh)))
                if rng.random() < 0.5:
                    box = box.transpose(Image.FLIP_LEFT_RIGHT)
                box.save(os.path.join(d, f"n{c:08d}_{k}.JPEG"), quality=95)
    print(f"wrote {a.out}: 9 classes, {9 * a.train_per_class} train and {9 * a.val_per_class} val images")


if __name__ == "__main__":
    main()
