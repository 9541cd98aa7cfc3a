"""Reading built shards from Python the way the Rust reader does (shared/src/reader.rs):
each shard memory-mapped read-only, every image's byte range found once, at open, from
the Parquet footer and the image column's page headers, and `image(row)` a numpy view
of the map (raw shards: the HWC pixels, no copy; JPEG shards: the encoded bytes).

Dataset format versions (shared/src/manifest.rs, DESIGN.md "Format versions"):

- 1: columns image, label, key (256x256 centre squares);
- 2: and `crc32c`, a per-row check (read here, not verified: `preprocess verify` does,
  and the Rust loader at every read);
- 3: whole images (the manifest's `layout` is `{"kind": "whole", ...}`): and `height`,
  `width` (uint16) per row; the raw image column is then variable-length binary
  (`height * width * 3` HWC bytes), found by the same page walk as JPEG values; no mean
  image. A centre-square dataset is still written as format 2;
- 4: mixed shards (encoding "mixed", either layout): and `raw` (bool), whether each
  row's binary image value is raw pixels or a JPEG (`Shard.is_raw`);
- a newer version is refused by name, as the Rust reader does.

Every row has a (height, width) (`Shard.sizes`): 256x256 for centre squares.

    from alexnet_bridge.shards import open_dataset
    manifest, shards = open_dataset("data/imagenet", "val")
    pixels = shards[0].image(3)            # uint8 [256, 256, 3], a view of the map
"""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SIDE = 256
IMAGE_BYTES = SIDE * SIDE * 3
#: The format versions this module reads (as shared/src/manifest.rs).
READS_VERSIONS = (1, 2, 3, 4)
_COLUMNS = {("image", "label", "key"): 1, ("image", "label", "key", "crc32c"): 2,
            ("image", "label", "key", "crc32c", "height", "width"): 3}
# Format 4, mixed shards: the same columns and a last one, `raw` (bool), row by row.
_COLUMNS.update({names + ("raw",): 4 for names, v in list(_COLUMNS.items()) if v >= 2})


class ShardError(ValueError):
    """A shard or manifest this module cannot read, naming the file."""


def load_manifest(root):
    """`dataset.json` of `root`, its version checked."""
    path = os.path.join(root, "dataset.json")
    with open(path) as f:
        m = json.load(f)
    v = m.get("format_version")
    if v not in READS_VERSIONS:
        newer = isinstance(v, int) and v > max(READS_VERSIONS)
        raise ShardError(f"{path}: format_version {v!r} is not supported (this module reads versions "
                         f"{READS_VERSIONS[0]} to {READS_VERSIONS[-1]})"
                         f"{': it was built by a newer program' if newer else ''}")
    if m.get("encoding", "raw") not in ("raw", "jpeg", "mixed") or (m.get("encoding") == "mixed" and v < 4):
        raise ShardError(f"{path}: encoding {m.get('encoding')!r} in a format {v} manifest, expected raw or jpeg "
                         "(or mixed, format 4)")
    kind = m.setdefault("layout", {"kind": "center-square"}).get("kind")
    if kind not in ("center-square", "whole") or (kind == "whole" and v < 3):
        raise ShardError(f"{path}: layout {m['layout']!r} in a format {v} manifest")
    return m


def is_whole(manifest):
    """Whether the dataset holds whole images (format 3) rather than 256x256 squares."""
    return manifest.get("layout", {}).get("kind") == "whole"


def open_dataset(root, split):
    """(manifest, [Shard]) of `split` ("train" or "val") of the dataset in `root`."""
    m = load_manifest(root)
    if split not in m["splits"]:
        raise ShardError(f"{root}: no {split!r} split (has {sorted(m['splits'])})")
    shards = [Shard(os.path.join(root, s["file"]), m["encoding"], is_whole(m)) for s in m["splits"][split]["shards"]]
    for s, entry in zip(shards, m["splits"][split]["shards"]):
        if len(s) != entry["rows"]:
            raise ShardError(f"{s.path}: {len(s)} rows, the manifest says {entry['rows']}")
    return m, shards


