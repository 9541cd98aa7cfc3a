//! `preprocess synth --layout cifar`: the procedural classes at 32x32 in CIFAR-10's
//! binary format ([`crate::archive::cifar`]): `cifar-10-binary.tar.gz` holding
//! `cifar-10-batches-bin/data_batch_1..5.bin` (the train images dealt over the five
//! batches, classes interleaved as CIFAR's are), `test_batch.bin` (the val images) and
//! `batches.meta.txt`: what the tests read instead of the real 163 MB download.

use std::io::Write;

use anyhow::{ensure, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{class_name, draw, SynthConfig};
use crate::archive::cifar::{ARCHIVE, FOLDER, META, PIXELS, SIDE, TEST_BATCH, TRAIN_BATCHES};

/// The record of one image: label, then the R, G and B planes of the HWC `pixels`.
pub fn record(label: u8, hwc: &[u8]) -> Vec<u8> {
    let plane = SIDE * SIDE;
    let mut r = Vec::with_capacity(1 + PIXELS);
    r.push(label);
    for c in 0..3 {
        r.extend((0..plane).map(|p| hwc[p * 3 + c]));
    }
    r
}

/// Image `i` of `class` (32x32 HWC), a function of the seed.
pub fn image(cfg: &SynthConfig, class: usize, i: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (0xc1fa_0000 + i as u64));
    draw(class, (SIDE as u32, SIDE as u32), &mut rng).into_raw()
}

/// The labels of the train records (`train_per_class` per class, interleaved) and of
/// the test records.
pub fn labels(cfg: &SynthConfig) -> (Vec<u8>, Vec<u8>) {
    let deal = |per: usize| (0..per * cfg.classes).map(|i| (i % cfg.classes) as u8).collect();
    (deal(cfg.train_per_class), deal(cfg.val_per_class))
}

fn append(b: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_234_567_890);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, format!("{FOLDER}/{name}"), bytes).with_context(|| format!("writing {name}"))
}

/// Writes `cfg.output/cifar-10-binary.tar.gz`: its path.
pub fn write(cfg: &SynthConfig) -> Result<std::path::PathBuf> {
    ensure!(cfg.classes <= 256, "--layout cifar holds at most 256 classes (one label byte)");
    std::fs::create_dir_all(&cfg.output).with_context(|| format!("creating {}", cfg.output.display()))?;
    let (train, test) = labels(cfg);
    let mut batches = vec![Vec::new(); TRAIN_BATCHES.len()];
    for (i, &l) in train.iter().enumerate() {
        batches[i * TRAIN_BATCHES.len() / train.len()].extend(record(l, &image(cfg, l as usize, i)));
    }
    let test_bytes: Vec<u8> =
        test.iter().enumerate().flat_map(|(i, &l)| record(l, &image(cfg, l as usize, train.len() + i))).collect();
    let path = cfg.output.join(ARCHIVE);
    let tmp = cfg.output.join(format!(".{ARCHIVE}.tmp"));
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let meta: String = (0..cfg.classes).map(|c| format!("{}\n", class_name(c))).collect();
    append(&mut b, META, meta.as_bytes())?;
    for (name, bytes) in TRAIN_BATCHES.iter().zip(&batches) {
        append(&mut b, name, bytes)?;
    }
    append(&mut b, TEST_BATCH, &test_bytes)?;
    let gz = b.into_inner().context("finishing the tar")?;
    let file = gz.finish().context("finishing the gzip stream")?;
    let file = file.into_inner().map_err(|e| e.into_error()).context("flushing the archive")?;
    file.sync_all().with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}
