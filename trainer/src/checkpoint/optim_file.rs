//! The optimizer-state file beside each model file (`*.optim.safetensors`): the
//! momentum buffers and the loader/schedule position, so a resumed run continues
//! exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::SafeTensors;
use tch::{Kind, Tensor};

use super::{write_tensors, CheckpointError};

pub const OPTIM_FORMAT: &str = "alexnet-optim-v1";

/// Where a run stands: saved in `*.optim.safetensors`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    pub epoch: usize,
    /// Batches of `epoch` already trained.
    pub batch: usize,
    pub global_step: u64,
    /// The top-1 error of each finished epoch that drives the plateau schedule: on val,
    /// or on the held-out slice of train when the run holds one out.
    pub val_errors: Vec<f64>,
    pub best_top1: f64,
}

fn bad(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad { path: path.display().to_string(), message: message.into() }
}

/// `x.safetensors` -> `x.optim.safetensors`.
pub fn optim_path(model: &Path) -> PathBuf {
    let s = model.to_string_lossy();
    PathBuf::from(s.trim_end_matches(".safetensors").to_string() + ".optim.safetensors")
}

/// `momentum`: (parameter name, buffer), stored as `momentum.{name}`.
pub fn write_optim(path: &Path, pos: &Position, momentum: Vec<(String, Tensor)>) -> Result<(), CheckpointError> {
    let named: Vec<(String, Tensor)> = momentum.into_iter().map(|(n, t)| (format!("momentum.{n}"), t)).collect();
    let meta: HashMap<String, String> = HashMap::from([
        ("format".into(), OPTIM_FORMAT.into()),
        ("epoch".into(), pos.epoch.to_string()),
        ("batch".into(), pos.batch.to_string()),
        ("global_step".into(), pos.global_step.to_string()),
        ("val_errors".into(), serde_json::to_string(&pos.val_errors).expect("floats serialize")),
        ("best_top1".into(), pos.best_top1.to_string()),
    ]);
    write_tensors(path, named, Some(meta))
}

/// The position and the momentum buffers in the order of `names`.
pub fn read_optim(path: &Path, names: &[String]) -> Result<(Position, Vec<Tensor>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| alexnet_shared::Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("damaged optimizer state ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let m = header.metadata().clone().unwrap_or_default();
    if m.get("format").map(String::as_str) != Some(OPTIM_FORMAT) {
        return Err(bad(path, "not an optimizer state file"));
    }
    let get = |k: &str| m.get(k).ok_or_else(|| bad(path, format!("no {k}")));
    let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().map_err(|_| bad(path, format!("{k} is not a number"))));
    let pos = Position {
        epoch: num("epoch")? as usize,
        batch: num("batch")? as usize,
        global_step: get("global_step")?.parse().map_err(|_| bad(path, "global_step is not a number"))?,
        val_errors: serde_json::from_str(get("val_errors")?).map_err(|e| bad(path, format!("val_errors: {e}")))?,
        best_top1: num("best_top1")?,
    };
    let mut bufs = Vec::with_capacity(names.len());
    for n in names {
        let v = st.tensor(&format!("momentum.{n}")).map_err(|_| bad(path, format!("no momentum for {n}")))?;
        if v.dtype() != safetensors::Dtype::F32 {
            return Err(bad(
                path,
                format!(
                    "momentum for {n} is {:?}, expected float32 (not an optimizer state this trainer wrote)",
                    v.dtype()
                ),
            ));
        }
        let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
        bufs.push(Tensor::f_from_data_size(v.data(), &shape, Kind::Float)?);
    }
    Ok((pos, bufs))
}
