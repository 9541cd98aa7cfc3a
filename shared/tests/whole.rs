//! Format 3: whole-image shards (per-row sizes) written and read back, checked row by
//! row, and refused where they do not fit what the manifest says.

use alexnet_shared::{
    row_crc_sized, Encoding, Error, ShardImages, ShardKind, ShardReader, ShardRows, ShardWriter, CRC_COLUMN,
    HEIGHT_COLUMN, WIDTH_COLUMN,
};

/// Three non-square, asymmetric images: pixel (y, x) = [y, x, row index * 40 + (x + 2y) % 7].
fn images() -> (Vec<Vec<u8>>, Vec<(u16, u16)>) {
    let sizes = vec![(256u16, 341u16), (384, 256), (256, 256)];
    let imgs = sizes
        .iter()
        .enumerate()
        .map(|(i, &(h, w))| {
            let mut v = Vec::with_capacity(h as usize * w as usize * 3);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    v.extend_from_slice(&[y as u8, x as u8, (i * 40 + (x + 2 * y) % 7) as u8]);
                }
            }
            v
        })
        .collect();
    (imgs, sizes)
}

fn write(dir: &std::path::Path, encoding: Encoding, imgs: &[Vec<u8>], sizes: &[(u16, u16)]) -> std::path::PathBuf {
    let path = dir.join(format!("train-{encoding:?}.parquet"));
    let keys: Vec<String> = (0..imgs.len()).map(|i| format!("n0{i}/img_{i}.JPEG")).collect();
    let labels: Vec<i16> = (0..imgs.len() as i16).rev().collect();
    ShardWriter::whole(encoding)
        .write(&path, &ShardRows { images: ShardImages::PerRow(imgs), labels: &labels, keys: &keys, sizes })
        .unwrap();
    path
}

#[test]
fn whole_raw_shards_read_back_with_their_sizes_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (imgs, sizes) = images();
    let path = write(dir.path(), Encoding::Raw, &imgs, &sizes);
    let kind = ShardKind { encoding: Encoding::Raw, whole: Some(256) };
    let r = ShardReader::open(&path, kind).unwrap();
    assert!(r.is_whole() && r.has_row_crc());
    assert_eq!(r.len(), 3);
    for (i, (img, &(h, w))) in imgs.iter().zip(&sizes).enumerate() {
        let got = r.get(i).unwrap();
        assert_eq!((got.height, got.width), (h as usize, w as usize));
        assert_eq!(got.bytes, &img[..], "row {i}");
        assert_eq!(got.label, 2 - i as i16);
        // The bytes are a slice of the map, not a copy.
        let map = r.bytes().as_ptr_range();
        assert!(map.contains(&got.bytes.as_ptr()));
        assert_eq!(r.size(i), (h as usize, w as usize));
    }
    // A centre-square reader refuses the shard by its columns, naming them.
    let e = ShardReader::open(&path, Encoding::Raw).unwrap_err().to_string();
    assert!(e.contains("columns are") && e.contains(HEIGHT_COLUMN), "{e}");
    // pyarrow sees plain columns: check the schema's names and order.
    let schema = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    let names: Vec<String> =
        schema.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
    assert_eq!(names, ["image", "label", "key", CRC_COLUMN, HEIGHT_COLUMN, WIDTH_COLUMN]);
}

#[test]
fn the_row_check_covers_the_size_and_bad_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (imgs, sizes) = images();
    let kind = ShardKind { encoding: Encoding::Jpeg, whole: Some(256) };
    // JPEG values are opaque bytes to the reader: any bytes with their sizes.
    let path = write(dir.path(), Encoding::Jpeg, &imgs, &sizes);
    let r = ShardReader::open(&path, kind).unwrap();
    assert_eq!(r.size(0), (256, 341));
    assert_eq!(r.get(0).unwrap().bytes, &imgs[0][..]);
    // The stored CRC is over the image, label, key and size: a size swapped in the CRC
    // would not match.
    let row = r.get(1).unwrap();
    assert_ne!(
        row_crc_sized(row.bytes, row.label, row.key, Some((256, 384))),
        row_crc_sized(row.bytes, row.label, row.key, Some((384, 256)))
    );
    r.check_row(1).unwrap();

    // The width of row 0 rewritten in the file (its CRC kept): that row fails its check,
    // by shard and row; the others still read.
    let damaged = dir.path().join("damaged.parquet");
    rewrite_width(&path, &damaged, 0, 340);
    let r = ShardReader::open(&damaged, kind).unwrap();
    assert_eq!(r.size(0), (256, 340));
    let e = r.get(0).map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Damaged { row: 0, .. }), "{e}");
    assert!(e.to_string().contains("damaged.parquet"), "{e}");
    r.check_row(1).unwrap();

    // Raw pixels that do not match their size are refused by the writer.
    let keys = vec!["a".to_string()];
    let bad = ShardWriter::whole(Encoding::Raw).write(
        &dir.path().join("bad.parquet"),
        &ShardRows { images: ShardImages::PerRow(&imgs[..1]), labels: &[0], keys: &keys, sizes: &[(256, 340)] },
    );
    assert!(bad.unwrap_err().to_string().contains("do not match its height and width"));
    // A whole-image writer needs one size per row; a centre-square writer takes none.
    let none = ShardWriter::whole(Encoding::Jpeg).write(
        &dir.path().join("bad2.parquet"),
        &ShardRows { images: ShardImages::PerRow(&imgs[..1]), labels: &[0], keys: &keys, sizes: &[] },
    );
    assert!(none.unwrap_err().to_string().contains("0 sizes for 1 rows"));
    // An image larger than 16 x image_size^2 pixels is refused at open.
    let small = ShardKind { encoding: Encoding::Raw, whole: Some(64) };
    let raw = write(dir.path(), Encoding::Raw, &imgs, &sizes);
    let e = ShardReader::open(&raw, small).unwrap_err().to_string();
    assert!(e.contains("row 0: an image of 256x341"), "{e}");
}

/// Copies shard `src` to `dst` with `width` of `row` replaced, everything else (the CRC
/// column included) as it was, in the layout the reader needs (PLAIN, uncompressed).
fn rewrite_width(src: &std::path::Path, dst: &std::path::Path, row: usize, width: u16) {
    use arrow_array::{Array, RecordBatch, UInt16Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(src).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let w = b.column(5).as_any().downcast_ref::<UInt16Array>().unwrap();
    let mut v: Vec<u16> = w.values().to_vec();
    v[row] = width;
    let mut cols = b.columns().to_vec();
    cols[5] = std::sync::Arc::new(UInt16Array::from(v));
    let out = RecordBatch::try_new(b.schema(), cols).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_1_0)
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .build();
    let f = std::fs::File::create(dst).unwrap();
    let mut wr = parquet::arrow::ArrowWriter::try_new(f, out.schema(), Some(props)).unwrap();
    wr.write(&out).unwrap();
    wr.close().unwrap();
}
