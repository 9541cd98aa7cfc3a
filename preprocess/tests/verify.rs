//! Damaged datasets: `verify` and the shard reader name what is wrong, never panic.

use std::path::{Path, PathBuf};

use alexnet_shared::{Dataset, Encoding, Manifest, ShardReader, Split};
use preprocess::build::{self, BuildConfig};
use preprocess::inputs::InputOptions;
use preprocess::{synth, verify};

fn built(dir: &Path) -> PathBuf {
    let input = dir.join("images");
    synth::run(&synth::SynthConfig {
        output: input.clone(),
        classes: 2,
        train_per_class: 12,
        val_per_class: 3,
        corrupt: 0,
        seed: 1,
        sides: (150, 460),
        layout: synth::Layout::Folders,
    })
    .unwrap();
    let out = dir.join("ds");
    let mut cfg = BuildConfig::new(InputOptions { root: input, ..Default::default() }, out.clone());
    cfg.threads = 2;
    cfg.progress = false;
    cfg.shard_rows = 10;
    build::run(&cfg).unwrap();
    out
}

fn first_shard(out: &Path) -> PathBuf {
    out.join(&Manifest::load(out).unwrap().splits["train"].shards[0].file)
}

#[test]
fn an_intact_dataset_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let r = verify::run(&out, 2).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.shards, r.rows), (4, 30));
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.split_verified(Split::Train).unwrap().len(), 24);
}

#[test]
fn a_flipped_byte_is_a_checksum_error_naming_the_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let shard = first_shard(&out);
    let mut b = std::fs::read(&shard).unwrap();
    let mid = b.len() / 2; // inside the image pixels: the file still parses
    b[mid] ^= 1;
    std::fs::write(&shard, b).unwrap();
    let r = verify::run(&out, 2).unwrap();
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(r.problems[0].contains("train-00000.parquet") && r.problems[0].contains("sha256"), "{:?}", r.problems);
    let e = Dataset::open(&out).unwrap().split_verified(Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-00000.parquet") && e.contains("damaged"), "{e}");
}

#[test]
fn a_truncated_shard_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let shard = first_shard(&out);
    let b = std::fs::read(&shard).unwrap();
    for keep in [0, 100, b.len() / 2, b.len() - 10] {
        std::fs::write(&shard, &b[..keep]).unwrap();
        let e = ShardReader::open(&shard, Encoding::Raw).unwrap_err().to_string();
        assert!(e.contains("train-00000.parquet"), "{e}");
        let e = Dataset::open(&out).unwrap().split(Split::Train).unwrap_err().to_string();
        assert!(e.contains("train-00000.parquet"), "{e}");
        let r = verify::run(&out, 2).unwrap();
        assert!(!r.ok() && r.problems.iter().all(|p| p.contains("train-00000.parquet")), "{:?}", r.problems);
    }
}

#[test]
fn a_missing_shard_and_a_bad_manifest_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    std::fs::remove_file(first_shard(&out)).unwrap();
    let r = verify::run(&out, 2).unwrap();
    assert!(r.problems.iter().any(|p| p.contains("train-00000.parquet: missing")), "{:?}", r.problems);

    let text = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    std::fs::write(out.join("dataset.json"), text.replace("\"format_version\": 1", "\"format_version\": 2")).unwrap();
    let e = Dataset::open(&out).unwrap_err().to_string();
    assert!(e.contains("dataset.json") && e.contains("format_version 2"), "{e}");
    std::fs::write(out.join("dataset.json"), "{ not json").unwrap();
    let r = verify::run(&out, 2).unwrap();
    assert!(r.problems.len() == 1 && r.problems[0].contains("dataset.json"), "{:?}", r.problems);
}

#[test]
fn a_shard_of_the_wrong_encoding_or_layout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let e = ShardReader::open(&first_shard(&out), Encoding::Jpeg).unwrap_err().to_string();
    assert!(e.contains("image column is FIXED_LEN_BYTE_ARRAY"), "{e}");
    // A Parquet file with the right schema but a dictionary-encoded image column (what
    // a default writer makes): no zero-copy reading, a clear error.
    let path = tmp.path().join("dictionary.parquet");
    write_dictionary_shard(&path);
    let e = ShardReader::open(&path, Encoding::Jpeg).unwrap_err().to_string();
    assert!(e.contains("dictionary.parquet") && e.contains("DICTIONARY_PAGE"), "{e}");
}

fn write_dictionary_shard(path: &Path) {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, Int16Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    let image: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"abc".as_ref(), b"abc", b"abc"]));
    let label: ArrayRef = Arc::new(Int16Array::from(vec![0, 0, 0]));
    let key: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("image", arrow_schema::DataType::Binary, false),
        arrow_schema::Field::new("label", arrow_schema::DataType::Int16, false),
        arrow_schema::Field::new("key", arrow_schema::DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![image, label, key]).unwrap();
    let props = WriterProperties::builder().set_dictionary_enabled(true).build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}
