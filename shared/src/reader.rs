//! Zero-copy reading of shards: each shard is memory-mapped read-only, and every
//! image's byte range in the map is indexed once, at open, from the Parquet metadata
//! and page headers. `get(row)` then returns a slice of the map: no decode, no copy.
//!
//! Every row's bytes are checked when they are read ([`ShardReader::image`],
//! [`ShardReader::get`]): format 2 shards hold a `crc32c` column, the CRC-32C of each
//! row's image bytes, label (int16, little-endian) and key (UTF-8), checked at each
//! read (hardware CRC, about 20 us for a raw image); a format 1 shard (built before
//! the column existed) is checked as a whole against the manifest's sha256, once, the
//! first time one of its rows is read. A mismatch is [`Error::Damaged`], naming the
//! shard and the row.
//!
//! Whole-image shards (format 3) also hold each row's `height` and `width`
//! ([`ShardReader::size`]); their `image` values are JPEGs or raw pixels of that size.
//! Mixed shards (format 4) say row by row whether `image` is raw pixels or a JPEG
//! ([`ShardReader::is_jpeg`]); the row's CRC-32C covers that flag.
//!
//! Only regular files are opened (never a FIFO or a device), and a shard can be no
//! bigger than its rows can fill.
//!
//! Shards belong on a local disk and must not change while mapped: a file truncated
//! or rewritten under a live map makes the process die with SIGBUS. `preprocess`
//! never rewrites a finished shard in place (it writes a new file and renames).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::{Array, Int16Array, StringArray, UInt16Array, UInt32Array};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, Encoding as PqEncoding, Repetition, Type as PhysicalType};
use parquet::column::page::Page;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{Error, Result};
use crate::manifest::{Encoding, Manifest, ShardEntry, ShardKind};
use crate::{Split, IMAGE_BYTES, IMAGE_SIDE};

/// A read-only memory map of a shard file.
///
/// # Safety
///
/// Mapping a file is sound only while nobody modifies or truncates it. The contract of
/// the dataset format is that a shard file is never modified after it is written
/// (writers produce a new file under a temporary name and rename it). A user who
/// overwrites shards while a reader runs breaks that contract.
struct ShardMap;

impl ShardMap {
    fn open(path: &Path, max_len: u64) -> Result<Bytes> {
        let (file, _) = crate::open::open_regular(path, max_len)?;
        // SAFETY: see the type's contract above: shard files are immutable once written.
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Bytes::from_owner(map))
    }
}

/// One image of a shard, borrowed from the map.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    /// Raw: `height * width * 3` bytes, HWC RGB. JPEG (see `jpeg`): the encoded file.
    pub bytes: &'a [u8],
    pub label: i16,
    pub key: &'a str,
    /// The image's height and width: 256 x 256 for centre squares.
    pub height: usize,
    pub width: usize,
    /// Whether `bytes` is a JPEG (else raw pixels): per row in a mixed shard.
    pub jpeg: bool,
}

/// The name of the per-row check column (format 2).
pub const CRC_COLUMN: &str = "crc32c";
/// The per-row size columns of whole-image shards (format 3).
pub const HEIGHT_COLUMN: &str = "height";
pub const WIDTH_COLUMN: &str = "width";
/// The per-row encoding column of mixed shards (format 4): true where `image` holds raw
/// pixels, false where it holds a JPEG.
pub const RAW_COLUMN: &str = "raw";

/// The CRC-32C of a row as format 2 stores it: over the image bytes (raw pixels or the
/// encoded JPEG), then the label as int16 little-endian, then the key's UTF-8 bytes.
pub fn row_crc(image: &[u8], label: i16, key: &str) -> u32 {
    row_crc_sized(image, label, key, None)
}

/// [`row_crc`], followed for a whole-image row (format 3) by its height and width as
/// uint16 little-endian.
pub fn row_crc_sized(image: &[u8], label: i16, key: &str, size: Option<(u16, u16)>) -> u32 {
    row_crc_full(image, label, key, size, None)
}

