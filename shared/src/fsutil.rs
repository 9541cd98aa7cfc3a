//! Durable file writing: temporary name, fsync, rename; sha256 while writing.
//!
//! Output paths ([`atomic_write`], [`OutputFile`]) are written as a user expects of
//! `> PATH` in a shell, durably where they can be:
//!
//! - a regular file, or a name that does not exist: written to `.NAME.tmp` beside it,
//!   fsynced and renamed over it (a reader sees the old file or the new one);
//! - a symlink: followed (to its end, relative links from their folder); its target is
//!   written by the rule for what it is, and the link stays a link. A dangling link
//!   creates its target, as the shell does;
//! - a FIFO, a character device, a socket, or a link into `/proc` (`/dev/stdout` is one,
//!   to `/proc/self/fd/1`): written in place (opened for writing, never created, renamed
//!   or fsynced), so `--json /dev/stdout` prints and a named pipe receives the bytes;
//! - a directory: an error naming it.
//!
//! Nothing is ever renamed over a symlink or a device node.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Temporary name used while `path` is being written: `.NAME.tmp` in the same folder,
/// so that the final rename stays on one file system.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Fsyncs the folder holding `path`, so that a rename into it survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent).and_then(|d| d.sync_all()).map_err(|e| Error::io(parent, e))
}

/// Moves a finished temporary file to its final name durably.
pub(crate) fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    sync_parent(path)
}

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one,
/// never a part (a regular file; see the module's doc for links, FIFOs and devices).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = OutputFile::create(path)?;
    out.write_all(bytes).map_err(|e| Error::io(out.writing(), e))?;
    out.commit()
}

/// Where the bytes for an output path go (see the module's doc).
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A regular file or a new one, replaced by a rename.
    Replace(PathBuf),
    /// A FIFO, a device, a socket, a `/proc` link: written in place.
    InPlace(PathBuf),
}

/// Follows the symlinks of `path` to what it names.
fn resolve(path: &Path) -> Result<Target> {
    use std::os::unix::fs::FileTypeExt;
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let m = match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Target::Replace(p)),
            Err(e) => return Err(Error::io(&p, e)),
            Ok(m) => m,
        };
        let t = m.file_type();
        if t.is_symlink() {
            let to = std::fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
            let next = match p.parent() {
                _ if to.is_absolute() => to,
                Some(dir) => dir.join(to),
                None => to,
            };
            if next.starts_with("/proc") {
                // A magic link (/dev/stdout -> /proc/self/fd/1): its target is an open
                // file of this process, reached by opening the link itself.
                return Ok(Target::InPlace(p));
            }
            p = next;
        } else if t.is_file() {
            return Ok(Target::Replace(p));
        } else if t.is_dir() {
            return Err(Error::Invalid(format!("{}: is a directory, not a file to write", path.display())));
        } else if t.is_fifo() || t.is_char_device() || t.is_socket() || t.is_block_device() {
            return Ok(Target::InPlace(p));
        } else {
            return Err(Error::Invalid(format!("{}: not a file that can be written", path.display())));
        }
    }
    Err(Error::Invalid(format!("{}: too many levels of symbolic links", path.display())))
}

/// An output file being written: a temporary file renamed over the target on
/// [`OutputFile::commit`] (a regular file), or the target itself (a FIFO, a device, a
/// `/proc` link); see the module's doc. Dropped without `commit`, the temporary file
/// is removed and the target is left as it was.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    /// The file written to: the temporary file, or the target in place.
    writing: PathBuf,
    /// The final name of a replaced file (None: written in place).
    replace: Option<PathBuf>,
}

impl OutputFile {
    pub fn create(path: &Path) -> Result<Self> {
        match resolve(path)? {
            Target::Replace(target) => {
                let tmp = tmp_path(&target);
                let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                Ok(Self { file, writing: tmp, replace: Some(target) })
            }
            Target::InPlace(target) => {
                let file = std::fs::OpenOptions::new().write(true).open(&target).map_err(|e| Error::io(&target, e))?;
                Ok(Self { file, writing: target, replace: None })
            }
        }
    }

