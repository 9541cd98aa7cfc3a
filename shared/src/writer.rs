//! Writes one shard: a Parquet file whose `image` column can be read straight out of a
//! memory map (see [`crate::ShardReader`]).
//!
//! Physical layout, fixed by the format: `image` is non-nullable, uncompressed, PLAIN
//! encoded with no dictionary and no statistics, in data pages v1 (writer version 1.0:
//! version 2.0 falls back to DELTA encodings for byte arrays); the offset index (page
//! index) is kept; row groups hold at most [`ROW_GROUP_ROWS`] rows, which bounds what
//! the writer buffers. The file is written to a temporary name, fsynced and renamed,
//! and its sha256 is computed on the way out. The same rows give the same bytes.
//!
//! Format 2 adds a fourth column, `crc32c` (uint32, non-nullable): the CRC-32C of each
//! row (see [`crate::row_crc`]), which readers check whenever they read the row.
//!
//! Format 3's whole-image shards ([`ShardWriter::whole`]) hold one value of its own size
//! per row in `image` (binary: the JPEG, or the raw HWC pixels), and two more columns,
//! `height` and `width` (uint16, non-nullable), which the row's CRC-32C also covers.
//!
//! Format 4's mixed shards ([`Encoding::Mixed`], centre squares or whole images) hold
//! a binary `image` column whose value is, row by row, the raw HWC pixels or a JPEG, and
//! a last column `raw` (boolean, non-nullable) saying which; the CRC-32C covers it too.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, FixedSizeBinaryArray, Int16Array, RecordBatch, StringArray};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding as PqEncoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::fsutil::{commit, tmp_path, HashingWriter};
use crate::manifest::{Encoding, ShardEntry, ShardKind};
use crate::reader::row_crc_full;
use crate::{Split, IMAGE_BYTES};

/// Rows per row group: 128 raw images are 25 MB, the most the writer buffers.
pub const ROW_GROUP_ROWS: usize = 128;
/// Data pages close after about 1 MiB (checked every 4 rows), so a raw page holds 8 images.
const DATA_PAGE_BYTES: usize = 1 << 20;
const WRITE_BATCH_ROWS: usize = 4;

/// `train-00012.parquet`.
pub fn shard_file_name(split: Split, index: usize) -> String {
    format!("{}-{index:05}.parquet", split.name())
}

/// The rows of one shard, in order.
pub struct ShardRows<'a> {
    pub images: ShardImages<'a>,
    pub labels: &'a [i16],
    pub keys: &'a [String],
    /// (height, width) of each row: whole images only (empty for centre squares).
    pub sizes: &'a [(u16, u16)],
}