/// [`row_crc_sized`], followed for a row of a mixed shard (format 4) by its `raw` flag
/// as one byte (1: raw pixels, 0: a JPEG).
pub fn row_crc_full(image: &[u8], label: i16, key: &str, size: Option<(u16, u16)>, raw: Option<bool>) -> u32 {
    let c = crc32c::crc32c(image);
    let c = crc32c::crc32c_append(c, &label.to_le_bytes());
    let c = crc32c::crc32c_append(c, key.as_bytes());
    let c = match size {
        None => c,
        Some((h, w)) => crc32c::crc32c_append(crc32c::crc32c_append(c, &h.to_le_bytes()), &w.to_le_bytes()),
    };
    match raw {
        None => c,
        Some(r) => crc32c::crc32c_append(c, &[r as u8]),
    }
}

/// The most bytes a shard of `rows` rows of `kind` can take: the images (see
/// [`ShardKind::max_image_bytes`]), a key of up to 8 KiB per row, and the Parquet
/// metadata.
pub fn max_shard_bytes(rows: u64, kind: impl Into<ShardKind>) -> u64 {
    rows.saturating_mul(kind.into().max_image_bytes() + 8192).saturating_add(16 << 20)
}

/// How the rows of a shard are checked when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowCheck {
    /// Each row against its CRC-32C (format 2).
    Crc32c,
    /// The whole shard against the manifest's sha256, once, at the first read (format 1).
    ShardSha256,
    /// Not checked: a format 1 shard opened without its manifest.
    None,
}

/// A memory-mapped shard with its row index.
pub struct ShardReader {
    path: PathBuf,
    map: Bytes,
    /// Byte offset and length of each row's image in `map`.
    spans: Vec<(usize, u32)>,
    labels: Vec<i16>,
    keys: StringArray,
    /// The `crc32c` column (format 2).
    crcs: Option<Vec<u32>>,
    /// Whole-image shards (format 3): (height, width) of each row.
    sizes: Option<Vec<(u16, u16)>>,
    /// Mixed shards (format 4): whether each row's image is raw pixels (else a JPEG).
    raw: Option<Vec<bool>>,
    /// Format 1 shards: the manifest's sha256 and the result of checking it.
    sha256: Option<(String, OnceLock<std::result::Result<(), String>>)>,
    encoding: Encoding,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader").field("path", &self.path).field("rows", &self.len()).finish()
    }
}

impl ShardReader {
    /// Maps `path` and indexes its rows. Checks the schema and the physical layout of
    /// the `image` column; an unusable file is an error that names it. The file must be
    /// a regular file (a FIFO or device is refused, never read).
    pub fn open(path: &Path, kind: impl Into<ShardKind>) -> Result<Self> {
        let kind = kind.into();
        Self::open_bounded(path, kind, max_shard_bytes(u32::MAX as u64, kind))
    }

    /// [`ShardReader::open`] of a file of at most `max_len` bytes. A malformed file that
    /// makes the Parquet reader panic is an error naming the file, like any other.
    pub fn open_bounded(path: &Path, kind: impl Into<ShardKind>, max_len: u64) -> Result<Self> {
        let map = ShardMap::open(path, max_len)?;
        Self::from_bytes(path, map, kind)
    }

    /// Indexes the shard held in `map` (`path` names it in errors).
    pub fn from_bytes(path: &Path, map: Bytes, kind: impl Into<ShardKind>) -> Result<Self> {
        let kind = kind.into();
        let mut out = None;
        let caught = crate::guard::catch(|| {
            out = Some(Self::index(path, map, kind));
            Ok(())
        });
        match caught {
            Ok(()) => out.unwrap_or_else(|| Err(Error::shard(path, "unreadable Parquet"))),
            Err(p) => Err(Error::shard(path, format!("unreadable Parquet ({p})"))),
        }
    }

