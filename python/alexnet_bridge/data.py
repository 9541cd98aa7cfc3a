"""A map-style `torch.utils.data.Dataset` over built shards, for a PyTorch `DataLoader`.

    from torch.utils.data import DataLoader
    from alexnet_bridge import ShardDataset, Preprocess
    pre = Preprocess.from_dataset("data/imagenet", 227, "mean-image", crops="center")
    val = ShardDataset("data/imagenet", "val", transform=pre)
    for x, y in DataLoader(val, batch_size=128, num_workers=8):
        ...   # x: float [128, 1, 3, 227, 227], y: int64 [128]

Item `i` is row `i` of the split, in shard order (the Rust reader's numbering): `(image,
label)`, the image uint8 [H, W, 3] HWC RGB (a read-only view of the memory map for raw
shards; decoded with Pillow for JPEG shards) unless `transform` maps it (a `Preprocess`,
or any callable: torchvision's v2 transforms take `to_float_chw(image)`). `keys[i]` is
its source path. Shards are mapped lazily in each process (worker processes of a
`DataLoader` map their own), so the dataset pickles cheaply.

Reads dataset format versions 1 and 2 (`alexnet_bridge.shards`); row CRCs are not checked
here (`preprocess verify` checks a dataset).
"""
import bisect

import numpy as np
import torch

from .shards import load_manifest, open_dataset


class ShardDataset(torch.utils.data.Dataset):
    def __init__(self, root, split="train", transform=None):
        self.root, self.split, self.transform = root, split, transform
        self.manifest = load_manifest(root)
        if split not in self.manifest["splits"]:
            raise ValueError(f"{root}: no {split!r} split")
        rows = [s["rows"] for s in self.manifest["splits"][split]["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64).tolist()
        self.classes = [c["wnid"] for c in self.manifest["classes"]]
        self.class_names = [c["name"] for c in self.manifest["classes"]]
        self._shards = None

    def _open(self):
        if self._shards is None:
            _, self._shards = open_dataset(self.root, self.split)
        return self._shards

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_shards"] = None           # maps are per process
        return d

    def __len__(self):
        return self._starts[-1]

    def locate(self, i):
        """(shard index, row in the shard) of item `i`."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of a split of {len(self)}")
        s = bisect.bisect_right(self._starts, i) - 1
        return s, i - self._starts[s]

    def __getitem__(self, i):
        s, r = self.locate(int(i))
        shard = self._open()[s]
        img = shard.image(r)
        label = int(shard.labels[r])
        if self.transform is not None:
            img = self.transform(img)
        return img, label

    def key(self, i):
        s, r = self.locate(int(i))
        return self._open()[s].keys[r]

    @property
    def keys(self):
        return [k for sh in self._open() for k in sh.keys]

    @property
    def labels(self):
        return np.concatenate([sh.labels for sh in self._open()])
