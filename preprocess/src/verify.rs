//! `preprocess verify DIR`: checks a built dataset and names every problem: the
//! manifest, each shard's presence, sha256, schema, physical layout (uncompressed, PLAIN,
//! no dictionary, no statistics and an offset index on `image`), row counts and labels,
//! every row's CRC-32C (format 2), the mean image, the statistics and `rejects.tsv`. Only
//! regular files are read (a FIFO or a device in place of a file is a problem, never a
//! hang).

use std::path::{Path, PathBuf};

use alexnet_shared::{
    max_shard_bytes, open_regular, read_mean_image, read_regular, Manifest, ShardReader, MANIFEST_FILE, REJECTS_FILE,
};
use parquet::basic::{Compression, Encoding as PqEncoding};
use parquet::file::reader::{FileReader, SerializedFileReader};
use rayon::prelude::*;

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub dir: PathBuf,
    pub shards: usize,
    pub rows: u64,
    pub bytes: u64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn run(dir: &Path, threads: usize) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport { dir: dir.to_path_buf(), ..Default::default() };
    let manifest = match Manifest::load(dir) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(format!("{MANIFEST_FILE}: {e}"));
            return Ok(report);
        }
    };
    let shards: Vec<(String, alexnet_shared::ShardEntry)> = manifest
        .splits
        .iter()
        .flat_map(|(split, e)| e.shards.iter().map(move |s| (split.clone(), s.clone())))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
    let results: Vec<(Vec<String>, u64)> =
        pool.install(|| shards.par_iter().map(|(split, s)| check_shard(dir, &manifest, split, s)).collect());
    for (problems, bytes) in results {
        report.problems.extend(problems);
        report.bytes += bytes;
    }
    report.shards = shards.len();
    report.rows = manifest.splits.values().map(|s| s.rows).sum();

    // Mean image (centre-square datasets; the manifest check refuses one elsewhere).
    if let Some(name) = &manifest.mean_image {
        match read_mean_image(&dir.join(name)) {
            Ok(m) => {
                drop(m); // its values are checked by the reader
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }

    // Statistics.
    let st = &manifest.stats;
    for c in 0..3 {
        if !(0.0..=255.0).contains(&st.mean_rgb[c]) || !(0.0..=128.0).contains(&st.std_rgb[c]) {
            report.problems.push(format!("stats: mean_rgb {:?} / std_rgb {:?} out of range", st.mean_rgb, st.std_rgb));
            break;
        }
    }
    let ev = &st.pca.eigenvalues;
    if !(ev[0] >= ev[1] && ev[1] >= ev[2] && ev[2] >= 0.0) {
        report.problems.push(format!("stats: eigenvalues {ev:?} are not descending and non-negative"));
    }
    let vecs = &st.pca.eigenvectors;
    for i in 0..3 {
        for j in 0..3 {
            let dot: f64 = (0..3).map(|k| vecs[i][k] * vecs[j][k]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            if (dot - want).abs() > 1e-6 {
                report.problems.push(format!("stats: eigenvectors are not orthonormal (row {i} . row {j} = {dot:.6})"));
            }
        }
    }
    let var_sum: f64 = st.std_rgb.iter().map(|s| s * s).sum();
    if (ev.iter().sum::<f64>() - var_sum).abs() > 1e-6 * var_sum.max(1.0) {
        report
            .problems
            .push(format!("stats: eigenvalues sum to {:.4}, the variances to {var_sum:.4}", ev.iter().sum::<f64>()));
    }

    // Rejects.
    let rej = dir.join(REJECTS_FILE);
    match read_regular(&rej, 1 << 30).and_then(|b| {
        String::from_utf8(b).map_err(|_| alexnet_shared::Error::Invalid(format!("{}: not UTF-8", rej.display())))
    }) {
        Ok(text) => {
            let lines = text.lines().skip(1).filter(|l| !l.is_empty()).count() as u64;
            if lines != manifest.rejected {
                report
                    .problems
                    .push(format!("{REJECTS_FILE}: {lines} entries, the manifest says {} rejected", manifest.rejected));
            }
        }
        Err(e) => report.problems.push(e.to_string()),
    }
    Ok(report)
}

fn check_shard(dir: &Path, m: &Manifest, split: &str, s: &alexnet_shared::ShardEntry) -> (Vec<String>, u64) {
    let path = dir.join(&s.file);
    let mut p = Vec::new();
    let name = &s.file;
    if std::fs::symlink_metadata(&path).is_err() {
        return (vec![format!("{name}: missing (listed in the {split} split)")], 0);
    }
    let len = match open_regular(&path, max_shard_bytes(s.rows, m.shard_kind())) {
        Ok((_, len)) => len,
        Err(e) => return (vec![e.to_string()], 0),
    };
    match ShardReader::open_bounded(&path, m.shard_kind(), max_shard_bytes(s.rows, m.shard_kind())) {
        Ok(r) => {
            use sha2::Digest;
            let h = hex::encode(sha2::Sha256::digest(r.bytes()));
            if h != s.sha256 {
                p.push(format!("{name}: sha256 {h} differs from the manifest's {}: the file is damaged", s.sha256));
            }
            if r.len() as u64 != s.rows {
                p.push(format!("{name}: {} rows, the manifest says {}", r.len(), s.rows));
            }
            if r.has_row_crc() != m.has_row_crc() {
                p.push(format!(
                    "{name}: the manifest is format {} but the shard {} the crc32c column",
                    m.format_version,
                    if r.has_row_crc() { "has" } else { "lacks" }
                ));
            } else {
                let bad: Vec<usize> = (0..r.len()).filter(|&i| r.check_row(i).is_err()).collect();
                if let Some(&first) = bad.first() {
                    p.push(format!(
                        "{name}: {} row(s) fail their CRC-32C check (first: {})",
                        bad.len(),
                        r.check_row(first).unwrap_err()
                    ));
                }
            }
            if let Some(f) = m.build.raw_fraction {
                let want = (f * r.len() as f64).round() as usize;
                if r.raw_rows() != want {
                    p.push(format!(
                        "{name}: {} raw row(s), the build's raw fraction {f} gives {want} of {}",
                        r.raw_rows(),
                        r.len()
                    ));
                }
            }
            let n = m.classes.len();
            if let Some(i) = r.labels().iter().position(|&l| l < 0 || l as usize >= n) {
                p.push(format!("{name}: row {i} has label {}, outside 0..{n}", r.labels()[i]));
            }
        }
        Err(e) => p.push(e.to_string()),
    }
    // Physical layout of the image column, from the footer.
    if let Ok((f, _)) = open_regular(&path, max_shard_bytes(s.rows, m.shard_kind())) {
        match SerializedFileReader::new(f) {
            Ok(r) => {
                for (i, rg) in r.metadata().row_groups().iter().enumerate() {
                    let c = rg.column(0);
                    if c.compression() != Compression::UNCOMPRESSED {
                        p.push(format!("{name}: row group {i}: image is compressed ({:?})", c.compression()));
                    }
                    let encs: Vec<PqEncoding> = c.encodings().collect();
                    if encs.iter().any(|e| !matches!(e, PqEncoding::PLAIN | PqEncoding::RLE)) {
                        p.push(format!("{name}: row group {i}: image encodings {encs:?}, expected PLAIN only"));
                    }
                    if c.dictionary_page_offset().is_some() {
                        p.push(format!("{name}: row group {i}: image has a dictionary page"));
                    }
                    if c.statistics().is_some() {
                        p.push(format!("{name}: row group {i}: image has statistics"));
                    }
                    if c.offset_index_offset().is_none() {
                        p.push(format!("{name}: row group {i}: image has no offset index (page index)"));
                    }
                }
            }
            Err(e) => p.push(format!("{name}: {e}")),
        }
    }
    (p, len)
}