    fn index(path: &Path, map: Bytes, kind: ShardKind) -> Result<Self> {
        let encoding = kind.encoding;
        let whole = kind.whole.is_some();
        let bad = |m: String| Error::shard(path, m);
        let reader =
            SerializedFileReader::new(map.clone()).map_err(|e| bad(format!("cannot read the Parquet footer ({e})")))?;
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        let mixed = encoding == Encoding::Mixed;
        if mixed {
            let want: &[&str] = if whole {
                &["image", "label", "key", CRC_COLUMN, HEIGHT_COLUMN, WIDTH_COLUMN, RAW_COLUMN]
            } else {
                &["image", "label", "key", CRC_COLUMN, RAW_COLUMN]
            };
            if names != want {
                return Err(bad(format!(
                    "columns are {names:?}, expected {want:?} (format 4, mixed raw and JPEG rows)"
                )));
            }
        }
        let core = if mixed { &names[..names.len() - 1] } else { &names[..] };
        let has_crc = match (core, whole) {
            (["image", "label", "key"], false) => false,
            (["image", "label", "key", CRC_COLUMN], false) => true,
            (["image", "label", "key", CRC_COLUMN, HEIGHT_COLUMN, WIDTH_COLUMN], true) => true,
            (_, false) => {
                return Err(bad(format!(
                    "columns are {names:?}, expected [\"image\", \"label\", \"key\"] (format 1) or with \"{CRC_COLUMN}\" (format 2)"
                )))
            }
            (_, true) => {
                return Err(bad(format!(
                    "columns are {names:?}, expected [\"image\", \"label\", \"key\", \"{CRC_COLUMN}\", \"{HEIGHT_COLUMN}\", \"{WIDTH_COLUMN}\"] (format 3, whole images)"
                )))
            }
        };
        let col = schema.column(0);
        let (want_type, want_len) = match encoding {
            Encoding::Raw if !whole => (PhysicalType::FIXED_LEN_BYTE_ARRAY, IMAGE_BYTES as i32),
            _ => (PhysicalType::BYTE_ARRAY, -1),
        };
        let repetition = col.self_type().get_basic_info().repetition();
        if col.physical_type() != want_type
            || (want_len > 0 && col.type_length() != want_len)
            || repetition != Repetition::REQUIRED
        {
            return Err(bad(format!(
                "image column is {:?} (length {}, {:?}); a {} dataset needs a required {:?}{}",
                col.physical_type(),
                col.type_length(),
                repetition,
                encoding.name(),
                want_type,
                if want_len > 0 { format!(" of length {want_len}") } else { String::new() }
            )));
        }

        let base = map.as_ptr() as usize;
        // The footer's row count is checked against the pages below; until then it only
        // sizes buffers, bounded by what the file could hold (a damaged footer must not
        // allocate past that).
        let rows = meta.file_metadata().num_rows().max(0) as usize;
        let rows_cap = rows.min(map.len() / 8 + 1);
        let mut spans = Vec::with_capacity(rows_cap);
        for rg in 0..meta.num_row_groups() {
            let chunk = meta.row_group(rg).column(0);
            if chunk.compression() != Compression::UNCOMPRESSED {
                return Err(bad(format!(
                    "row group {rg}: image column is compressed ({:?}); rebuild the dataset with preprocess",
                    chunk.compression()
                )));
            }
            let rg_reader = reader.get_row_group(rg).map_err(|e| bad(format!("row group {rg}: {e}")))?;
            let mut pages = rg_reader.get_column_page_reader(0).map_err(|e| bad(format!("row group {rg}: {e}")))?;
            while let Some(page) = pages.get_next_page().map_err(|e| bad(format!("row group {rg}: {e}")))? {
                let (buf, n, enc) = match &page {
                    Page::DataPage { buf, num_values, encoding, .. } => (buf, *num_values as usize, *encoding),
                    Page::DataPageV2 { buf, num_values, encoding, def_levels_byte_len, rep_levels_byte_len, is_compressed, .. }
                        if *def_levels_byte_len == 0 && *rep_levels_byte_len == 0 && !*is_compressed =>
                    {
                        (buf, *num_values as usize, *encoding)
                    }
                    other => {
                        return Err(bad(format!("row group {rg}: image column has a {:?} page; rebuild the dataset with preprocess (PLAIN, no dictionary)", other.page_type())))
                    }
                };
                if enc != PqEncoding::PLAIN {
                    return Err(bad(format!("row group {rg}: image column is {enc:?} encoded, expected PLAIN")));
                }
                let start = buf.as_ptr() as usize - base;
                if start + buf.len() > map.len() {
                    return Err(bad("a page lies outside the file".into()));
                }
                match want_type {
                    PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                        if buf.len() != n * IMAGE_BYTES {
                            return Err(bad(format!("row group {rg}: a page of {n} images holds {} bytes", buf.len())));
                        }
                        spans.extend((0..n).map(|i| (start + i * IMAGE_BYTES, IMAGE_BYTES as u32)));
                    }
                    _ => {
                        let mut at = 0usize;
                        for _ in 0..n {
                            let len = buf
                                .get(at..at + 4)
                                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                                .ok_or_else(|| bad(format!("row group {rg}: page ends inside a value")))?;
                            at += 4;
                            if at + len as usize > buf.len() {
                                return Err(bad(format!("row group {rg}: an image runs past the end of its page")));
                            }
                            spans.push((start + at, len));
                            at += len as usize;
                        }
                    }
                }
            }
        }
        if spans.len() != rows {
            return Err(bad(format!("the image column holds {} values for {rows} rows", spans.len())));
        }

