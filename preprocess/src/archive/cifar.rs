//! CIFAR-10's binary archive (`cifar-10-binary.tar.gz`, as downloaded): the folder
//! `cifar-10-batches-bin/` holding `data_batch_1.bin` .. `data_batch_5.bin` (the 50,000
//! train images), `test_batch.bin` (the 10,000 test images, the dataset's val split) and
//! `batches.meta.txt` (the class names, one a line, in label order). Each `.bin` is
//! records of [`RECORD`] bytes: one label byte, then the 32x32 image as three 1024-byte
//! planes (red, green, blue), each row-major from the top-left pixel.
//!
//! The archive is read as a stream (gzip, then tar; about 160 MB unpacked), keeping
//! only those members; images come out as HWC RGB, the layout of the project's shards.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Sniffed;

/// The archive's file name as downloaded.
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// The folder inside it.
pub const FOLDER: &str = "cifar-10-batches-bin";
pub const SIDE: usize = 32;
/// Pixel bytes of one image.
pub const PIXELS: usize = SIDE * SIDE * 3;
/// One record: the label byte and the three planes.
pub const RECORD: usize = 1 + PIXELS;
/// The five train batches, in order.
pub const TRAIN_BATCHES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_BATCH: &str = "test_batch.bin";
pub const META: &str = "batches.meta.txt";

/// One image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CifarImage {
    pub label: u8,
    /// 32x32x3 HWC RGB.
    pub hwc: Vec<u8>,
    /// Where it came from: `data_batch_3.bin:417`.
    pub key: String,
}

/// The archive's contents.
#[derive(Debug, Clone)]
pub struct Cifar {
    /// The class names in label order.
    pub classes: Vec<String>,
    /// The five train batches' images, batch 1 first.
    pub train: Vec<CifarImage>,
    /// `test_batch.bin`'s images.
    pub test: Vec<CifarImage>,
}

/// The images of one `.bin` file named `name`; labels must be below `classes`.
pub fn parse_batch(bytes: &[u8], name: &str, classes: usize) -> Result<Vec<CifarImage>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        bail!(
            "{name}: {} bytes, not a whole number of {RECORD}-byte records (1 label byte + 3072 pixel bytes): is it \
             CIFAR-100's format or a damaged download?",
            bytes.len()
        );
    }
    bytes
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, r)| {
            if r[0] as usize >= classes {
                bail!("{name}: record {i} has label {}, but batches.meta.txt names {classes} classes", r[0]);
            }
            let planes = &r[1..];
            let plane = SIDE * SIDE;
            let mut hwc = vec![0u8; PIXELS];
            for p in 0..plane {
                for c in 0..3 {
                    hwc[p * 3 + c] = planes[c * plane + p];
                }
            }
            Ok(CifarImage { label: r[0], hwc, key: format!("{name}:{i}") })
        })
        .collect()
}

/// The class names of `batches.meta.txt`: its non-empty lines, trimmed.
pub fn parse_meta(text: &str) -> Result<Vec<String>> {
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.is_empty() || names.len() > 256 {
        bail!("{META}: {} class names (expected 1 to 256, CIFAR-10 has 10)", names.len());
    }
    Ok(names)
}

/// Whether `dir` holds CIFAR-10's binary archive.
pub fn find_in(dir: &Path) -> Option<std::path::PathBuf> {
    let p = dir.join(ARCHIVE);
    p.is_file().then_some(p)
}

