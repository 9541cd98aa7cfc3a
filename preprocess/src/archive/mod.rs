//! ImageNet as it is downloaded, read in place: the official tar archives (an outer tar
//! of class tars for train, a flat tar for val), the devkit's `.tar.gz` with
//! `meta.mat`, and Kaggle's zip.
//!
//! Neither level of the train tar is compressed, so every JPEG sits at a fixed offset of
//! the outer file: [`tar_index::index_members`] walks the headers once (outer and inner,
//! seeking over the data, so only the header pages are read), and the build decodes
//! the members in parallel straight out of a read-only memory map ([`Mapped`]).

pub mod cifar;
pub mod devkit;
pub mod official;
pub mod tar_index;
pub mod zip_index;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use memmap2::{Advice, Mmap};

/// A read-only memory map of an input archive.
///
/// # Safety
///
/// A memory map is only sound while nobody truncates or rewrites the file: the build's
/// contract is that the input archives are not modified while it runs (as it reads
/// input folders without expecting their files to change under it). Every member's
/// extent is checked against the file's length when the archive is indexed, so no
/// access reaches past the end of an intact file.
pub struct Mapped {
    path: PathBuf,
    map: Mmap,
}

impl Mapped {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
        if len == 0 {
            anyhow::bail!("{} is empty (0 bytes): download it again", path.display());
        }
        // SAFETY: see the type's contract above; the map is read-only.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("memory-mapping {}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), map })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Tells the kernel how the map is about to be read (no effect on the bytes).
    pub fn advise(&self, advice: Advice) {
        let _ = self.map.advise(advice);
    }

    /// Asks the kernel to start reading `len` bytes at `offset` into the page cache
    /// (a hint: it returns at once, and does nothing for cached pages).
    pub fn will_need(&self, offset: u64, len: u64) {
        let _ = self.map.advise_range(Advice::WillNeed, offset as usize, len as usize);
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Tar,
    Zip,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Other,
}

impl Sniffed {
    pub fn of_bytes(head: &[u8]) -> Sniffed {
        if head.starts_with(&[0x1f, 0x8b]) {
            Sniffed::Gzip
        } else if head.starts_with(b"BZh") {
            Sniffed::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Sniffed::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Sniffed::Zstd
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Sniffed::Zip
        } else if head.get(257..262) == Some(b"ustar") || looks_like_v7_tar(head) {
            Sniffed::Tar
        } else if head.len() >= 512 && head.iter().all(|&b| b == 0) {
            // An empty tar: nothing but its end-of-archive blocks.
            Sniffed::Tar
        } else {
            Sniffed::Other
        }
    }

    pub fn of_file(path: &Path) -> Result<Sniffed> {
        use std::io::Read;
        let mut head = Vec::with_capacity(512);
        std::fs::File::open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .take(512)
            .read_to_end(&mut head)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Sniffed::of_bytes(&head))
    }

    /// A compression's name, for messages (`None` for uncompressed kinds).
    pub fn compression(self) -> Option<&'static str> {
        match self {
            Sniffed::Gzip => Some("gzip"),
            Sniffed::Bzip2 => Some("bzip2"),
            Sniffed::Xz => Some("xz"),
            Sniffed::Zstd => Some("zstd"),
            _ => None,
        }
    }

    /// The command that undoes the compression.
    pub fn decompress_command(self) -> &'static str {
        match self {
            Sniffed::Gzip => "gunzip -k FILE (or pigz -dk FILE)",
            Sniffed::Bzip2 => "bunzip2 -k FILE",
            Sniffed::Xz => "unxz -k FILE",
            Sniffed::Zstd => "unzstd FILE",
            _ => "",
        }
    }
}

/// A pre-POSIX tar header: a header checksum that adds up.
fn looks_like_v7_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let field = &head[148..156];
    let digits: String = field.iter().take_while(|&&b| b != 0 && b != b' ').map(|&b| b as char).collect();
    let Ok(want) = u32::from_str_radix(digits.trim(), 8) else { return false };
    let sum: u32 =
        head[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
    sum == want && head[0] != 0
}

/// Refuses a compressed archive where an uncompressed tar is needed, saying why and what
/// to do.
pub fn refuse_compressed(path: &Path, what: &str, sniffed: Sniffed) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is a {}-compressed {what}: a compressed tar has no fixed member offsets, so it can be \
         neither memory-mapped nor decoded in parallel. Decompress it once with `{}` (the result \
         is the official uncompressed .tar) and give that",
        path.display(),
        sniffed.compression().unwrap_or("compressed"),
        sniffed.decompress_command()
    )
}
