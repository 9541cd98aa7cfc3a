//! Checkpoint model files (DESIGN.md, "Checkpoints"): a safetensors file holding only
//! the model tensors under the PyTorch names, contiguous float32, with string metadata
//! (`format`, `model`, `num_classes`, `crop`, `width`, `lrn_alpha`, `lrn_towers`,
//! `normalization`, `epoch`, `step`, `manifest_sha256`, `wnids`). PyTorch loads it with
//! `model.load_state_dict(safetensors.torch.load_file(path), strict=True)`; files made
//! by PyTorch (no metadata) load here too. Written atomically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::data::Normalization;
use crate::model::{Arch, ModelConfig};

pub mod optim_file;
pub mod run_dir;

pub use optim_file::{optim_path, read_optim, write_optim, Position};
pub use run_dir::RunDir;

pub const FORMAT: &str = "alexnet-checkpoint-v1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
    #[error("{0}")]
    Io(#[from] alexnet_shared::Error),
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

fn bad(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad { path: path.display().to_string(), message: message.into() }
}

/// The metadata of a checkpoint written by the trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    pub model: ModelConfig,
    pub normalization: Normalization,
    pub epoch: u64,
    pub step: u64,
    pub manifest_sha256: String,
    pub wnids: Vec<String>,
}

impl CheckpointMeta {
    fn to_map(&self) -> HashMap<String, String> {
        let m = &self.model;
        HashMap::from([
            ("format".into(), FORMAT.into()),
            ("model".into(), m.arch.name().into()),
            ("num_classes".into(), m.num_classes.to_string()),
            ("crop".into(), m.crop.to_string()),
            ("width".into(), m.width.to_string()),
            ("lrn_alpha".into(), m.lrn_alpha.to_string()),
            ("lrn_towers".into(), m.lrn_towers.to_string()),
            ("normalization".into(), self.normalization.name().into()),
            ("epoch".into(), self.epoch.to_string()),
            ("step".into(), self.step.to_string()),
            ("manifest_sha256".into(), self.manifest_sha256.clone()),
            ("wnids".into(), serde_json::to_string(&self.wnids).expect("strings serialize")),
        ])
    }

    fn from_map(path: &Path, m: &HashMap<String, String>) -> Result<Self, CheckpointError> {
        let get = |k: &str| m.get(k).ok_or_else(|| bad(path, format!("metadata has no {k:?}")));
        let num = |k: &str| -> Result<f64, CheckpointError> {
            get(k)?.parse::<f64>().map_err(|_| bad(path, format!("metadata {k:?} is not a number")))
        };
        if get("format")? != FORMAT {
            return Err(bad(path, format!("format {:?}, expected {FORMAT:?}", get("format")?)));
        }
        let arch = match get("model")?.as_str() {
            "paper" => Arch::Paper,
            "owt" => Arch::Owt,
            other => return Err(bad(path, format!("unknown model {other:?}"))),
        };
        let model = ModelConfig {
            arch,
            num_classes: num("num_classes")? as usize,
            crop: num("crop")? as usize,
            width: num("width")?,
            lrn_alpha: num("lrn_alpha")?,
            lrn_towers: num("lrn_towers")? as usize,
        };
        let wnids: Vec<String> =
            serde_json::from_str(get("wnids")?).map_err(|e| bad(path, format!("metadata wnids: {e}")))?;
        Ok(Self {
            model,
            normalization: Normalization::from_name(get("normalization")?)
                .ok_or_else(|| bad(path, format!("unknown normalization {:?} in the metadata", m["normalization"])))?,
            epoch: num("epoch")? as u64,
            step: num("step")? as u64,
            manifest_sha256: get("manifest_sha256")?.clone(),
            wnids,
        })
    }
}

/// Writes every variable of `vs` (float32, contiguous, on the CPU) to `path` with the
/// metadata, atomically.
pub fn save_model(path: &Path, vs: &VarStore, meta: Option<&CheckpointMeta>) -> Result<(), CheckpointError> {
    write_tensors(path, vs.variables().into_iter().collect(), meta.map(|m| m.to_map()))
}

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

/// Reads only the metadata (None for a file without the trainer's metadata, e.g. one
/// exported from PyTorch).
pub fn read_meta(path: &Path) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| alexnet_shared::Error::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(path, format!("not a safetensors file, or truncated or damaged ({e})")))?;
    match header.metadata() {
        Some(m) if m.contains_key("format") => Ok(Some(CheckpointMeta::from_map(path, m)?)),
        _ => Ok(None),
    }
}

/// Loads `path` into the variables of `vs`: every variable must be present with its
/// shape, and nothing else may be in the file (PyTorch's `strict=True`).
pub fn load_model(path: &Path, vs: &mut VarStore) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| alexnet_shared::Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(path, format!("not a safetensors file, or truncated or damaged ({e})")))?;
    let vars = vs.variables();
    let mut missing: Vec<&String> = vars.keys().filter(|k| st.tensor(k).is_err()).collect();
    missing.sort();
    let mut extra: Vec<&str> = st.names().into_iter().filter(|n| !vars.contains_key(*n)).collect();
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
            let view = st.tensor(&name).expect("checked above");
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                return Err(bad(path, format!("{name} has shape {shape:?}, the model needs {:?}", var.size())));
            }
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::F16 => Kind::Half,
                Dtype::BF16 => Kind::BFloat16,
                Dtype::F64 => Kind::Double,
                other => return Err(bad(path, format!("{name} has dtype {other:?}"))),
            };
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            var.f_copy_(&t.f_to_device(device)?.f_to_kind(var.kind())?)?;
        }
        Ok(())
    })?;
    Ok(match st_metadata(&bytes) {
        Some(m) if m.contains_key("format") => Some(CheckpointMeta::from_map(path, &m)?),
        _ => None,
    })
}

fn st_metadata(bytes: &[u8]) -> Option<HashMap<String, String>> {
    SafeTensors::read_metadata(bytes).ok().and_then(|(_, h)| h.metadata().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlexNet;

    fn small() -> ModelConfig {
        ModelConfig { width: 0.25, crop: 99, ..ModelConfig::paper(5) }
    }

    #[test]
    fn round_trip_with_metadata_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let mut m = AlexNet::new(&vs.root(), &small()).unwrap();
        tch::manual_seed(3);
        m.paper_init();
        let meta = CheckpointMeta {
            model: small(),
            normalization: Normalization::MeanImage,
            epoch: 2,
            step: 40,
            manifest_sha256: "ab".repeat(32),
            wnids: (0..5).map(|i| format!("n{i:08}")).collect(),
        };
        save_model(&path, &vs, Some(&meta)).unwrap();
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
}
