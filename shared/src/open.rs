//! Opening the files of a dataset safely: only regular files (after following
//! symlinks), never a FIFO, a device or a folder, and never more bytes than the file
//! can hold for what it is. A FIFO is refused before it is opened (opening one blocks
//! until a writer comes), and the open itself is non-blocking so that a file swapped
//! for a FIFO between the check and the open cannot hang either.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// What a path is, when it is not a regular file ("a FIFO", "a folder", ...).
fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file of at most `max_len` bytes (after
/// following symlinks); returns the file and its length.
pub fn open_regular(path: &Path, max_len: u64) -> Result<(File, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!("{}: is {}, expected a regular file", path.display(), kind(&meta))));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!("{}: is {}, expected a regular file", path.display(), kind(&meta))));
    }
    if meta.len() > max_len {
        return Err(Error::Invalid(format!(
            "{}: {} bytes, more than the {max_len} such a file can hold",
            path.display(),
            meta.len()
        )));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file of at most `max_len` bytes (see [`open_regular`]).
pub fn read_regular(path: &Path, max_len: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, max_len)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // `take`: a file that grows while read still stops at the cap.
    file.take(max_len + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_len {
        return Err(Error::Invalid(format!("{}: grew past {max_len} bytes while read", path.display())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        let st = std::process::Command::new("mkfifo").arg(p).status().unwrap();
        assert!(st.success());
    }

    /// A FIFO, a symlink to one, a folder, a dangling link and an oversized file are
    /// refused by name; none of them blocks.
    #[test]
    fn only_regular_files_within_the_cap_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        mkfifo(&d.join("fifo"));
        std::os::unix::fs::symlink(d.join("fifo"), d.join("to_fifo")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        std::fs::create_dir(d.join("folder")).unwrap();
        std::fs::write(d.join("big"), vec![1u8; 100]).unwrap();
        std::fs::write(d.join("ok"), b"abc").unwrap();
        for (name, want) in [
            ("fifo", "FIFO"),
            ("to_fifo", "FIFO"),
            ("folder", "a folder"),
            ("dangling", "No such file"),
            ("big", "100 bytes"),
        ] {
            let e = read_regular(&d.join(name), 10).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        }
        assert_eq!(read_regular(&d.join("ok"), 10).unwrap(), b"abc");
    }
}
