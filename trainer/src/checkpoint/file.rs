//! The safetensors layer under both checkpoint files: writing named float32 tensors
//! with string metadata atomically, mapping a file once to read its header and tensors,
//! and reading a header alone (the first 8 bytes and the header JSON).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use tch::{Device, Kind, Tensor};

use super::{bad, io, CheckpointError};

/// Bytes of the header-length prefix.
const N_LEN: usize = 8;
/// The safetensors crate's own limit on a header.
const MAX_HEADER: u64 = 100_000_000;

/// Writes named tensors as float32 safetensors with string metadata, atomically (the
/// model files and the optimizer state files).
pub fn write_tensors(
    path: &Path,
    mut named: Vec<(String, Tensor)>,
    meta: Option<HashMap<String, String>>,
) -> Result<(), CheckpointError> {
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(named.len());
    for (name, t) in named {
        let t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.f_flatten(0, -1)?)?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        blobs.push((name, shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(n, s, b)| {
            Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| bad(path, e.to_string()))?))
        })
        .collect::<Result<_, CheckpointError>>()?;
    let bytes = safetensors::serialize(views, meta).map_err(|e| bad(path, e.to_string()))?;
    alexnet_shared::atomic_write(path, &bytes)?;
    Ok(())
}

/// A safetensors file mapped read-only, its header parsed once.
///
/// # Safety
///
/// Mapping a file is sound only while nobody modifies or truncates it. Checkpoint files
/// are written under a temporary name and renamed ([`write_tensors`]), never modified in
/// place; a user who overwrites a checkpoint while it is open breaks that contract.
pub(super) struct TensorFile {
    path: PathBuf,
    map: Mmap,
    /// Offset of the tensor data (after the length prefix and the header).
    data_start: usize,
    header: Metadata,
}

/// One tensor of a [`TensorFile`]: its dtype, shape and little-endian bytes.
pub(super) struct View<'a> {
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

impl TensorFile {
    /// Maps `path` and checks its header against the file's length; `damaged` says
    /// what an unreadable file is ("not a safetensors file, or truncated or damaged").
    pub(super) fn open(path: &Path, damaged: &str) -> Result<Self, CheckpointError> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        // SAFETY: see the type's contract: checkpoint files are immutable once written.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io(path, e))?;
        let (n, header) = SafeTensors::read_metadata(&map).map_err(|e| bad(path, format!("{damaged} ({e})")))?;
        Ok(Self { path: path.to_path_buf(), map, data_start: N_LEN + n, header })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The string metadata (`__metadata__`), if any.
    pub(super) fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.header.metadata().as_ref()
    }

    /// Every tensor's name and shape.
    pub(super) fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.header.tensors().into_iter().map(|(name, info)| (name, info.shape.clone())).collect()
    }

    pub(super) fn view(&self, name: &str) -> Option<View<'_>> {
        let info = self.header.info(name)?;
        let (s, e) = info.data_offsets;
        // In range: the header was checked against the file's length at open.
        let data = self.map.get(self.data_start + s..self.data_start + e)?;
        Some(View { dtype: info.dtype, shape: &info.shape, data })
    }
}

/// The header of the safetensors file `path` without reading its tensors: the length
/// prefix and the header JSON, checked against the file's length as a full read would.
pub(super) fn read_header(path: &Path) -> Result<Metadata, CheckpointError> {
    let damaged = |what: String| bad(path, format!("not a safetensors file, or truncated or damaged ({what})"));
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let len = file.metadata().map_err(|e| io(path, e))?.len();
    let mut prefix = [0u8; N_LEN];
    if len < N_LEN as u64 {
        return Err(damaged("no header".into()));
    }
    file.read_exact(&mut prefix).map_err(|e| io(path, e))?;
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER || N_LEN as u64 + n > len {
        return Err(damaged(format!("a header of {n} bytes in a file of {len}")));
    }
    let mut json = vec![0u8; n as usize];
    file.read_exact(&mut json).map_err(|e| io(path, e))?;
    let header: Metadata = serde_json::from_slice(&json).map_err(|e| damaged(e.to_string()))?;
    if N_LEN as u64 + n + header.data_len() as u64 != len {
        return Err(damaged("the file is shorter or longer than its header says".into()));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_alone_is_read_and_checked_against_the_files_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.optim.safetensors");
        let meta = HashMap::from([("global_step".to_string(), "12".to_string())]);
        let named = vec![("a".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))];
        write_tensors(&path, named, Some(meta.clone())).unwrap();
        let header = read_header(&path).unwrap();
        assert_eq!(header.metadata().as_ref(), Some(&meta));
        assert_eq!(header.info("a").map(|i| i.shape.clone()), Some(vec![3]));
        let mapped = TensorFile::open(&path, "damaged").unwrap();
        assert_eq!(mapped.metadata(), Some(&meta));
        let v = mapped.view("a").unwrap();
        assert_eq!((v.dtype, v.shape, v.data.len()), (Dtype::F32, &[3usize][..], 12));
        assert!(mapped.view("b").is_none());
        // Shorter or longer than the header says, no header, a header that is not JSON.
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        drop(mapped); // the file is rewritten below
        let cases: [Vec<u8>; 5] = [
            bytes[..bytes.len() - 1].to_vec(),
            [&bytes[..], &[0u8][..]].concat(),
            bytes[..8 + n].to_vec(),
            bytes[..5].to_vec(),
            [&bytes[..8], &b"["[..], &bytes[9..]].concat(),
        ];
        for b in cases {
            std::fs::write(&path, b).unwrap();
            let e = read_header(&path).unwrap_err();
            assert!(matches!(e, CheckpointError::Bad { .. }), "{e}");
            assert!(e.to_string().contains("x.optim.safetensors: not a safetensors file"), "{e}");
        }
        let e = read_header(&dir.path().join("none")).unwrap_err();
        assert!(matches!(e, CheckpointError::Io(_)), "{e}");
    }
}
