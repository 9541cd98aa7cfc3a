//! The index pass over an uncompressed tar: one walk over the headers (seeking over the
//! data, so only the header pages of the map are read), giving each regular member's
//! name, offset and size. A truncated or damaged archive is an error that names the
//! member and the offset.

use std::io::Cursor;

use anyhow::{bail, Result};

/// A regular file inside a tar, at `offset` of the outer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

impl TarMember {
    /// The last path component.
    pub fn base_name(&self) -> &str {
        self.name.trim_end_matches('/').rsplit('/').next().unwrap_or(&self.name)
    }
}

/// The regular members of the tar held in `data`, whose first byte is at `base` of the
/// file; `what` names it in errors ("FILE" or "FILE: member NAME").
pub fn index_members(data: &[u8], base: u64, what: &str) -> Result<Vec<TarMember>> {
    let len = data.len() as u64;
    let mut archive = tar::Archive::new(Cursor::new(data));
    let entries = match archive.entries_with_seek() {
        Ok(e) => e,
        Err(e) => bail!("{what}: not a readable tar ({e})"),
    };
    let mut out = Vec::new();
    // End of the last member's padded data, and its name, for messages.
    let mut end = 0u64;
    let mut last = String::from("the start of the archive");
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let truncated = end + 512 > len;
                bail!(
                    "{what}: {} at offset {} (after {last}): {e}. The archive is {}: download it again \
                     (--check-md5 checks a download)",
                    if truncated { "the tar ends inside a header" } else { "damaged tar header" },
                    base + end,
                    if truncated { "truncated" } else { "damaged" }
                )
            }
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (header, pos, size) = (entry.raw_header_position(), entry.raw_file_position(), entry.size());
        if pos.checked_add(size).is_none_or(|e| e > len) {
            bail!(
                "{what} is truncated: member {name} (header at offset {}) holds {size} bytes from offset {}, \
                 but the data ends at offset {}. Download it again (--check-md5 checks a download)",
                base + header,
                base + pos,
                base + len
            );
        }
        end = pos + size.next_multiple_of(512);
        let kind = entry.header().entry_type();
        if kind.is_file() || kind.is_contiguous() {
            out.push(TarMember { name: name.clone(), offset: base + pos, size });
        }
        last = format!("member {name} at offset {}", base + header);
    }
    // A tar ends with zero blocks; a file cut at a member boundary lacks them.
    let marker = data.get(end as usize..(end as usize).saturating_add(512));
    if !marker.is_some_and(|b| b.iter().all(|&x| x == 0)) {
        bail!(
            "{what} is truncated: it ends after {last} (offset {}) without the end-of-archive blocks. \
             Download it again (--check-md5 checks a download)",
            base + end
        );
    }
    Ok(out)
}
