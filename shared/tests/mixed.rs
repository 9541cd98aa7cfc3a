//! Format 4: mixed shards (each row raw pixels or a JPEG, as its `raw` column says)
//! written and read back, checked row by row, and refused where they do not fit.

use alexnet_shared::{
    row_crc_full, Encoding, Error, ShardImages, ShardKind, ShardReader, ShardRows, ShardWriter, CRC_COLUMN,
    HEIGHT_COLUMN, IMAGE_BYTES, RAW_COLUMN, WIDTH_COLUMN,
};

/// An asymmetric 256x256 image: pixel (y, x) = [y, x, seed + (x + 2y) % 7].
fn square(seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(IMAGE_BYTES);
    for y in 0..256usize {
        for x in 0..256usize {
            v.extend_from_slice(&[y as u8, x as u8, seed.wrapping_add(((x + 2 * y) % 7) as u8)]);
        }
    }
    v
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("n0{i}/img_{i}.JPEG")).collect()
}

/// Rows 0 and 3 raw, 1 and 2 "JPEG" (opaque bytes to the reader).
fn rows() -> (Vec<Vec<u8>>, Vec<bool>) {
    let imgs = vec![square(0), vec![0xff, 0xd8, 1, 2, 3], [vec![0xff, 0xd8], vec![9; 1000]].concat(), square(40)];
    (imgs, vec![true, false, false, true])
}

#[test]
fn mixed_centre_square_shards_read_back_row_by_row_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (imgs, raw) = rows();
    let (labels, keys) = ([3i16, 0, 1, 2], keys(4));
    let path = dir.path().join("train-00000.parquet");
    ShardWriter::new(Encoding::Mixed)
        .write(
            &path,
            &ShardRows {
                images: ShardImages::Mixed { images: &imgs, raw: &raw },
                labels: &labels,
                keys: &keys,
                sizes: &[],
            },
        )
        .unwrap();
    let r = ShardReader::open(&path, Encoding::Mixed).unwrap();
    assert_eq!((r.len(), r.raw_rows(), r.encoding()), (4, 2, Encoding::Mixed));
    for i in 0..4 {
        let got = r.get(i).unwrap();
        assert_eq!(got.bytes, &imgs[i][..], "row {i}");
        assert_eq!((got.jpeg, r.is_jpeg(i)), (!raw[i], !raw[i]), "row {i}");
        assert_eq!((got.label, got.key, got.height, got.width), (labels[i], keys[i].as_str(), 256, 256));
        assert!(r.bytes().as_ptr_range().contains(&got.bytes.as_ptr()), "row {i} is a slice of the map");
    }
    // The schema: the centre-square columns, then `raw`.
    use parquet::file::reader::FileReader;
    let pq = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let names: Vec<String> =
        pq.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
    assert_eq!(names, ["image", "label", "key", CRC_COLUMN, RAW_COLUMN]);
    // The CRC covers the flag: the same bytes called raw or JPEG give other checks.
    assert_ne!(
        row_crc_full(&imgs[0], 3, &keys[0], None, Some(true)),
        row_crc_full(&imgs[0], 3, &keys[0], None, Some(false))
    );
    // Readers that expect another encoding refuse the shard by its columns.
    for other in [Encoding::Jpeg, Encoding::Raw] {
        let e = ShardReader::open(&path, other).unwrap_err().to_string();
        assert!(e.contains("train-00000.parquet") && e.contains("columns are"), "{other:?}: {e}");
    }
    // And a mixed reader refuses a plain JPEG shard the same way.
    let jpeg = dir.path().join("jpeg.parquet");
    ShardWriter::new(Encoding::Jpeg)
        .write(
            &jpeg,
            &ShardRows { images: ShardImages::PerRow(&imgs[1..3]), labels: &[0, 1], keys: &keys[..2], sizes: &[] },
        )
        .unwrap();
    let e = ShardReader::open(&jpeg, Encoding::Mixed).unwrap_err().to_string();
    assert!(e.contains("format 4, mixed"), "{e}");
}

