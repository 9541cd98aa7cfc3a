//! The index of a zip (Kaggle's `imagenet-object-localization-challenge.zip`): its
//! central directory read with the `zip` crate, giving each member's data offset in
//! the file, sizes, method and CRC-32, so members are read straight out of the map
//! (stored ones with no copy, deflated ones inflated by the worker that decodes them).

use std::io::Cursor;

use anyhow::{bail, Result};
use zip::CompressionMethod;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
    /// Another method (bzip2, lzma, ...): not read; the member is a reject.
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    pub name: String,
    /// Offset of the member's (possibly compressed) data in the file.
    pub offset: u64,
    pub stored_size: u64,
    pub size: u64,
    pub method: Method,
    pub crc32: u32,
}

/// Every file member of the zip held in `data`; `what` names it in errors.
pub fn index_members(data: &[u8], what: &str) -> Result<Vec<ZipMember>> {
    let mut z = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(z) => z,
        Err(e) => bail!(
            "{what}: not a readable zip ({e}); its central directory, at the end of the file, is missing or \
             damaged: the download is truncated or damaged. Download it again"
        ),
    };
    let len = data.len() as u64;
    let mut out = Vec::with_capacity(z.len());
    for i in 0..z.len() {
        let f = match z.by_index_raw(i) {
            Ok(f) => f,
            Err(e) => bail!("{what}: member {i} of the central directory is damaged ({e}); download it again"),
        };
        if f.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let (offset, stored_size) = (f.data_start(), f.compressed_size());
        if offset.checked_add(stored_size).is_none_or(|e| e > len) {
            bail!(
                "{what} is truncated: member {name} holds {stored_size} bytes from offset {offset}, but the file \
                 ends at offset {len}. Download it again"
            );
        }
        #[allow(deprecated)]
        let method = match f.compression() {
            CompressionMethod::Stored => Method::Stored,
            CompressionMethod::Deflated => Method::Deflated,
            m => Method::Other(m.to_u16()),
        };
        out.push(ZipMember { name, offset, stored_size, size: f.size(), method, crc32: f.crc32() });
    }
    Ok(out)
}
