"""The evaluation preprocessing of the Rust side (trainer/src/data, DESIGN.md
"Augmentation and crops"), as torch ops on float CHW tensors, 0..255 scale:

- `normalize(x, mode, mean_rgb, mean_image)`: `mean-image` (the paper: the per-pixel
  train mean image, cropped and flipped like the image: the same as subtracting it from
  the whole 256x256 image before cropping), `mean-rgb`, `torchvision` (0..1 scale,
  ImageNet mean/std);
- `center_crop(x, side)`: offset `round((256 - side) / 2)`, rounded half to even
  (Python's round, as torchvision): 14 for 227, 16 for 224;
- `ten_crops(x, side)`: top-left, top-right, bottom-left, bottom-right, center, then the
  same five of the horizontally flipped image (torchvision's TenCrop order);
- `Preprocess`: all of it for one checkpoint and dataset: uint8 HWC image -> float
  [K, 3, side, side] (K = 1 or 10).

Checked against the Rust loader's crops by python/tests/check_dataset_bridge.py.
"""
import os

import numpy as np
import torch

TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("mean-image", "mean-rgb", "torchvision")


def to_float_chw(hwc):
    """uint8 [H, W, 3] (numpy or tensor) -> float32 [3, H, W], 0..255."""
    if isinstance(hwc, np.ndarray):        # a read-only view of a shard's map: one float copy
        return torch.from_numpy(hwc.astype(np.float32)).permute(2, 0, 1)
    return hwc.permute(2, 0, 1).to(torch.float32)


def mean_image(root, manifest=None):
    """The dataset's per-pixel train mean as float32 [3, 256, 256] (its `mean_image`
    .npy is HWC)."""
    if manifest is None:
        from .shards import load_manifest
        manifest = load_manifest(root)
    return torch.from_numpy(np.load(os.path.join(root, manifest["mean_image"]))).permute(2, 0, 1).float()


def normalize(x, mode, mean_rgb=None, mean_img=None):
    """x: float [..., 3, H, W] on 0..255 (whole images, before cropping, for mean-image)."""
    if mode == "mean-image":
        if mean_img is None:
            raise ValueError("mean-image normalization needs the dataset's mean image")
        return x - mean_img
    if mode == "mean-rgb":
        if mean_rgb is None:
            raise ValueError("mean-rgb normalization needs the dataset's mean RGB")
        return x - torch.tensor(mean_rgb, dtype=torch.float32).view(3, 1, 1)
    if mode == "torchvision":
        m = torch.tensor(TORCHVISION_MEAN).view(3, 1, 1)
        s = torch.tensor(TORCHVISION_STD).view(3, 1, 1)
        return (x / 255.0 - m) / s
    raise ValueError(f"normalization {mode!r}: expected one of {NORMALIZATIONS}")


def center_offset(size, side):
    return int(round((size - side) / 2))


def center_crop(x, side):
    """[..., H, W] -> [..., side, side], torchvision's centre."""
    h, w = x.shape[-2:]
    if side > min(h, w):
        raise ValueError(f"crop {side} of a {w}x{h} image")
    y0, x0 = center_offset(h, side), center_offset(w, side)
    return x[..., y0:y0 + side, x0:x0 + side]


def five_crops(x, side):
    h, w = x.shape[-2:]
    return [x[..., :side, :side], x[..., :side, w - side:], x[..., h - side:, :side], x[..., h - side:, w - side:],
            center_crop(x, side)]


def ten_crops(x, side):
    """[..., 3, H, W] -> [..., 10, 3, side, side] in torchvision's TenCrop order."""
    return torch.stack(five_crops(x, side) + five_crops(x.flip(-1), side), -4)


def crops(x, side, mode):
    """[..., 3, H, W] -> [..., K, 3, side, side]: K = 1 (`center`) or 10 (`ten`)."""
    if mode == "center":
        return center_crop(x, side).unsqueeze(-4)
    if mode == "ten":
        return ten_crops(x, side)
    raise ValueError(f"crops {mode!r}: center or ten")


class Preprocess:
    """uint8 HWC image -> float [K, 3, side, side], normalized then cropped as `eval`
    does. Build it from a dataset (`from_dataset`) or from a checkpoint's metadata
    (`from_metadata`, which carries mean RGB and mean image since `InputsMeta`)."""

    def __init__(self, side, normalization, crops="center", mean_rgb=None, mean_img=None):
        self.side, self.normalization, self.mode = side, normalization, crops
        self.mean_rgb, self.mean_img = mean_rgb, mean_img
        normalize(torch.zeros(3, 256, 256), normalization, mean_rgb, mean_img)    # checks what it needs

    @classmethod
    def from_dataset(cls, root, side, normalization, crops="center"):
        from .shards import is_whole, load_manifest
        m = load_manifest(root)
        if normalization == "mean-image" and is_whole(m):
            raise ValueError(f"{root}: whole images have no mean image: use mean-rgb or torchvision")
        mi = mean_image(root, m) if normalization == "mean-image" else None
        return cls(side, normalization, crops, m["stats"]["mean_rgb"], mi)

    @classmethod
    def from_metadata(cls, meta, crops="center"):
        """From a checkpoint's metadata (the dict `load_checkpoint` returns, or the raw
        strings): its crop and normalization, and the `mean_rgb` / `mean_image` (base64
        float32 256x256x3 HWC) that checkpoints written since `InputsMeta` carry."""
        import base64
        import json
        if "mean_rgb" not in meta:
            raise ValueError("the checkpoint carries no mean RGB / mean image (written before they were "
                             "recorded): use Preprocess.from_dataset")
        rgb = meta["mean_rgb"]
        rgb = json.loads(rgb) if isinstance(rgb, str) else rgb
        mi = None
        if meta.get("mean_image"):
            raw = np.frombuffer(base64.b64decode(meta["mean_image"]), "<f4")
            mi = torch.from_numpy(raw.reshape(256, 256, 3).copy()).permute(2, 0, 1).contiguous()
        return cls(int(meta["crop"]), meta.get("normalization", "mean-image"), crops, rgb, mi)

    def __call__(self, hwc):
        x = normalize(to_float_chw(hwc), self.normalization, self.mean_rgb, self.mean_img)
        return crops(x, self.side, self.mode).contiguous()
