//! The safetensors layer under both checkpoint files: writing named float32 tensors
//! with string metadata atomically, mapping a file once to read its header and tensors,
//! and reading a header alone (the first 8 bytes and the header JSON).
//!
//! Every file written here records [`TENSORS_SHA256`] in its metadata: the sha256 of
//! its tensors, taken in name order (bytewise), each as `name \n dtype \n shape \n`
//! followed by its little-endian bytes (`shape` as JSON without spaces, e.g.
//! `[96,3,11,11]`; `dtype` as safetensors writes it, e.g. `F32`). In Python:
//!
//! ```text
//! h = hashlib.sha256()
//! for name in sorted(header):  # header: the JSON without "__metadata__"
//!     t = header[name]; h.update(f"{name}\n{t['dtype']}\n{json.dumps(t['shape'], separators=(',', ':'))}\n".encode())
//!     h.update(data[t['data_offsets'][0]:t['data_offsets'][1]])
//! ```
//!
//! [`TensorFile::verify`] recomputes it (a file without the key, written before it
//! existed or by PyTorch, is not checked) and checks that every floating-point value is
//! finite. Only regular files are opened ([`open_regular`]): a FIFO, a directory or a
//! device is refused before anything is read, so nothing blocks or reads without end.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::{bad, damaged, io, CheckpointError};

/// Metadata key of the hash of a file's tensors (see the module's doc).
pub const TENSORS_SHA256: &str = "tensors_sha256";

/// Bytes of the header-length prefix.
const N_LEN: usize = 8;
/// The safetensors crate's own limit on a header.
const MAX_HEADER: u64 = 100_000_000;

/// Writes named tensors as float32 safetensors with string metadata, atomically (the
/// model files and the optimizer state files).
///
/// With metadata, [`TENSORS_SHA256`] is added to it; returns that hash (None: no
/// metadata, as a PyTorch export).
pub fn write_tensors(
    path: &Path,
    mut named: Vec<(String, Tensor)>,
    meta: Option<HashMap<String, String>>,
) -> Result<Option<String>, CheckpointError> {
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
    let hash = meta.is_some().then(|| {
        let mut h = TensorHasher::default();
        for (name, shape, bytes) in &blobs {
            h.add(name, Dtype::F32, shape, bytes);
        }
        h.finish()
    });
    let meta = meta.map(|mut m| {
        m.insert(TENSORS_SHA256.into(), hash.clone().unwrap_or_default());
        m
    });
    let bytes = safetensors::serialize(views, meta).map_err(|e| bad(path, e.to_string()))?;
    alexnet_shared::atomic_write(path, &bytes)?;
    Ok(hash)
}

/// The hash of [`TENSORS_SHA256`], fed tensor by tensor in name order.
#[derive(Default)]
struct TensorHasher(Sha256);

impl TensorHasher {
    fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize], data: &[u8]) {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        self.0.update(format!("{name}\n{dtype:?}\n[{}]\n", dims.join(",")).as_bytes());
        self.0.update(data);
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Opens `path` for reading if it is a regular file (after symlinks); a directory, a
/// FIFO, a socket or a device is an error naming what it is, before it is opened (a
/// FIFO would block the open, a device would read without end). Returns the file and
/// its length.
pub(super) fn open_regular(path: &Path) -> Result<(File, u64), CheckpointError> {
    let kind = |m: &std::fs::Metadata| {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        }
    };
    let m = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if !m.is_file() {
        return Err(bad(path, format!("is {}, not a checkpoint file (a regular *.safetensors file)", kind(&m))));
    }
    let file = File::open(path).map_err(|e| io(path, e))?;
    // The same check on what was opened (the name may have changed in between).
    let m = file.metadata().map_err(|e| io(path, e))?;
    if !m.is_file() {
        return Err(bad(path, format!("is {}, not a checkpoint file (a regular *.safetensors file)", kind(&m))));
    }
    Ok((file, m.len()))
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

impl View<'_> {
    fn shape_len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The index and value of the first NaN or infinity among float `data` (little-endian);
/// None for integer dtypes or when every value is finite.
fn non_finite(dtype: Dtype, data: &[u8]) -> Option<(usize, String)> {
    match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .enumerate()
            .find(|(_, x)| !x.is_finite())
            .map(|(i, x)| (i, x.to_string())),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .enumerate()
            .find(|(_, x)| !x.is_finite())
            .map(|(i, x)| (i, x.to_string())),
        // Exponent bits all ones: NaN or infinity.
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .position(|x| x & 0x7c00 == 0x7c00)
            .map(|i| (i, "NaN or inf".into())),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .position(|x| x & 0x7f80 == 0x7f80)
            .map(|i| (i, "NaN or inf".into())),
        _ => None,
    }
}