    /// The file the bytes go to now (for messages).
    pub fn writing(&self) -> &Path {
        &self.writing
    }

    /// Finishes the file: fsync and rename over the target, or (in place) nothing more.
    pub fn commit(mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.writing, e))?;
        if let Some(target) = self.replace.take() {
            self.file.sync_all().map_err(|e| Error::io(&self.writing, e))?;
            commit(&self.writing, &target)?;
        }
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.replace.is_some() {
            let _ = std::fs::remove_file(&self.writing);
        }
    }
}

/// sha256 of a whole file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A writer that hashes everything written through it (sha256) and counts the bytes.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), written: 0 }
    }

    /// The inner writer, the hex sha256 and the byte count of what went through.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(p: &Path) {
        let ok = std::process::Command::new("mkfifo").arg(p).status().unwrap().success();
        assert!(ok, "mkfifo {}", p.display());
    }

    /// B10: a symlink is written through (the link stays, its target gets the bytes),
    /// relative and dangling links too; a regular file is replaced by a rename.
    #[test]
    fn a_symlink_is_written_through_and_stays_a_link() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target.json");
        std::fs::write(&target, "old").unwrap();
        let link = t.path().join("link.json");
        symlink("target.json", &link).unwrap(); // relative
        atomic_write(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // A link to a link, in another folder.
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let chain = t.path().join("sub/chain.json");
        symlink(&link, &chain).unwrap();
        atomic_write(&chain, b"newer").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"newer");
        assert!(std::fs::symlink_metadata(&chain).unwrap().file_type().is_symlink());
        // Dangling: the target is created.
        let dangling = t.path().join("dangling.json");
        symlink("made.json", &dangling).unwrap();
        atomic_write(&dangling, b"made").unwrap();
        assert_eq!(std::fs::read(t.path().join("made.json")).unwrap(), b"made");
        // A regular file: replaced (a new inode), nothing left behind.
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&target).unwrap().ino();
        atomic_write(&target, b"x").unwrap();
        assert_ne!(std::fs::metadata(&target).unwrap().ino(), ino);
        let mut names: Vec<String> =
            std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(names, ["dangling.json", "link.json", "made.json", "sub", "target.json"]);
        // A directory, and a link loop: errors naming the path.
        let e = atomic_write(&t.path().join("sub"), b"x").unwrap_err().to_string();
        assert!(e.contains("sub: is a directory"), "{e}");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        let e = atomic_write(&a, b"x").unwrap_err().to_string();
        assert!(e.contains("too many levels of symbolic links"), "{e}");
    }

    /// B10: a FIFO (directly or through a link) is written in place: a reader gets the
    /// bytes and the FIFO stays a FIFO (renaming over it made it a regular file).
    #[test]
    fn a_fifo_is_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("out.fifo");
        mkfifo(&fifo);
        let link = t.path().join("to-fifo.json");
        symlink(&fifo, &link).unwrap();
        for (path, text) in [(&fifo, &b"{\"top1\": 0.5}\n"[..]), (&link, &b"through the link"[..])] {
            let f = fifo.clone();
            let reader = std::thread::spawn(move || std::fs::read(f).unwrap());
            atomic_write(path, text).unwrap();
            assert_eq!(reader.join().unwrap(), text);
            assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        }
        assert!(!t.path().join(".out.fifo.tmp").exists());
    }

    /// An output dropped before commit leaves the target as it was and no temporary.
    #[test]
    fn an_unfinished_output_leaves_the_target_alone() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("p.csv");
        std::fs::write(&p, "old").unwrap();
        let mut out = OutputFile::create(&p).unwrap();
        out.write_all(b"half").unwrap();
        assert_eq!(out.writing(), t.path().join(".p.csv.tmp"));
        drop(out);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!t.path().join(".p.csv.tmp").exists());
    }
}
