//! Deterministic fuzzing of the dataset readers (CI, stable Rust): the manifest, the
//! `.npy` mean image and the shard reader (Parquet footer, page headers, columns), each
//! over mutations of valid files written by this crate's own writers. No panic, no
//! hang, no allocation past what the input's size allows. See `fuzz_support.rs`;
//! `FUZZ_SEED=N cargo test -p alexnet-shared --test fuzz` replays one case.

#[path = "fuzz_support.rs"]
mod fuzz_support;

use std::path::Path;

use alexnet_shared::{
    parse_mean_image, write_mean_image, Encoding, Manifest, ShardImages, ShardReader, ShardRows, ShardWriter,
    IMAGE_BYTES,
};
use fuzz_support::{fuzz, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

fn shard(dir: &Path, encoding: Encoding, version: u32, rows: usize) -> Vec<u8> {
    let path = dir.join(format!("s-{encoding:?}-{version}-{rows}.parquet"));
    let labels: Vec<i16> = (0..rows as i16).collect();
    let keys: Vec<String> = (0..rows).map(|i| format!("n0{i}/img_{i}.JPEG")).collect();
    let raw: Vec<u8> = (0..rows * IMAGE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let jpegs: Vec<Vec<u8>> = (0..rows).map(|i| (0..300 + 40 * i).map(|j| (j * 7 + i) as u8).collect()).collect();
    // Mixed: every other row raw.
    let mixed: Vec<Vec<u8>> = (0..rows)
        .map(|i| if i % 2 == 0 { raw[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES].to_vec() } else { jpegs[i].clone() })
        .collect();
    let flags: Vec<bool> = (0..rows).map(|i| i % 2 == 0).collect();
    let images = match encoding {
        Encoding::Raw => ShardImages::Raw(&raw),
        Encoding::Jpeg => ShardImages::PerRow(&jpegs),
        Encoding::Mixed => ShardImages::Mixed { images: &mixed, raw: &flags },
    };
    ShardWriter::with_format(encoding, version)
        .write(&path, &ShardRows { images, labels: &labels, keys: &keys, sizes: &[] })
        .unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn readers_survive_mutated_inputs() {
    std::panic::set_hook(Box::new(|_| {}));
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();

    let m = Manifest::example();
    let corpus = vec![serde_json::to_vec_pretty(&m).unwrap(), serde_json::to_vec(&m).unwrap()];
    failures.extend(fuzz("manifest", &corpus, 3000, 0, |n| 64 * n + (1 << 16), |b| Manifest::parse(b).is_ok()));

    let p = dir.path().join("mean.npy");
    write_mean_image(&p, &(0..IMAGE_BYTES).map(|i| (i % 256) as f32).collect::<Vec<_>>()).unwrap();
    let corpus = vec![std::fs::read(&p).unwrap()];
    // The values are decoded into one Vec of the array's size, never more.
    failures.extend(fuzz("npy", &corpus, 300, 256, |n| 2 * n + (1 << 16), |b| parse_mean_image(b).is_ok()));

    let corpus_jpeg = vec![
        shard(dir.path(), Encoding::Jpeg, 2, 5),
        shard(dir.path(), Encoding::Jpeg, 1, 3),
        shard(dir.path(), Encoding::Jpeg, 2, 1),
    ];
    let corpus_raw = vec![shard(dir.path(), Encoding::Raw, 2, 2)];
    let corpus_mixed = vec![shard(dir.path(), Encoding::Mixed, 2, 3)];
    let path = Path::new("fuzzed.parquet");
    for (name, corpus, encoding, cases) in [
        ("shard-jpeg", &corpus_jpeg, Encoding::Jpeg, 1500),
        ("shard-raw", &corpus_raw, Encoding::Raw, 150),
        ("shard-mixed", &corpus_mixed, Encoding::Mixed, 150),
    ] {
        failures.extend(fuzz(
            name,
            corpus,
            cases,
            2048,
            |n| 2 * n + (4 << 20),
            |b| {
                match ShardReader::from_bytes(path, bytes::Bytes::copy_from_slice(b), encoding) {
                    Ok(r) => {
                        // Reading every row (and its check) must not panic either.
                        (0..r.len()).for_each(|i| drop(r.get(i)));
                        true
                    }
                    Err(e) => {
                        assert!(e.to_string().contains("fuzzed.parquet"), "unnamed error: {e}");
                        false
                    }
                }
            },
        ));
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