/// Reads the archive at `path` (gzip-compressed, or already gunzipped to a `.tar`).
pub fn read(path: &Path) -> Result<Cifar> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader: Box<dyn Read> = match Sniffed::of_file(path)? {
        Sniffed::Gzip => Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))),
        Sniffed::Tar => Box::new(std::io::BufReader::new(file)),
        other => bail!("{}: not a .tar.gz or .tar archive ({other:?})", path.display()),
    };
    let mut archive = tar::Archive::new(reader);
    let mut batches: Vec<Option<Vec<u8>>> = vec![None; TRAIN_BATCHES.len() + 1];
    let mut meta = None;
    for entry in archive.entries().with_context(|| format!("reading {}", path.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}: a damaged archive", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let Some(name) = name else { continue };
        let slot =
            TRAIN_BATCHES.iter().position(|b| *b == name).or((name == TEST_BATCH).then_some(TRAIN_BATCHES.len()));
        if slot.is_none() && name != META {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size().min(1 << 28) as usize);
        entry.read_to_end(&mut bytes).with_context(|| format!("reading {name} in {}", path.display()))?;
        match slot {
            Some(s) => batches[s] = Some(bytes),
            None => meta = Some(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
    assemble(path, meta, batches)
}

/// Reads the archive's folder unpacked (`cifar-10-batches-bin/`, or the folder that holds it).
pub fn read_folder(dir: &Path) -> Result<Cifar> {
    let dir = if dir.join(FOLDER).is_dir() { dir.join(FOLDER) } else { dir.to_path_buf() };
    let read = |name: &str| -> Result<Option<Vec<u8>>> {
        let p = dir.join(name);
        if !p.exists() {
            return Ok(None);
        }
        std::fs::read(&p).map(Some).with_context(|| format!("reading {}", p.display()))
    };
    let mut batches = Vec::new();
    for name in TRAIN_BATCHES.iter().chain([&TEST_BATCH]) {
        batches.push(read(name)?);
    }
    let meta = read(META)?.map(|b| String::from_utf8_lossy(&b).into_owned());
    assemble(&dir, meta, batches)
}

/// The dataset of the members read (the five train batches, then the test batch).
fn assemble(origin: &Path, meta: Option<String>, mut batches: Vec<Option<Vec<u8>>>) -> Result<Cifar> {
    let ctx = |what: &str| format!("{}: {what}", origin.display());
    let meta = meta.with_context(|| ctx(&format!("no {FOLDER}/{META}: is this CIFAR-10's binary version?")))?;
    let classes = parse_meta(&meta).with_context(|| ctx("the class names"))?;
    let mut train = Vec::new();
    for (i, name) in TRAIN_BATCHES.iter().enumerate() {
        let bytes = batches[i].take().with_context(|| ctx(&format!("no {FOLDER}/{name}")))?;
        train.extend(parse_batch(&bytes, name, classes.len()).with_context(|| ctx("a train batch"))?);
    }
    let bytes = batches[TRAIN_BATCHES.len()].take().with_context(|| ctx(&format!("no {FOLDER}/{TEST_BATCH}")))?;
    let test = parse_batch(&bytes, TEST_BATCH, classes.len()).with_context(|| ctx("the test batch"))?;
    Ok(Cifar { classes, train, test })
}

/// Whether `path` is CIFAR-10's binary version: the archive (by its name), a folder
/// holding it, or the unpacked `cifar-10-batches-bin/` (or a folder holding that).
pub fn detect(path: &Path) -> bool {
    if path.is_file() {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        return name.starts_with("cifar-10")
            && (name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar"));
    }
    path.is_dir()
        && (find_in(path).is_some()
            || path.join(FOLDER).join(TRAIN_BATCHES[0]).is_file()
            || path.join(TRAIN_BATCHES[0]).is_file() && path.join(META).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_a_label_then_three_planes() {
        let mut rec = vec![7u8];
        for c in 0..3u8 {
            for y in 0..32u8 {
                for x in 0..32u8 {
                    rec.push(c.wrapping_mul(100).wrapping_add(y.wrapping_mul(3)).wrapping_add(x));
                }
            }
        }
        let two: Vec<u8> = rec.iter().chain(&rec).copied().collect();
        let imgs = parse_batch(&two, "b.bin", 10).unwrap();
        assert_eq!(imgs.len(), 2);
        assert_eq!(imgs[1].key, "b.bin:1");
        // Pixel (y 2, x 5): R = 6 + 5, G = 100 + 11, B = 200 + 11.
        let p = (2 * 32 + 5) * 3;
        assert_eq!((imgs[0].label, &imgs[0].hwc[p..p + 3]), (7, &[11u8, 111, 211][..]));
        assert!(parse_batch(&two[1..], "b.bin", 10).unwrap_err().to_string().contains("whole number"));
        assert!(parse_batch(&two, "b.bin", 5).unwrap_err().to_string().contains("label 7"));
        assert_eq!(parse_meta("airplane\nautomobile\n\n").unwrap(), ["airplane", "automobile"]);
        assert!(parse_meta("\n\n").is_err());
    }
}