#[test]
fn a_flipped_raw_flag_is_damage_and_raw_rows_must_be_whole_images() {
    let dir = tempfile::tempdir().unwrap();
    let (imgs, raw) = rows();
    let keys = keys(4);
    let labels = [0i16, 1, 0, 1];
    let path = dir.path().join("train-00001.parquet");
    let write = |path: &std::path::Path, raw: &[bool]| {
        ShardWriter::new(Encoding::Mixed).write(
            path,
            &ShardRows { images: ShardImages::Mixed { images: &imgs, raw }, labels: &labels, keys: &keys, sizes: &[] },
        )
    };
    write(&path, &raw).unwrap();
    // A row called raw whose bytes are not a 256x256x3 image is refused by the writer.
    let e = write(&dir.path().join("bad.parquet"), &[true, true, false, true]).unwrap_err().to_string();
    assert!(e.contains("row 1: raw pixels of 5 bytes, expected 196608"), "{e}");

    // Row 3's flag rewritten to "JPEG" in the file (its CRC kept): that row fails its
    // check by shard and row, the others still read.
    let damaged = dir.path().join("damaged.parquet");
    rewrite_raw(&path, &damaged, 3, false);
    let r = ShardReader::open(&damaged, Encoding::Mixed).unwrap();
    assert!(r.is_jpeg(3));
    let e = r.get(3).map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Damaged { row: 3, .. }), "{e}");
    assert!(e.to_string().contains("damaged.parquet"), "{e}");
    for i in 0..3 {
        r.check_row(i).unwrap();
    }
    // A JPEG row flagged raw is refused at open: its bytes cannot be the pixels.
    let flagged = dir.path().join("flagged.parquet");
    rewrite_raw(&path, &flagged, 1, true);
    let e = ShardReader::open(&flagged, Encoding::Mixed).unwrap_err().to_string();
    assert!(e.contains("row 1: 5 bytes of raw pixels, expected 196608") && e.contains("flagged.parquet"), "{e}");
}

#[test]
fn mixed_whole_image_shards_carry_sizes_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    // A raw 3x5 image (asymmetric) and a "JPEG" of a 256x300 one.
    let px: Vec<u8> = (0..3 * 5 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let imgs = vec![px.clone(), vec![0xff, 0xd8, 7, 7]];
    let (raw, sizes) = ([true, false], [(3u16, 5u16), (256, 300)]);
    let path = dir.path().join("train-00002.parquet");
    let keys = keys(2);
    ShardWriter::for_kind(ShardKind { encoding: Encoding::Mixed, whole: Some(256) })
        .write(
            &path,
            &ShardRows {
                images: ShardImages::Mixed { images: &imgs, raw: &raw },
                labels: &[1, 0],
                keys: &keys,
                sizes: &sizes,
            },
        )
        .unwrap();
    let r = ShardReader::open(&path, ShardKind { encoding: Encoding::Mixed, whole: Some(256) }).unwrap();
    assert!(r.is_whole());
    let a = r.get(0).unwrap();
    assert_eq!((a.bytes, a.jpeg, a.height, a.width), (&px[..], false, 3, 5));
    let b = r.get(1).unwrap();
    assert_eq!((b.bytes, b.jpeg, b.height, b.width), (&imgs[1][..], true, 256, 300));
    use parquet::file::reader::FileReader;
    let pq = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let names: Vec<String> =
        pq.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
    assert_eq!(names, ["image", "label", "key", CRC_COLUMN, HEIGHT_COLUMN, WIDTH_COLUMN, RAW_COLUMN]);
    // Raw pixels must match the row's size.
    let e = ShardWriter::for_kind(ShardKind { encoding: Encoding::Mixed, whole: Some(256) })
        .write(
            &dir.path().join("bad.parquet"),
            &ShardRows {
                images: ShardImages::Mixed { images: &imgs, raw: &raw },
                labels: &[1, 0],
                keys: &keys,
                sizes: &[(4, 3), (256, 300)],
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 0"), "{e}");
}

/// Copies shard `src` to `dst` with the `raw` flag of `row` replaced, everything else
/// (the CRC column included) as it was, in the layout the reader needs.
fn rewrite_raw(src: &std::path::Path, dst: &std::path::Path, row: usize, value: bool) {
    use arrow_array::{Array, BooleanArray, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(src).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let last = b.num_columns() - 1;
    let flags = b.column(last).as_any().downcast_ref::<BooleanArray>().unwrap();
    let mut v: Vec<bool> = flags.values().iter().collect();
    v[row] = value;
    let mut cols = b.columns().to_vec();
    cols[last] = std::sync::Arc::new(BooleanArray::from(v));
    let out = RecordBatch::try_new(b.schema(), cols).unwrap();
    let image = parquet::schema::types::ColumnPath::from("image");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_1_0)
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_column_encoding(image, parquet::basic::Encoding::PLAIN)
        .build();
    let f = std::fs::File::create(dst).unwrap();
    let mut wr = parquet::arrow::ArrowWriter::try_new(f, out.schema(), Some(props)).unwrap();
    wr.write(&out).unwrap();
    wr.close().unwrap();
}