class _Compact:
    """Just enough of Thrift's compact protocol to read a Parquet PageHeader."""

    def __init__(self, buf, at):
        self.buf, self.at = buf, at

    def byte(self):
        b = self.buf[self.at]
        self.at += 1
        return b

    def varint(self):
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return out
            if shift > 63:
                raise ShardError("a varint runs past 64 bits")

    def zigzag(self):
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t):
        """Reads a value of compact type `t`: ints as ints, structs as {field: value},
        the rest skipped (None)."""
        if t in (1, 2):            # bool true / false (in a field header)
            return t == 1
        if t == 3:
            return self.byte()
        if t in (4, 5, 6):
            return self.zigzag()
        if t == 7:
            self.at += 8
            return None
        if t == 8:
            self.at += self.varint()
            return None
        if t in (9, 10):
            h = self.byte()
            n, et = h >> 4, h & 0x0F
            if n == 15:
                n = self.varint()
            for _ in range(n):
                self.value(et) if et not in (1, 2) else self.byte()
            return None
        if t == 11:
            n = self.varint()
            if n:
                kv = self.byte()
                for _ in range(n):
                    self.value(kv >> 4)
                    self.value(kv & 0x0F)
            return None
        if t == 12:
            return self.struct()
        raise ShardError(f"unknown Thrift compact type {t}")

    def struct(self):
        fields, last = {}, 0
        while True:
            h = self.byte()
            if h == 0:
                return fields
            delta, t = h >> 4, h & 0x0F
            fid = last + delta if delta else self.zigzag()
            fields[fid] = self.value(t)
            last = fid


# PageHeader fields (parquet.thrift): 1 type, 2 uncompressed size, 3 compressed size,
# 5 data_page_header {1 num_values, 2 encoding}, 8 data_page_header_v2 {1 num_values,
# 4 encoding, 5 def_levels_byte_length, 6 rep_levels_byte_length, 7 is_compressed}.
_DATA_PAGE, _DICT_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_PLAIN = 0


