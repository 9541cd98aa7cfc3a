//! The model file: only the model tensors under the PyTorch names, contiguous float32,
//! with the trainer's metadata ([`CheckpointMeta`]) or none (a PyTorch export).
//! [`save_model`] writes one atomically; [`Checkpoint::open`] maps one once and serves
//! the metadata, the shapes, single tensors and the loading into a model.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::Dtype;
use tch::{nn::VarStore, Kind, Tensor};

use super::file::{write_tensors, TensorFile};
use super::{bad, CheckpointError, CheckpointMeta};

/// Writes every variable of `vs` (float32, contiguous, on the CPU) to `path` with the
/// metadata (and `tensors_sha256`), atomically. Returns the tensors' hash (None without
/// metadata).
pub fn save_model(
    path: &Path,
    vs: &VarStore,
    meta: Option<&CheckpointMeta>,
) -> Result<Option<String>, CheckpointError> {
    let map = meta.map(|m| m.to_map()).transpose().map_err(|e| bad(path, format!("metadata: {e}")))?;
    write_tensors(path, vs.variables().into_iter().collect(), map)
}

/// Reads only the metadata (None for a file without the trainer's metadata, e.g. one
/// exported from PyTorch).
pub fn read_meta(path: &Path) -> Result<Option<CheckpointMeta>, CheckpointError> {
    Ok(Checkpoint::open(path)?.meta)
}

/// Loads `path` into the variables of `vs` ([`Checkpoint::load_into`]); returns its
/// metadata.
pub fn load_model(path: &Path, vs: &mut VarStore) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let ckpt = Checkpoint::open(path)?;
    ckpt.load_into(vs)?;
    Ok(ckpt.meta)
}

/// A model file, mapped once: its header is parsed and its metadata read at
/// [`Checkpoint::open`]; tensors are read from the map when asked for.
pub struct Checkpoint {
    file: TensorFile,
    meta: Option<CheckpointMeta>,
    /// The hash of its tensors, as computed at open (`tensors_sha256`).
    tensors_sha256: String,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("path", &self.path()).field("meta", &self.meta).finish()
    }
}

