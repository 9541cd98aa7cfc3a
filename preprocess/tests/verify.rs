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
    assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    assert!(r.problems[0].contains("train-00000.parquet") && r.problems[0].contains("sha256"), "{:?}", r.problems);
    assert!(r.problems[1].contains("1 row(s) fail their CRC-32C check"), "{:?}", r.problems);
    let e = Dataset::open(&out).unwrap().split_verified(Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-00000.parquet") && e.contains("damaged"), "{e}");
}

/// B2: the row whose bytes were damaged is named when it is read (train and eval read
/// rows through this), the others read; verify names it too.
#[test]
fn a_damaged_row_is_named_when_read() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let shard = first_shard(&out);
    let mut b = std::fs::read(&shard).unwrap();
    let r = ShardReader::open(&shard, Encoding::Raw).unwrap();
    let row = 6;
    let at = r.image_unchecked(row).as_ptr() as usize - r.bytes().as_ptr() as usize + 1000;
    drop(r);
    b[at] ^= 0x10;
    std::fs::write(&shard, b).unwrap();
    let train = Dataset::open(&out).unwrap().split(Split::Train).unwrap();
    let e = train.get(row).unwrap_err().to_string();
    assert!(e.contains("train-00000.parquet: row 6: key ") && e.contains("CRC-32C"), "{e}");
    assert!(train.shards()[0].image(row).is_err());
    for ok in (0..train.len()).filter(|&i| i != row) {
        train.get(ok).unwrap();
    }
    assert_eq!(train.shards()[0].row_check(), alexnet_shared::RowCheck::Crc32c);
}

/// Format 1 datasets (no crc32c column) still read, without a rebuild: a shard is
/// checked against the manifest's sha256 the first time one of its rows is read.
#[test]
fn a_format_1_dataset_still_reads_and_is_checked_by_sha256() {
    use alexnet_shared::{ShardImages, ShardRows, ShardWriter};
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let mut m = Manifest::load(&out).unwrap();
    let w = ShardWriter::with_format(Encoding::Raw, 1);
    for split in m.splits.values_mut() {
        for s in &mut split.shards {
            let path = out.join(&s.file);
            let r = ShardReader::open(&path, Encoding::Raw).unwrap();
            let pixels: Vec<u8> = (0..r.len()).flat_map(|i| r.image(i).unwrap().to_vec()).collect();
            let keys: Vec<String> = (0..r.len()).map(|i| r.get(i).unwrap().key.to_string()).collect();
            let labels = r.labels().to_vec();
            drop(r);
            *s = w
                .write(
                    &path,
                    &ShardRows { images: ShardImages::Raw(&pixels), labels: &labels, keys: &keys, sizes: &[] },
                )
                .unwrap();
        }
    }
    m.format_version = 1;
    m.save(&out).unwrap();
    let r = verify::run(&out, 2).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    let ds = Dataset::open(&out).unwrap();
    let train = ds.split(Split::Train).unwrap();
    assert_eq!(train.shards()[0].row_check(), alexnet_shared::RowCheck::ShardSha256);
    train.get(3).unwrap();
    drop(train);
    let shard = first_shard(&out);
    let mut b = std::fs::read(&shard).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&shard, b).unwrap();
    let train = ds.split(Split::Train).unwrap();
    let e = train.get(0).unwrap_err().to_string();
    assert!(e.contains("train-00000.parquet: row 0") && e.contains("sha256"), "{e}");
}

/// B14/B3: a shard or mean image that is a FIFO, or a symlink to one, is refused by name
/// and never blocks: verify, and the reader train and eval open.
#[test]
fn fifos_in_place_of_dataset_files_are_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let mkfifo = |p: &Path| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success());
    let shard = first_shard(&out);
    std::fs::remove_file(&shard).unwrap();
    mkfifo(&shard);
    let fifo = tmp.path().join("elsewhere.fifo");
    mkfifo(&fifo);
    std::fs::remove_file(out.join("mean_image.npy")).unwrap();
    std::os::unix::fs::symlink(&fifo, out.join("mean_image.npy")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = out.clone();
    std::thread::spawn(move || {
        let r = verify::run(&dir, 2).unwrap();
        let ds = Dataset::open(&dir).unwrap();
        tx.send((
            r.problems,
            ds.split(Split::Train).unwrap_err().to_string(),
            ds.mean_image().unwrap_err().to_string(),
        ))
        .unwrap();
    });
    let (problems, split, mean) = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("must not hang");
    assert!(problems.iter().any(|p| p.contains("train-00000.parquet: is a FIFO")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("mean_image.npy: is a FIFO")), "{problems:?}");
    assert!(split.contains("train-00000.parquet: is a FIFO"), "{split}");
    assert!(mean.contains("mean_image.npy: is a FIFO"), "{mean}");
}

/// B3/B22: a manifest whose mean image points outside the dataset, or that lists a
/// shard twice, or has no val split, is refused by verify and by the reader.
#[test]
fn manifests_that_point_outside_or_repeat_a_shard_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let good = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    let m = Manifest::load(&out).unwrap();
    let mut edits: Vec<(Manifest, &str)> = Vec::new();
    let mut a = m.clone();
    a.mean_image = Some("../../../../../../etc/passwd".into());
    edits.push((a, "not a plain file name"));
    let mut b = m.clone();
    let t = b.splits.get_mut("train").unwrap();
    t.shards.push(t.shards[0].clone());
    t.rows += t.shards[0].rows;
    edits.push((b, "listed twice"));
    let mut c = m.clone();
    c.splits.remove("val");
    edits.push((c, "no val split"));
    for (bad, want) in edits {
        std::fs::write(out.join("dataset.json"), serde_json::to_string(&bad).unwrap()).unwrap();
        let r = verify::run(&out, 2).unwrap();
        assert!(r.problems.len() == 1 && r.problems[0].contains(want), "{want}: {:?}", r.problems);
        assert!(Dataset::open(&out).unwrap_err().to_string().contains(want));
    }
    std::fs::write(out.join("dataset.json"), good).unwrap();
    assert!(verify::run(&out, 2).unwrap().ok());
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
    std::fs::write(out.join("dataset.json"), text.replace("\"format_version\": 2", "\"format_version\": 5")).unwrap();
    let e = Dataset::open(&out).unwrap_err().to_string();
    assert!(e.contains("dataset.json") && e.contains("format_version 5") && e.contains("newer program"), "{e}");
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

/// B19: `preprocess verify` prints one `problem:` line per problem, then one `error:`
/// line, and exits 1 (no Rust panic report, nothing else on stderr).
#[test]
fn verify_reports_problems_as_lines_and_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = built(tmp.path());
    let shard = first_shard(&out);
    std::fs::remove_file(&shard).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&shard).status().unwrap().success());
    std::fs::write(out.join("rejects.tsv"), "path\treason\nx\ty\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_preprocess"))
        .arg("verify")
        .arg(&out)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with("problem: ") && lines[0].contains("train-00000.parquet: is a FIFO"), "{err}");
    assert!(lines[1].starts_with("problem: ") && lines[1].contains("rejects.tsv: 1 entries"), "{err}");
    assert!(lines[2].starts_with("error: ") && lines[2].contains("2 problem(s) found"), "{err}");
}