class Shard:
    """One shard file, mapped read-only: `image(row)`, `labels`, `keys`, `sizes`.

    The file must not change while it is mapped (the format's contract: shards are never
    modified after they are written)."""

    def __init__(self, path, encoding, whole=False):
        self.path, self.encoding, self.whole = path, encoding, whole
        self._map = pa.memory_map(path, "r")
        mapped = self._map.read_buffer(self._map.size())                # the map itself: no copy
        self._bytes, self._view = np.frombuffer(mapped, np.uint8), memoryview(mapped)
        self._map.seek(0)
        pf = pq.ParquetFile(self._map)
        names = tuple(pf.schema_arrow.names)
        mixed = encoding == "mixed"
        if names not in _COLUMNS or ("height" in names) != whole or ("raw" in names) != mixed:
            raise ShardError(f"{path}: columns are {list(names)}, expected image, label, key (format 1), "
                             "and crc32c (format 2), and height, width (format 3, whole images), and raw "
                             "(format 4, mixed shards)")
        self.version = _COLUMNS[names]
        col = pf.schema.column(0)
        self._fixed = encoding == "raw" and not whole
        want = "FIXED_LEN_BYTE_ARRAY" if self._fixed else "BYTE_ARRAY"
        if col.physical_type != want or (self._fixed and col.length != IMAGE_BYTES) or col.max_definition_level:
            raise ShardError(f"{path}: image column is {col.physical_type} (length {col.length}); a {encoding} "
                             f"dataset needs a required {want}")
        self.offsets, self.lengths = self._index(pf)
        small = pf.read(columns=[n for n in names if n != "image"])
        self.labels = small.column("label").to_numpy().astype(np.int64)
        self.keys = small.column("key").to_pylist()
        self.crc32c = small.column("crc32c").to_numpy() if "crc32c" in names else None
        self.sizes = self._sizes(small)
        # Whether each row's image is raw pixels (else a JPEG).
        if mixed and small.column("raw").null_count:
            raise ShardError(f"{path}: null values in the raw column")
        self.is_raw = (small.column("raw").to_numpy(zero_copy_only=False).astype(bool) if mixed
                       else np.full(len(self.labels), encoding == "raw"))
        if not (len(self.labels) == len(self.keys) == len(self.offsets) == pf.metadata.num_rows):
            raise ShardError(f"{path}: {len(self.offsets)} images, {len(self.labels)} labels for "
                             f"{pf.metadata.num_rows} rows")
        bad = self.is_raw & (self.lengths != self.sizes.prod(1) * 3)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ShardError(f"{path}: row {row}: {self.lengths[row]} bytes of raw pixels for a "
                             f"{self.sizes[row][0]}x{self.sizes[row][1]} image")

    def _sizes(self, small):
        """[rows, 2] (height, width) of every row: 256x256 for centre squares, the
        `height` and `width` columns for whole images (format 3)."""
        if not self.whole:
            return np.full((small.num_rows, 2), SIDE, np.int64)
        hw = np.stack([small.column("height").to_numpy(), small.column("width").to_numpy()], 1).astype(np.int64)
        if len(hw) and hw.min() < 1:
            raise ShardError(f"{self.path}: a row of size {hw.min(0).tolist()}")
        return hw

    def _index(self, pf):
        """(offset, length) in the file of every row's image bytes, from the page headers."""
        offsets, lengths = [], []
        buf, md = self._view, pf.metadata
        for rg in range(md.num_row_groups):
            cc = md.row_group(rg).column(0)
            if cc.compression != "UNCOMPRESSED":
                raise ShardError(f"{self.path}: row group {rg}: image column is compressed ({cc.compression})")
            at = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
            end, rows = at + cc.total_compressed_size, 0
            if end > len(buf):
                raise ShardError(f"{self.path}: row group {rg} lies outside the file")
            while at < end and rows < md.row_group(rg).num_rows:
                r = _Compact(buf, at)
                h = r.struct()
                start, size = r.at, h.get(3, 0)
                if h.get(1) == _DATA_PAGE and isinstance(h.get(5), dict):
                    n, enc = h[5].get(1, 0), h[5].get(2)
                elif h.get(1) == _DATA_PAGE_V2 and isinstance(h.get(8), dict) and not h[8].get(5) \
                        and not h[8].get(6) and h[8].get(7) is False:
                    n, enc = h[8].get(1, 0), h[8].get(4)
                else:
                    raise ShardError(f"{self.path}: row group {rg}: image column has a page of type {h.get(1)} "
                                     "(expected PLAIN data pages, no dictionary)")
                if enc != _PLAIN:
                    raise ShardError(f"{self.path}: row group {rg}: image column is encoded {enc}, expected PLAIN")
                if start + size > len(buf):
                    raise ShardError(f"{self.path}: a page lies outside the file")
                if self._fixed:
                    if size != n * IMAGE_BYTES:
                        raise ShardError(f"{self.path}: row group {rg}: a page of {n} images holds {size} bytes")
                    offsets.extend(range(start, start + n * IMAGE_BYTES, IMAGE_BYTES))
                    lengths.extend([IMAGE_BYTES] * n)
                else:
                    v = start
                    for _ in range(n):
                        ln = int.from_bytes(buf[v:v + 4], "little") if v + 4 <= start + size else -1
                        if ln < 0 or v + 4 + ln > start + size:
                            raise ShardError(f"{self.path}: row group {rg}: an image runs past the end of its page")
                        offsets.append(v + 4)
                        lengths.append(ln)
                        v += 4 + ln
                rows += n
                at = start + size
        return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)

    def __len__(self):
        return len(self.offsets)

    def raw(self, row):
        """The image bytes of `row` as a uint8 view of the map (raw pixels or a JPEG file)."""
        o = self.offsets[row]
        return self._bytes[o:o + self.lengths[row]]

    def image(self, row):
        """uint8 [height, width, 3] HWC RGB of `row` (256x256, or `sizes[row]` for whole
        images): a read-only view of the map (raw), or decoded with Pillow (JPEG)."""
        h, w = self.sizes[row]
        if self.is_raw[row]:
            return self.raw(row).reshape(h, w, 3)
        import io
        from PIL import Image
        with Image.open(io.BytesIO(self.raw(row).tobytes())) as im:
            a = np.asarray(im.convert("RGB"))
        if a.shape != (h, w, 3):
            raise ShardError(f"{self.path}: row {row}: a {a.shape[1]}x{a.shape[0]} JPEG, expected {w}x{h}")
        return a