pub enum ShardImages<'a> {
    /// Raw centre squares: `n * 196608` bytes of 256x256x3 HWC images.
    Raw(&'a [u8]),
    /// One value per row: a JPEG, or (raw whole images) `height * width * 3` HWC bytes.
    PerRow(&'a [Vec<u8>]),
    /// Mixed shards (format 4): one value per row, raw HWC pixels where `raw` says so
    /// (256x256x3 for centre squares, `height * width * 3` for whole images), else a JPEG.
    Mixed { images: &'a [Vec<u8>], raw: &'a [bool] },
}

impl ShardRows<'_> {
    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Writes shards of one encoding.
#[derive(Debug, Clone)]
pub struct ShardWriter {
    encoding: Encoding,
    /// Whether rows carry the `crc32c` column (format 2 and later).
    row_crc: bool,
    /// Whether rows are whole images with `height` and `width` columns (format 3).
    whole: bool,
    schema: Arc<Schema>,
    props: WriterProperties,
}

impl ShardWriter {
    /// A writer of centre-square shards (format 2).
    pub fn new(encoding: Encoding) -> Self {
        Self::with_format(encoding, 2)
    }

    /// A writer of whole-image shards (format 3).
    pub fn whole(encoding: Encoding) -> Self {
        Self::build(encoding, true, true)
    }

    /// A writer of the shards `kind` describes (centre squares: format 2).
    pub fn for_kind(kind: ShardKind) -> Self {
        Self::build(kind.encoding, true, kind.whole.is_some())
    }

    /// A writer of `format_version`'s centre-square shards: 1 (no `crc32c` column) is
    /// kept to test that datasets built before the per-row check still read.
    pub fn with_format(encoding: Encoding, format_version: u32) -> Self {
        Self::build(encoding, format_version >= 2, false)
    }

    fn build(encoding: Encoding, row_crc: bool, whole: bool) -> Self {
        let image_type = match encoding {
            Encoding::Raw if !whole => DataType::FixedSizeBinary(IMAGE_BYTES as i32),
            _ => DataType::Binary,
        };
        let mut fields = vec![
            Field::new("image", image_type, false),
            Field::new("label", DataType::Int16, false),
            Field::new("key", DataType::Utf8, false),
        ];
        if row_crc {
            fields.push(Field::new(crate::reader::CRC_COLUMN, DataType::UInt32, false));
        }
        if whole {
            fields.push(Field::new(crate::reader::HEIGHT_COLUMN, DataType::UInt16, false));
            fields.push(Field::new(crate::reader::WIDTH_COLUMN, DataType::UInt16, false));
        }
        if encoding == Encoding::Mixed {
            fields.push(Field::new(crate::reader::RAW_COLUMN, DataType::Boolean, false));
        }
        let schema = Arc::new(Schema::new(fields));
        let image = ColumnPath::from("image");
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::UNCOMPRESSED)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_write_batch_size(WRITE_BATCH_ROWS)
            .set_data_page_size_limit(DATA_PAGE_BYTES)
            .set_column_dictionary_enabled(image.clone(), false)
            .set_column_encoding(image.clone(), PqEncoding::PLAIN)
            .set_column_statistics_enabled(image, EnabledStatistics::None)
            .set_offset_index_disabled(false)
            .build();
        Self { encoding, row_crc, whole, schema, props }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Writes `rows` to `path` (temporary name, fsync, rename) and returns its entry.
    pub fn write(&self, path: &Path, rows: &ShardRows<'_>) -> Result<ShardEntry> {
        let n = rows.len();
        if self.encoding == Encoding::Mixed && !self.row_crc {
            return Err(Error::Invalid("mixed shards (format 4) carry the crc32c column: no format 1 writer".into()));
        }
        if rows.keys.len() != n {
            return Err(Error::Invalid(format!("{} labels but {} keys", n, rows.keys.len())));
        }
        match (&rows.images, self.encoding, self.whole) {
            (ShardImages::Raw(b), Encoding::Raw, false) if b.len() == n * IMAGE_BYTES => {}
            (ShardImages::PerRow(v), Encoding::Jpeg, _) | (ShardImages::PerRow(v), Encoding::Raw, true)
                if v.len() == n => {}
            (ShardImages::Mixed { images, raw }, Encoding::Mixed, _) if images.len() == n && raw.len() == n => {}
            _ => return Err(Error::Invalid("shard rows do not match the writer's encoding or row count".into())),
        }
        let sizes_ok = if self.whole { rows.sizes.len() == n } else { rows.sizes.is_empty() };
        if !sizes_ok {
            return Err(Error::Invalid(format!(
                "{} sizes for {n} rows: whole-image shards need one (height, width) per row, centre squares none",
                rows.sizes.len()
            )));
        }
        if self.whole && self.encoding == Encoding::Raw {
            if let Some(i) = (0..n).find(|&i| {
                let (h, w) = rows.sizes[i];
                let ShardImages::PerRow(v) = &rows.images else { return true };
                v[i].len() != h as usize * w as usize * 3
            }) {
                return Err(Error::Invalid(format!("row {i}: raw pixels do not match its height and width")));
            }
        }
        if let ShardImages::Mixed { images, raw } = &rows.images {
            let raw_len = |i: usize| match rows.sizes.get(i) {
                Some(&(h, w)) => h as usize * w as usize * 3,
                None => IMAGE_BYTES,
            };
            if let Some(i) = (0..n).find(|&i| raw[i] && images[i].len() != raw_len(i)) {
                return Err(Error::Invalid(format!(
                    "row {i}: raw pixels of {} bytes, expected {}",
                    images[i].len(),
                    raw_len(i)
                )));
            }
        }
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let mut w = ArrowWriter::try_new(sink, self.schema.clone(), Some(self.props.clone()))
            .map_err(|e| Error::parquet(&tmp, e))?;
        let mut start = 0;
        while start < n {
            let end = (start + ROW_GROUP_ROWS).min(n);
            let batch = self.batch(rows, start, end).map_err(|e| Error::parquet(&tmp, e))?;
            w.write(&batch).map_err(|e| Error::parquet(&tmp, e))?;
            start = end;
        }
        let sink = w.into_inner().map_err(|e| Error::parquet(&tmp, e))?;
        let (buf, sha256, _) = sink.finish();
        let file = buf.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        commit(&tmp, path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(ShardEntry { file: name, rows: n as u64, sha256 })
    }

    fn batch(
        &self,
        rows: &ShardRows<'_>,
        start: usize,
        end: usize,
    ) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        let image: ArrayRef = match &rows.images {
            ShardImages::Raw(b) => Arc::new(FixedSizeBinaryArray::try_new(
                IMAGE_BYTES as i32,
                Buffer::from(&b[start * IMAGE_BYTES..end * IMAGE_BYTES]),
                None,
            )?),
            ShardImages::PerRow(v) | ShardImages::Mixed { images: v, .. } => {
                Arc::new(BinaryArray::from_iter_values(v[start..end].iter()))
            }
        };
        let raw = match &rows.images {
            ShardImages::Mixed { raw, .. } => Some(&raw[start..end]),
            _ => None,
        };
        let label: ArrayRef = Arc::new(Int16Array::from(rows.labels[start..end].to_vec()));
        let key: ArrayRef = Arc::new(StringArray::from_iter_values(rows.keys[start..end].iter()));
        let mut columns = vec![image, label, key];
        if self.row_crc {
            let crcs: Vec<u32> = (start..end)
                .map(|i| {
                    let img = match &rows.images {
                        ShardImages::Raw(b) => &b[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES],
                        ShardImages::PerRow(v) | ShardImages::Mixed { images: v, .. } => &v[i][..],
                    };
                    let raw = raw.map(|r| r[i - start]);
                    row_crc_full(img, rows.labels[i], &rows.keys[i], rows.sizes.get(i).copied(), raw)
                })
                .collect();
            columns.push(Arc::new(arrow_array::UInt32Array::from(crcs)));
        }
        if self.whole {
            let sizes = &rows.sizes[start..end];
            columns.push(Arc::new(arrow_array::UInt16Array::from_iter_values(sizes.iter().map(|s| s.0))));
            columns.push(Arc::new(arrow_array::UInt16Array::from_iter_values(sizes.iter().map(|s| s.1))));
        }
        if let Some(raw) = raw {
            columns.push(Arc::new(arrow_array::BooleanArray::from(raw.to_vec())));
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}