        // Labels, keys and CRCs are small: read them with the Arrow reader (a copy).
        let builder = ParquetRecordBatchReaderBuilder::try_new(map.clone()).map_err(|e| bad(e.to_string()))?;
        let roots: &[usize] = match (has_crc, whole, mixed) {
            (_, true, false) => &[1, 2, 3, 4, 5],
            (_, true, true) => &[1, 2, 3, 4, 5, 6],
            (_, false, true) => &[1, 2, 3, 4],
            (true, false, false) => &[1, 2, 3],
            (false, false, false) => &[1, 2],
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
        let batches = builder.with_projection(mask).with_batch_size(8192).build().map_err(|e| bad(e.to_string()))?;
        let mut labels = Vec::with_capacity(rows_cap);
        let mut keys: Vec<StringArray> = Vec::new();
        let mut crcs = Vec::with_capacity(if has_crc { rows_cap } else { 0 });
        let mut sizes = Vec::with_capacity(if whole { rows_cap } else { 0 });
        let mut raw = Vec::with_capacity(if mixed { rows_cap } else { 0 });
        for b in batches {
            let b = b.map_err(|e| bad(format!("reading labels and keys: {e}")))?;
            let l =
                b.column(0).as_any().downcast_ref::<Int16Array>().ok_or_else(|| bad("label is not int16".into()))?;
            let k = b.column(1).as_any().downcast_ref::<StringArray>().ok_or_else(|| bad("key is not utf8".into()))?;
            if l.null_count() > 0 || k.null_count() > 0 {
                return Err(bad("null labels or keys".into()));
            }
            labels.extend_from_slice(l.values());
            keys.push(k.clone());
            if has_crc {
                let c = b
                    .column(2)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or_else(|| bad(format!("{CRC_COLUMN} is not uint32")))?;
                if c.null_count() > 0 {
                    return Err(bad(format!("null {CRC_COLUMN} values")));
                }
                crcs.extend_from_slice(c.values());
            }
            if whole {
                let col = |i: usize, name: &str| {
                    b.column(i)
                        .as_any()
                        .downcast_ref::<UInt16Array>()
                        .filter(|a| a.null_count() == 0)
                        .map(|a| a.values().to_vec())
                        .ok_or_else(|| bad(format!("{name} is not a non-null uint16 column")))
                };
                let (h, w) = (col(3, HEIGHT_COLUMN)?, col(4, WIDTH_COLUMN)?);
                sizes.extend(h.into_iter().zip(w));
            }
            if mixed {
                let r = b
                    .column(b.num_columns() - 1)
                    .as_any()
                    .downcast_ref::<arrow_array::BooleanArray>()
                    .filter(|a| a.null_count() == 0)
                    .ok_or_else(|| bad(format!("{RAW_COLUMN} is not a non-null boolean column")))?;
                raw.extend(r.values().iter());
            }
        }
        let refs: Vec<&dyn Array> = keys.iter().map(|k| k as &dyn Array).collect();
        let keys = concat_strings(&refs).map_err(|e| bad(e.to_string()))?;
        if labels.len() != rows || keys.len() != rows || (has_crc && crcs.len() != rows) {
            return Err(bad(format!(
                "{} labels, {} keys and {} CRCs for {rows} rows",
                labels.len(),
                keys.len(),
                crcs.len()
            )));
        }
        let crcs = has_crc.then_some(crcs);
        let sizes = if whole {
            if sizes.len() != rows {
                return Err(bad(format!("{} image sizes for {rows} rows", sizes.len())));
            }
            let max = kind.max_image_bytes() / 2;
            for (row, (&(h, w), &(_, len))) in sizes.iter().zip(&spans).enumerate() {
                let pixels = h as u64 * w as u64 * 3;
                if h == 0 || w == 0 || pixels > max {
                    return Err(bad(format!("row {row}: an image of {h}x{w} (at most {max} bytes of pixels)")));
                }
                if encoding == Encoding::Raw && len as u64 != pixels {
                    return Err(bad(format!("row {row}: {len} bytes of raw pixels for a {h}x{w} image")));
                }
            }
            Some(sizes)
        } else {
            None
        };
        let raw = if mixed {
            if raw.len() != rows {
                return Err(bad(format!("{} {RAW_COLUMN} flags for {rows} rows", raw.len())));
            }
            for (row, (&r, &(_, len))) in raw.iter().zip(&spans).enumerate() {
                let pixels = match &sizes {
                    Some(s) => s[row].0 as u64 * s[row].1 as u64 * 3,
                    None => IMAGE_BYTES as u64,
                };
                if r && len as u64 != pixels {
                    return Err(bad(format!("row {row}: {len} bytes of raw pixels, expected {pixels}")));
                }
            }
            Some(raw)
        } else {
            None
        };
        Ok(Self { path: path.to_path_buf(), map, spans, labels, keys, crcs, sizes, raw, sha256: None, encoding })
    }

