//! Zero-copy reading of shards: each shard is memory-mapped read-only, and every
//! image's byte range in the map is indexed once, at open, from the Parquet metadata
//! and page headers. `get(row)` then returns a slice of the map: no decode, no copy.
//!
//! Shards belong on a local disk and must not change while mapped: a file truncated
//! or rewritten under a live map makes the process die with SIGBUS. `preprocess`
//! never rewrites a finished shard in place (it writes a new file and renames).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, Int16Array, StringArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, Encoding as PqEncoding, Repetition, Type as PhysicalType};
use parquet::column::page::Page;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{Error, Result};
use crate::fsutil::sha256_file;
use crate::manifest::{Encoding, Manifest, ShardEntry};
use crate::{Split, IMAGE_BYTES};

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
    fn open(path: &Path) -> Result<Bytes> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: see the type's contract above: shard files are immutable once written.
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Bytes::from_owner(map))
    }
}

/// One image of a shard, borrowed from the map.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    /// Raw: 196608 bytes, 256x256x3 HWC RGB. JPEG: the encoded file.
    pub bytes: &'a [u8],
    pub label: i16,
    pub key: &'a str,
}

/// A memory-mapped shard with its row index.
pub struct ShardReader {
    path: PathBuf,
    map: Bytes,
    /// Byte offset and length of each row's image in `map`.
    spans: Vec<(usize, u32)>,
    labels: Vec<i16>,
    keys: StringArray,
    encoding: Encoding,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader").field("path", &self.path).field("rows", &self.len()).finish()
    }
}

impl ShardReader {
    /// Maps `path` and indexes its rows. Checks the schema and the physical layout of
    /// the `image` column; an unusable file is an error that names it.
    pub fn open(path: &Path, encoding: Encoding) -> Result<Self> {
        let map = ShardMap::open(path)?;
        let bad = |m: String| Error::shard(path, m);
        let reader =
            SerializedFileReader::new(map.clone()).map_err(|e| bad(format!("cannot read the Parquet footer ({e})")))?;
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        if names != ["image", "label", "key"] {
            return Err(bad(format!("columns are {names:?}, expected [\"image\", \"label\", \"key\"]")));
        }
        let col = schema.column(0);
        let (want_type, want_len) = match encoding {
            Encoding::Raw => (PhysicalType::FIXED_LEN_BYTE_ARRAY, IMAGE_BYTES as i32),
            Encoding::Jpeg => (PhysicalType::BYTE_ARRAY, -1),
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
                match encoding {
                    Encoding::Raw => {
                        if buf.len() != n * IMAGE_BYTES {
                            return Err(bad(format!("row group {rg}: a page of {n} images holds {} bytes", buf.len())));
                        }
                        spans.extend((0..n).map(|i| (start + i * IMAGE_BYTES, IMAGE_BYTES as u32)));
                    }
                    Encoding::Jpeg => {
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

        // Labels and keys are small: read them with the Arrow reader (a copy).
        let builder = ParquetRecordBatchReaderBuilder::try_new(map.clone()).map_err(|e| bad(e.to_string()))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [1, 2]);
        let batches = builder.with_projection(mask).with_batch_size(8192).build().map_err(|e| bad(e.to_string()))?;
        let mut labels = Vec::with_capacity(rows_cap);
        let mut keys: Vec<StringArray> = Vec::new();
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
        }
        let refs: Vec<&dyn Array> = keys.iter().map(|k| k as &dyn Array).collect();
        let keys = concat_strings(&refs).map_err(|e| bad(e.to_string()))?;
        if labels.len() != rows || keys.len() != rows {
            return Err(bad(format!("{} labels and {} keys for {rows} rows", labels.len(), keys.len())));
        }
        Ok(Self { path: path.to_path_buf(), map, spans, labels, keys, encoding })
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

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub fn labels(&self) -> &[i16] {
        &self.labels
    }

    /// The image bytes of `row`, a slice of the memory map.
    pub fn image(&self, row: usize) -> &[u8] {
        let (off, len) = self.spans[row];
        &self.map[off..off + len as usize]
    }

    pub fn get(&self, row: usize) -> Result<ImageRef<'_>> {
        if row >= self.len() {
            return Err(Error::RowOutOfRange { split: self.path.display().to_string(), row, rows: self.len() });
        }
        Ok(ImageRef { bytes: self.image(row), label: self.labels[row], key: self.keys.value(row) })
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
        if checksum {
            let actual = sha256_file(&path)?;
            if actual != s.sha256 {
                return Err(Error::Checksum { path, expected: s.sha256.clone(), actual });
            }
        }
        let r = ShardReader::open(&path, self.manifest.encoding)?;
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
