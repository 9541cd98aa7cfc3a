//! Deterministic fuzzing of the input readers (CI, stable Rust): the tar index, the zip
//! index, and the MAT-file reader behind meta.mat, over mutations of valid files made
//! with the project's own writers (synth's meta.mat, the tar and zip crates' writers).
//! No panic, no hang, no allocation past what the input's size allows. The loop is
//! shared with the shard, manifest and .npy fuzzing in `shared/tests/fuzz_support.rs`.

#[path = "../../shared/tests/fuzz_support.rs"]
mod fuzz_support;

use std::io::Write;

use fuzz_support::{fuzz, Counting};
use preprocess::archive::{devkit, tar_index, zip_index};
use preprocess::mat5;

#[global_allocator]
static ALLOC: Counting = Counting;

fn tar_corpus() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, name) in ["n01/a_0.JPEG", "n01/b_1.JPEG", "n02/c.JPEG"].iter().enumerate() {
        let data: Vec<u8> = (0..700 + 300 * i).map(|j| (j * 13 + i) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn zip_corpus() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (i, (name, method)) in [
        ("ILSVRC/Data/CLS-LOC/train/n01/a.JPEG", zip::CompressionMethod::Stored),
        ("ILSVRC/Data/CLS-LOC/val/v.JPEG", zip::CompressionMethod::Deflated),
        ("LOC_val_solution.csv", zip::CompressionMethod::Deflated),
    ]
    .iter()
    .enumerate()
    {
        let opts = zip::write::SimpleFileOptions::default().compression_method(*method);
        z.start_file(*name, opts).unwrap();
        z.write_all(&(0..500 + 200 * i).map(|j| (j % 17) as u8).collect::<Vec<_>>()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn archive_and_meta_mat_readers_survive_mutated_inputs() {
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let limit = |n: usize| 4 * n + (1 << 20);
    failures.extend(fuzz("tar", &[tar_corpus()], 2000, 1024, limit, |b| {
        tar_index::index_members(b, 0, "fuzzed.tar").is_ok()
    }));
    failures
        .extend(fuzz("zip", &[zip_corpus()], 2000, 512, limit, |b| zip_index::index_members(b, "fuzzed.zip").is_ok()));
    let meta = vec![
        preprocess::synth::archives::meta_mat(5, 1),
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meta_scipy.mat")).unwrap(),
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meta_scipy_compressed.mat")).unwrap(),
    ];
    // A compressed variable inflates to at most what its header says; the reader caps it.
    failures.extend(fuzz(
        "meta.mat",
        &meta,
        3000,
        0,
        |n| 64 * n + (4 << 20),
        |b| {
            let vars = mat5::read_variables(b).is_ok();
            let synsets = devkit::synsets(b).is_ok();
            vars || synsets
        },
    ));
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