    /// How this shard's rows are checked when read.
    pub fn row_check(&self) -> RowCheck {
        match (&self.crcs, &self.sha256) {
            (Some(_), _) => RowCheck::Crc32c,
            (None, Some(_)) => RowCheck::ShardSha256,
            (None, None) => RowCheck::None,
        }
    }

    /// Whether the shard holds the per-row `crc32c` column (format 2).
    pub fn has_row_crc(&self) -> bool {
        self.crcs.is_some()
    }

    /// Checks `row`'s bytes: its CRC-32C, or (format 1) the shard's sha256 the first
    /// time. `row` must be in range.
    pub fn check_row(&self, row: usize) -> Result<()> {
        if let Some(crcs) = &self.crcs {
            let size = self.sizes.as_ref().map(|s| s[row]);
            let raw = self.raw.as_ref().map(|r| r[row]);
            let got = row_crc_full(self.image_unchecked(row), self.labels[row], self.keys.value(row), size, raw);
            if got != crcs[row] {
                return Err(Error::Damaged {
                    path: self.path.clone(),
                    row,
                    message: format!(
                        "key {}: CRC-32C {got:08x}, the shard says {:08x}: its bytes are damaged; rebuild the \
                         dataset (`preprocess build`, which rebuilds damaged shards) and run `preprocess verify`",
                        self.keys.value(row),
                        crcs[row]
                    ),
                });
            }
        } else if let Some((want, checked)) = &self.sha256 {
            let r = checked.get_or_init(|| {
                use sha2::Digest;
                let got = hex::encode(sha2::Sha256::digest(&self.map[..]));
                if &got == want {
                    Ok(())
                } else {
                    Err(format!(
                        "the shard's sha256 is {got}, the manifest says {want}: its bytes are damaged; rebuild \
                         the dataset (`preprocess build`) and run `preprocess verify`"
                    ))
                }
            });
            if let Err(message) = r {
                return Err(Error::Damaged { path: self.path.clone(), row, message: message.clone() });
            }
        }
        Ok(())
    }