impl TensorFile {
    /// Maps `path` and checks its header against the file's length; `damaged` says
    /// what an unreadable file is ("not a safetensors file, or truncated or damaged").
    /// Only regular files are mapped ([`open_regular`]); the header (at most
    /// 100 MB, and within the file) bounds every read that follows.
    pub(super) fn open(path: &Path, what: &str) -> Result<Self, CheckpointError> {
        let (file, _) = open_regular(path)?;
        // SAFETY: see the type's contract: checkpoint files are immutable once written.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io(path, e))?;
        let (n, header) = SafeTensors::read_metadata(&map).map_err(|e| damaged(path, format!("{what} ({e})")))?;
        Ok(Self { path: path.to_path_buf(), map, data_start: N_LEN + n, header })
    }

    /// Checks the tensors: their hash against [`TENSORS_SHA256`] when the metadata
    /// records one, and that every floating-point value is finite (the first NaN or
    /// infinity names its tensor). Returns the hash of the tensors as they are.
    pub(super) fn verify(&self) -> Result<String, CheckpointError> {
        let tensors = self.header.tensors();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut h = TensorHasher::default();
        let mut first_bad: Option<String> = None;
        for name in names {
            let v = self.view(name).ok_or_else(|| damaged(&self.path, format!("{name} lies outside the file")))?;
            h.add(name, v.dtype, v.shape, v.data);
            // float32 (every tensor this trainer writes) is checked by libtorch, fast in
            // any build; the element is looked for only when there is one.
            let suspect = match v.dtype {
                Dtype::F32 => !Tensor::f_from_data_size(v.data, &[(v.data.len() / 4) as i64], Kind::Float)
                    .and_then(|t| t.f_isfinite()?.f_all())
                    .map(|t| t.int64_value(&[]) != 0)
                    .unwrap_or(true),
                _ => true,
            };
            if first_bad.is_none() && suspect {
                first_bad = non_finite(v.dtype, v.data)
                    .map(|(i, x)| format!("{name} holds a non-finite value ({x} at element {i} of {})", v.shape_len()));
            }
        }
        let got = h.finish();
        if let Some(want) = self.metadata().and_then(|m| m.get(TENSORS_SHA256)) {
            if *want != got {
                return Err(damaged(
                    &self.path,
                    format!("tensor data damaged: its sha256 is {got}, the file recorded {want} ({TENSORS_SHA256})"),
                ));
            }
        }
        if let Some(msg) = first_bad {
            return Err(CheckpointError::NonFinite { path: self.path.display().to_string(), message: msg });
        }
        Ok(got)
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
    let damaged = |what: String| damaged(path, format!("not a safetensors file, or truncated or damaged ({what})"));
    let (mut file, len) = open_regular(path)?;
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
        let hash = write_tensors(&path, named, Some(meta.clone())).unwrap().unwrap();
        let header = read_header(&path).unwrap();
        let mut want = meta.clone();
        want.insert(TENSORS_SHA256.into(), hash.clone());
        assert_eq!(header.metadata().as_ref(), Some(&want));
        // The documented hash: name, dtype, shape, then the bytes.
        let mut h = Sha256::new();
        h.update(b"a\nF32\n[3]\n");
        [1.0f32, 2.0, 3.0].iter().for_each(|v| h.update(v.to_le_bytes()));
        assert_eq!(hash, hex::encode(h.finalize()));
        assert_eq!(header.info("a").map(|i| i.shape.clone()), Some(vec![3]));
        let mapped = TensorFile::open(&path, "damaged").unwrap();
        assert_eq!(mapped.metadata(), Some(&want));
        assert_eq!(mapped.verify().unwrap(), hash);
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
            assert!(matches!(e, CheckpointError::Damaged { .. }), "{e}");
            assert!(e.to_string().contains("x.optim.safetensors: not a safetensors file"), "{e}");
        }
        let e = read_header(&dir.path().join("none")).unwrap_err();
        assert!(matches!(e, CheckpointError::Io(_)), "{e}");
    }
}