impl Checkpoint {
    /// Maps `path` and checks it: an unreadable or damaged file (not a regular file, a
    /// header that does not describe it, tensors that do not match their recorded hash),
    /// a NaN or infinite weight, trainer metadata that does not parse or does not
    /// describe the tensors (another class count or width) are errors naming the file.
    /// Reads every tensor byte once (sha256 of the paper model's 232 MiB: 0.14 s).
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let file = TensorFile::open(path, "not a safetensors file, or truncated or damaged")?;
        let meta = match file.metadata() {
            Some(m) if m.contains_key("format") => Some(CheckpointMeta::from_map(path, m)?),
            _ => None,
        };
        let tensors_sha256 = file.verify()?;
        let ckpt = Self { file, meta, tensors_sha256 };
        ckpt.check_meta_against_shapes()?;
        Ok(ckpt)
    }

    /// The metadata's model must be the one the tensors hold, as far as the shapes tell
    /// (arch, classes, fc width), before anyone builds a model from it: a damaged or
    /// hand-edited `num_classes = 1000000000` must not allocate a 16 TB classifier.
    fn check_meta_against_shapes(&self) -> Result<(), CheckpointError> {
        let Some(meta) = &self.meta else { return Ok(()) };
        let m = &meta.model;
        let shapes = self.shapes();
        let (fc8, fc7) = match m.arch {
            crate::model::Arch::Paper => ("classifier.6.weight", "classifier.3.weight"),
            crate::model::Arch::Owt => ("classifier.6.weight", "classifier.4.weight"),
        };
        let mismatch = |what: String| {
            bad(
                self.path(),
                format!("its metadata does not describe its tensors: {what} (a damaged or hand-edited file?)"),
            )
        };
        match shapes.get(fc8).map(Vec::as_slice) {
            Some([rows, _]) if *rows == m.num_classes => {}
            Some(s) => return Err(mismatch(format!("num_classes {} but {fc8} is {s:?}", m.num_classes))),
            None => return Err(mismatch(format!("the {} model has a {fc8}", m.arch.name()))),
        }
        let fc = if m.arch == crate::model::Arch::Owt { 4096.0 } else { 4096.0 * m.width };
        match shapes.get(fc7).map(Vec::as_slice) {
            Some([rows, _]) if (*rows as f64 - fc).abs() <= 1.0 => Ok(()),
            s => Err(mismatch(format!("width {} but {fc7} is {s:?}", m.width))),
        }
    }

    /// The sha256 of its tensors (what `tensors_sha256` records; computed at open).
    pub fn tensors_sha256(&self) -> &str {
        &self.tensors_sha256
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The trainer's metadata; None for a file without it (e.g. exported from PyTorch).
    pub fn meta(&self) -> Option<&CheckpointMeta> {
        self.meta.as_ref()
    }

    /// Every tensor's name and shape.
    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.file.shapes()
    }

    /// Copies the tensors into the variables of `vs` (converted to their kind, on their
    /// device): every variable must be present with its shape, and nothing else may be
    /// in the file (PyTorch's `strict=True`).
    pub fn load_into(&self, vs: &mut VarStore) -> Result<(), CheckpointError> {
        let path = self.path();
        let vars = vs.variables();
        let shapes = self.shapes();
        let mut missing: Vec<&String> = vars.keys().filter(|k| !shapes.contains_key(*k)).collect();
        missing.sort();
        let mut extra: Vec<&str> = shapes.keys().map(String::as_str).filter(|n| !vars.contains_key(*n)).collect();
        extra.sort();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(bad(
                path,
                format!(
                    "does not match the model: missing {missing:?}, unexpected {extra:?} (a checkpoint of the other model, or of other classes?)"
                ),
            ));
        }
        let device = vs.device();
        tch::no_grad(|| -> Result<(), CheckpointError> {
            for (name, mut var) in vars {
                let shape: Vec<i64> = shapes[&name].iter().map(|&d| d as i64).collect();
                if shape != var.size() {
                    return Err(bad(path, format!("{name} has shape {shape:?}, the model needs {:?}", var.size())));
                }
                let t = self.tensor(&name)?;
                var.f_copy_(&t.f_to_device(device)?.f_to_kind(var.kind())?)?;
            }
            Ok(())
        })
    }

    /// One tensor as float32 values (row-major) and its shape, e.g. conv1's kernels.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), CheckpointError> {
        let t = self.tensor(name)?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?;
        Ok((values, shape))
    }

    /// One tensor on the CPU, in the file's floating-point kind.
    pub fn tensor(&self, name: &str) -> Result<Tensor, CheckpointError> {
        let path = self.path();
        let view = self.file.view(name).ok_or_else(|| bad(path, format!("no {name}")))?;
        let kind = match view.dtype {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            other => return Err(bad(path, format!("{name} has dtype {other:?}"))),
        };
        let shape: Vec<i64> = view.shape.iter().map(|&d| d as i64).collect();
        Ok(Tensor::f_from_data_size(view.data, &shape, kind)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::file::read_header;
    use crate::checkpoint::{write_tensors, TENSORS_SHA256};
    use crate::data::Normalization;
    use crate::model::{AlexNet, ModelConfig};
    use tch::Device;

    fn small() -> ModelConfig {
        ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(5) }
    }

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            model: small(),
            normalization: Normalization::MeanImage,
            epoch: 2,
            step: 40,
            manifest_sha256: "ab".repeat(32),
            wnids: (0..5).map(|i| format!("n{i:08}")).collect(),
            data_fingerprint: Some("cd".repeat(32)),
            inputs: None,
            provenance: None,
            pca_noise: true,
        }
    }

    /// A seeded small paper model saved at `path` with `meta`.
    fn saved(path: &Path, meta: Option<&CheckpointMeta>) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let mut m = AlexNet::new(&vs.root(), &small()).unwrap();
        tch::manual_seed(3);
        m.paper_init();
        save_model(path, &vs, meta).unwrap();
        vs
    }

    #[test]
    fn round_trip_with_metadata_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let meta = meta();
        let vs = saved(&path, Some(&meta));
        let mut vs2 = VarStore::new(Device::Cpu);
        let _m2 = AlexNet::new(&vs2.root(), &small()).unwrap();
        assert_eq!(load_model(&path, &mut vs2).unwrap(), Some(meta.clone()));
        assert_eq!(read_meta(&path).unwrap(), Some(meta));
        for (k, v) in vs.variables() {
            assert!(v.equal(&vs2.variables()[&k]), "{k}");
        }
        // The other model: a one-line error naming what does not match.
        let mut owt = VarStore::new(Device::Cpu);
        let _o = AlexNet::new(&owt.root(), &ModelConfig::owt(5)).unwrap();
        let e = load_model(&path, &mut owt).unwrap_err().to_string();
        assert!(e.contains("does not match the model") && e.contains("classifier.1.weight"), "{e}");
        // Other classes: a shape error naming the tensor.
        let mut ten = VarStore::new(Device::Cpu);
        let _t = AlexNet::new(&ten.root(), &ModelConfig { num_classes: 10, ..small() }).unwrap();
        let e = load_model(&path, &mut ten).unwrap_err().to_string();
        assert!(e.contains("classifier.6") && e.contains("shape"), "{e}");
        // Truncated.
        let b = std::fs::read(&path).unwrap();
        std::fs::write(&path, &b[..b.len() / 2]).unwrap();
        let e = load_model(&path, &mut vs2).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("truncated"), "{e}");
    }

    /// One open serves the metadata, the shapes, single tensors and the load, all from
    /// the same map.
    #[test]
    fn one_open_serves_meta_shapes_tensors_and_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let vs = saved(&path, Some(&meta()));
        let ckpt = Checkpoint::open(&path).unwrap();
        assert_eq!(ckpt.path(), path);
        assert_eq!(ckpt.meta(), Some(&meta()));
        let vars = vs.variables();
        let shapes = ckpt.shapes();
        assert_eq!(shapes.len(), vars.len());
        for (name, v) in &vars {
            let want: Vec<usize> = v.size().iter().map(|&d| d as usize).collect();
            assert_eq!(shapes[name], want, "{name}");
        }
        let (conv1, shape) = ckpt.tensor_f32("features.0.weight").unwrap();
        assert_eq!(shape, shapes["features.0.weight"]);
        let want = Vec::<f32>::try_from(vars["features.0.weight"].flatten(0, -1)).unwrap();
        assert_eq!(conv1, want);
        let e = ckpt.tensor_f32("features.1.weight").unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("no features.1.weight"), "{e}");
        let mut vs2 = VarStore::new(Device::Cpu);
        let _m2 = AlexNet::new(&vs2.root(), &small()).unwrap();
        ckpt.load_into(&mut vs2).unwrap();
        for (k, v) in &vars {
            assert!(v.equal(&vs2.variables()[k]), "{k}");
        }
        // Without metadata: no meta, the same tensors.
        let bare = dir.path().join("bare.safetensors");
        save_model(&bare, &vs, None).unwrap();
        let ckpt = Checkpoint::open(&bare).unwrap();
        assert!(ckpt.meta().is_none());
        assert_eq!(ckpt.tensor_f32("features.0.weight").unwrap().0, want);
    }

    #[test]
    fn truncated_and_damaged_headers_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        saved(&path, Some(&meta()));
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let cases: [(&str, Vec<u8>); 4] = [
            ("half.safetensors", bytes[..bytes.len() / 2].to_vec()),
            // The header alone, without the tensors it describes.
            ("header.safetensors", bytes[..8 + n].to_vec()),
            // The header's JSON damaged, the tensors intact.
            ("json.safetensors", [&bytes[..8], &b"#"[..], &bytes[9..]].concat()),
            ("empty.safetensors", Vec::new()),
        ];
        for (name, b) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, b).unwrap();
            let e = Checkpoint::open(&p).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("truncated or damaged") && !e.contains('\n'), "{e}");
        }
        let e = Checkpoint::open(&dir.path().join("none.safetensors")).unwrap_err().to_string();
        assert!(e.contains("none.safetensors"), "{e}");
        // Trainer metadata that does not parse: an error at open.
        let mut m = meta().to_map().unwrap();
        m.insert("crop".into(), "big".into());
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &small()).unwrap();
        let p = dir.path().join("meta.safetensors");
        write_tensors(&p, vs.variables().into_iter().collect(), Some(m)).unwrap();
        let e = Checkpoint::open(&p).unwrap_err().to_string();
        assert!(e.contains("meta.safetensors") && e.contains(r#"metadata "crop" is not a number"#), "{e}");
    }

    /// The file's bytes with `f` applied to the data of tensor `name` (structure intact).
    fn with_tensor_bytes(path: &Path, name: &str, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut bytes = std::fs::read(path).unwrap();
        let (n, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let (s, e) = header.info(name).unwrap().data_offsets;
        f(&mut bytes[8 + n + s..8 + n + e]);
        bytes
    }

    /// B7: flipped tensor bytes (structure intact) are refused naming the file; a file
    /// written before `tensors_sha256` (no key) still loads.
    #[test]
    fn damaged_tensor_bytes_are_caught_by_the_recorded_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let vs = saved(&path, Some(&meta()));
        let ckpt = Checkpoint::open(&path).unwrap();
        let recorded = read_header(&path).unwrap().metadata().as_ref().unwrap()[TENSORS_SHA256].clone();
        assert_eq!(ckpt.tensors_sha256(), recorded);
        assert_eq!(recorded.len(), 64);
        drop(ckpt);
        let bad = dir.path().join("flipped.safetensors");
        std::fs::write(
            &bad,
            with_tensor_bytes(&path, "features.4.weight", |d| d[8..72].iter_mut().for_each(|b| *b ^= 0x5a)),
        )
        .unwrap();
        let e = Checkpoint::open(&bad).unwrap_err();
        assert!(matches!(e, CheckpointError::Damaged { .. }) && e.is_damage(), "{e}");
        let e = e.to_string();
        assert!(e.contains("flipped.safetensors: tensor data damaged") && e.contains(TENSORS_SHA256), "{e}");
        // Written before the key: the same tensors, metadata without it, loads.
        let old = dir.path().join("old.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let (_, h) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut md = h.metadata().clone().unwrap();
        md.remove(TENSORS_SHA256);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        std::fs::write(&old, safetensors::serialize(st.tensors(), Some(md)).unwrap()).unwrap();
        drop(vs);
        assert!(read_header(&old).unwrap().metadata().as_ref().unwrap().get(TENSORS_SHA256).is_none());
        let mut vs2 = VarStore::new(Device::Cpu);
        let _m2 = AlexNet::new(&vs2.root(), &small()).unwrap();
        assert_eq!(load_model(&old, &mut vs2).unwrap(), Some(meta()));
    }

    /// B4: a NaN weight or an infinite bias is refused naming the tensor (hashed or not).
    #[test]
    fn non_finite_weights_are_refused_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let vs = saved(&path, Some(&meta()));
        for (name, value, shown) in
            [("features.0.weight", f32::NAN, "NaN"), ("classifier.6.bias", f32::INFINITY, "inf")]
        {
            let mut v = vs.variables();
            let t = v.get_mut(name).unwrap();
            tch::no_grad(|| {
                let _ = t.flatten(0, -1).get(3).fill_(value as f64);
            });
            let p = dir.path().join("nan.safetensors");
            save_model(&p, &vs, Some(&meta())).unwrap();
            let e = Checkpoint::open(&p).unwrap_err();
            assert!(matches!(e, CheckpointError::NonFinite { .. }), "{e}");
            let e = e.to_string();
            assert!(
                e.contains(&format!("nan.safetensors: {name} holds a non-finite value ({shown} at element 3")),
                "{e}"
            );
            tch::no_grad(|| {
                let _ = t.flatten(0, -1).get(3).fill_(0.0);
            });
        }
    }

    /// Metadata that does not describe the tensors is refused at open, before a model is
    /// built from it (num_classes 10^9 would allocate a 16 TB classifier).
    #[test]
    fn metadata_that_does_not_describe_the_tensors_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vs = saved(&dir.path().join("m.safetensors"), Some(&meta()));
        for (k, v, want) in [
            ("num_classes", "1000000000", "num_classes 1000000000 but classifier.6.weight is [5,"),
            ("width", "4", "width 4 but classifier.3.weight is Some([1024,"),
            ("model", "owt", "but classifier.4.weight is None"),
        ] {
            let mut m = meta().to_map().unwrap();
            m.insert(k.into(), v.into());
            let p = dir.path().join("edited.safetensors");
            write_tensors(&p, vs.variables().into_iter().collect(), Some(m)).unwrap();
            let e = Checkpoint::open(&p).unwrap_err().to_string();
            assert!(
                e.contains("edited.safetensors: its metadata does not describe its tensors") && e.contains(want),
                "{e}"
            );
        }
    }

    /// B14: a FIFO, a directory, a symlink to a FIFO are refused at open without
    /// blocking (a FIFO's open waits for a writer); a symlink to a good file opens.
    #[test]
    fn non_regular_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("m.safetensors");
        saved(&good, Some(&meta()));
        let fifo = dir.path().join("fifo.safetensors");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let folder = dir.path().join("folder.safetensors");
        std::fs::create_dir(&folder).unwrap();
        let to_fifo = dir.path().join("to-fifo.safetensors");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let to_good = dir.path().join("to-good.safetensors");
        std::os::unix::fs::symlink(&good, &to_good).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let paths = [fifo.clone(), folder.clone(), to_fifo.clone()];
        std::thread::spawn(move || {
            let r: Vec<String> = paths
                .iter()
                .map(|p| {
                    Checkpoint::open(p).unwrap_err().to_string() + " | " + &read_header(p).unwrap_err().to_string()
                })
                .collect();
            tx.send(r).unwrap();
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("an open blocked");
        for (e, (name, what)) in got.iter().zip([("fifo", "a FIFO"), ("folder", "a directory"), ("to-fifo", "a FIFO")])
        {
            assert_eq!(e.matches(&format!("{name}.safetensors: is {what}, not a checkpoint file")).count(), 2, "{e}");
        }
        assert!(Checkpoint::open(&to_good).unwrap().meta().is_some());
        let e = crate::checkpoint::read_optim(&fifo, &[]).unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
    }

    /// The cost of the checks at open on the paper model (61 M parameters, 233 MiB):
    /// `cargo test -p trainer --lib open_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn open_cost_of_the_hash_and_the_finite_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paper.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &ModelConfig::paper(1000)).unwrap();
        save_model(&path, &vs, None).unwrap();
        let file = TensorFile::open(&path, "x").unwrap();
        let _ = file.verify().unwrap(); // warm the page cache
        let t0 = std::time::Instant::now();
        let _ = TensorFile::open(&path, "x").unwrap();
        let map = t0.elapsed().as_secs_f64();
        let t0 = std::time::Instant::now();
        let _ = file.verify().unwrap();
        let verify = t0.elapsed().as_secs_f64();
        let bytes = std::fs::read(&path).unwrap();
        let t0 = std::time::Instant::now();
        let _ = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        let sha = t0.elapsed().as_secs_f64();
        let mut vs2 = VarStore::new(Device::Cpu);
        let _m2 = AlexNet::new(&vs2.root(), &ModelConfig::paper(1000)).unwrap();
        let c = Checkpoint::open(&path).unwrap();
        let t0 = std::time::Instant::now();
        c.load_into(&mut vs2).unwrap();
        let load = t0.elapsed().as_secs_f64();
        alexnet_shared::err_line!(
            "{} MiB: map+header {map:.3} s, verify (sha256 + finite) {verify:.3} s, sha256 alone {sha:.3} s, load_into {load:.3} s",
            std::fs::metadata(&path).unwrap().len() >> 20
        );
    }
}