    /// The whole mapped file (for hashing).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The shard's encoding: raw, jpeg, or mixed (see [`ShardReader::is_jpeg`]).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Whether `row`'s image is a JPEG (else raw pixels): the shard's encoding, or for a
    /// mixed shard (format 4) the row's `raw` column (panics when out of range).
    pub fn is_jpeg(&self, row: usize) -> bool {
        match (&self.raw, self.encoding) {
            (Some(raw), _) => !raw[row],
            (None, e) => {
                assert!(row < self.len(), "row {row} of {}", self.len());
                e == Encoding::Jpeg
            }
        }
    }

    /// How many rows hold raw pixels.
    pub fn raw_rows(&self) -> usize {
        match (&self.raw, self.encoding) {
            (Some(raw), _) => raw.iter().filter(|&&r| r).count(),
            (None, Encoding::Raw) => self.len(),
            (None, _) => 0,
        }
    }

    pub fn labels(&self) -> &[i16] {
        &self.labels
    }

    /// Whether the rows are whole images of their own sizes (format 3).
    pub fn is_whole(&self) -> bool {
        self.sizes.is_some()
    }

    /// The (height, width) of `row`'s image: 256 x 256 for centre squares (panics when
    /// `row` is out of range).
    pub fn size(&self, row: usize) -> (usize, usize) {
        match &self.sizes {
            Some(s) => (s[row].0 as usize, s[row].1 as usize),
            None => {
                assert!(row < self.len(), "row {row} of {}", self.len());
                (IMAGE_SIDE, IMAGE_SIDE)
            }
        }
    }

    /// The image bytes of `row`, a slice of the memory map, checked (see
    /// [`ShardReader::check_row`]).
    pub fn image(&self, row: usize) -> Result<&[u8]> {
        self.in_range(row)?;
        self.check_row(row)?;
        Ok(self.image_unchecked(row))
    }

    /// The image bytes of `row`, unchecked (panics when `row` is out of range).
    pub fn image_unchecked(&self, row: usize) -> &[u8] {
        let (off, len) = self.spans[row];
        &self.map[off..off + len as usize]
    }

    /// The image, label and key of `row`, checked.
    pub fn get(&self, row: usize) -> Result<ImageRef<'_>> {
        self.in_range(row)?;
        self.check_row(row)?;
        Ok(self.get_unchecked(row))
    }

    /// The image, label and key of `row` without the check (panics when out of range).
    pub fn get_unchecked(&self, row: usize) -> ImageRef<'_> {
        let (height, width) = self.size(row);
        ImageRef {
            bytes: self.image_unchecked(row),
            label: self.labels[row],
            key: self.keys.value(row),
            height,
            width,
            jpeg: self.is_jpeg(row),
        }
    }

    fn in_range(&self, row: usize) -> Result<()> {
        if row >= self.len() {
            return Err(Error::RowOutOfRange { split: self.path.display().to_string(), row, rows: self.len() });
        }
        Ok(())
    }
}

/// Concatenates string arrays (keys of the record batches of one shard).
fn concat_strings(parts: &[&dyn Array]) -> std::result::Result<StringArray, String> {
    let mut b = arrow_array::builder::StringBuilder::new();
    for p in parts {
        let s = p.as_any().downcast_ref::<StringArray>().ok_or("not a string array")?;
        for v in s.iter() {
            b.append_value(v.ok_or("null key")?);
        }
    }
    Ok(b.finish())
}

/// The shards of one split, addressed by a global row number.
#[derive(Debug)]
pub struct SplitReader {
    split: Split,
    shards: Vec<ShardReader>,
    /// First global row of each shard, plus the total at the end.
    starts: Vec<usize>,
}

impl SplitReader {
    pub fn split(&self) -> Split {
        self.split
    }

