//! What is known of the official ILSVRC-2012 downloads: names, exact sizes, published
//! md5s and counts. The checks apply to files that carry the official names.

use std::io::Read;
use std::path::Path;

use alexnet_shared::progress::Progress;
use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Official {
    pub name: &'static str,
    /// Exact size in bytes (`None` where it is not fixed here).
    pub bytes: Option<u64>,
    pub md5: &'static str,
}

pub const TRAIN: Official = Official {
    name: "ILSVRC2012_img_train.tar",
    bytes: Some(147_897_477_120),
    md5: "1d675b47d978889d74fa0da5fadfb00e",
};
pub const VAL: Official =
    Official { name: "ILSVRC2012_img_val.tar", bytes: Some(6_744_924_160), md5: "29b22e2961454d5413ddabcf34fc5622" };
pub const DEVKIT: Official =
    Official { name: "ILSVRC2012_devkit_t12.tar.gz", bytes: None, md5: "fa75699e90414af021442c21a62c3abf" };

pub const CLASSES: usize = 1000;
pub const TRAIN_IMAGES: usize = 1_281_167;
pub const VAL_IMAGES: usize = 50_000;

/// The official file `path` is, judged by its name.
pub fn by_name(path: &Path) -> Option<Official> {
    let name = path.file_name()?.to_str()?;
    [TRAIN, VAL, DEVKIT].into_iter().find(|o| o.name == name)
}

/// 1281167 -> "1,281,167".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Refuses an official archive whose size is not the published one: a truncated
/// download is named at once, before any work.
pub fn check_size(path: &Path, len: u64) -> Result<()> {
    let Some(o) = by_name(path) else { return Ok(()) };
    let Some(want) = o.bytes else { return Ok(()) };
    if len != want {
        bail!(
            "{} is {} bytes; the official {} is {} bytes: the download is {}. Download it again \
             (if this is not the official archive, give it another name)",
            path.display(),
            thousands(len),
            o.name,
            thousands(want),
            if len < want { "incomplete" } else { "not the official file" }
        );
    }
    Ok(())
}

/// The md5 of each file (read in parallel, one thread per file, with a progress bar in
/// bytes), checked against the published one for files with an official name.
pub fn check_md5(paths: &[&Path], progress: bool) -> Result<Vec<String>> {
    let total: u64 = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let bar = Progress::bytes("md5", total, progress);
    let sums: Vec<Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| {
                let bar = &bar;
                s.spawn(move || -> Result<String> {
                    let mut f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                    let mut h = Md5::new();
                    let mut buf = vec![0u8; 8 << 20];
                    loop {
                        let n = f.read(&mut buf).with_context(|| format!("reading {}", p.display()))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        bar.inc(n as u64, false);
                    }
                    Ok(hex::encode(h.finalize()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the md5 thread panicked"))))
            .collect()
    });
    bar.finish();
    let mut out = Vec::new();
    for (p, sum) in paths.iter().zip(sums) {
        let sum = sum?;
        if let Some(o) = by_name(p) {
            if sum != o.md5 {
                bail!(
                    "{}: md5 {sum}, the published md5 of {} is {}: the file is damaged. Download it again",
                    p.display(),
                    o.name,
                    o.md5
                );
            }
        }
        out.push(sum);
    }
    Ok(out)
}