    pub fn len(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shards(&self) -> &[ShardReader] {
        &self.shards
    }

    /// (shard index, row within the shard) of a global row.
    pub fn locate(&self, row: usize) -> Option<(usize, usize)> {
        if row >= self.len() {
            return None;
        }
        let s = self.starts.partition_point(|&start| start <= row) - 1;
        Some((s, row - self.starts[s]))
    }

    pub fn get(&self, row: usize) -> Result<ImageRef<'_>> {
        let (s, r) = self.locate(row).ok_or_else(|| Error::RowOutOfRange {
            split: self.split.name().into(),
            row,
            rows: self.len(),
        })?;
        self.shards[s].get(r)
    }
}

/// A built dataset: the manifest and access to its splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    /// Reads and checks the manifest of the dataset in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self { dir: dir.to_path_buf(), manifest: Manifest::load(dir)? })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn num_classes(&self) -> usize {
        self.manifest.classes.len()
    }

    /// The per-pixel train mean (checked: a regular file inside the dataset folder, of
    /// the expected size, finite values on the 0..255 scale).
    /// A whole-image dataset has none: that is an error saying so.
    pub fn mean_image(&self) -> Result<Vec<f32>> {
        match &self.manifest.mean_image {
            Some(name) => crate::stats::read_mean_image(&self.dir.join(name)),
            None => Err(Error::Invalid(format!(
                "{}: a dataset of {} has no mean image (a per-pixel mean is not defined over images of many \
                 sizes): use the mean RGB (`data.normalization = \"mean-rgb\"` or \"torchvision\")",
                self.dir.display(),
                self.manifest.describe_layout()
            ))),
        }
    }

    /// Maps every shard of `split`; row counts are checked against the manifest.
    pub fn split(&self, split: Split) -> Result<SplitReader> {
        self.open_split(split, false)
    }

    /// Like [`Dataset::split`], and also checks every shard's sha256 (reads every byte).
    pub fn split_verified(&self, split: Split) -> Result<SplitReader> {
        self.open_split(split, true)
    }

    fn open_split(&self, split: Split, checksums: bool) -> Result<SplitReader> {
        let entry = self
            .manifest
            .split(split)
            .ok_or_else(|| Error::Invalid(format!("{}: the dataset has no {split} split", self.dir.display())))?;
        let mut shards = Vec::with_capacity(entry.shards.len());
        let mut starts = vec![0];
        for s in &entry.shards {
            let r = self.open_shard(s, checksums)?;
            starts.push(starts.last().unwrap() + r.len());
            shards.push(r);
        }
        Ok(SplitReader { split, shards, starts })
    }

    fn open_shard(&self, s: &ShardEntry, checksum: bool) -> Result<ShardReader> {
        let path = self.dir.join(&s.file);
        let map = ShardMap::open(&path, max_shard_bytes(s.rows, self.manifest.shard_kind()))?;
        if checksum {
            use sha2::Digest;
            let actual = hex::encode(sha2::Sha256::digest(&map[..]));
            if actual != s.sha256 {
                return Err(Error::Checksum { path, expected: s.sha256.clone(), actual });
            }
        }
        let mut r = ShardReader::from_bytes(&path, map, self.manifest.shard_kind())?;
        if r.has_row_crc() != self.manifest.has_row_crc() {
            return Err(Error::shard(
                &path,
                format!(
                    "the manifest is format {} but the shard {} the {CRC_COLUMN} column",
                    self.manifest.format_version,
                    if r.has_row_crc() { "has" } else { "lacks" }
                ),
            ));
        }
        if !r.has_row_crc() && !checksum {
            r.sha256 = Some((s.sha256.clone(), OnceLock::new()));
        }
        if r.len() as u64 != s.rows {
            return Err(Error::shard(&path, format!("{} rows, the manifest says {}", r.len(), s.rows)));
        }
        let classes = self.num_classes();
        if let Some(bad) = r.labels().iter().position(|&l| l < 0 || l as usize >= classes) {
            return Err(Error::shard(&path, format!("row {bad} has label {}, outside 0..{classes}", r.labels()[bad])));
        }
        Ok(r)
    }
}
