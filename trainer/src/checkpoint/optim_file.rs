//! The optimizer file beside each model file (`{stem}.optim.safetensors`): the SGD
//! momentum buffers, float32, as `momentum.{parameter name}`, and the run's
//! [`Position`] in the metadata (`format` = [`OPTIM_FORMAT`], `epoch`, `batch`,
//! `global_step`, `val_errors` as a JSON list, `best_top1`), so that a resumed run
//! continues exactly where it stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use tch::{Kind, Tensor};

use super::file::{write_tensors, TensorFile};
use super::{bad, CheckpointError};

/// `format` of an optimizer file's metadata.
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

/// The optimizer file of the model file `model` (`x.safetensors` -> `x.optim.safetensors`).
pub fn optim_path(model: &Path) -> PathBuf {
    let s = model.to_string_lossy();
    PathBuf::from(s.trim_end_matches(".safetensors").to_string() + ".optim.safetensors")
}

/// Writes the position and the momentum buffers, atomically. `momentum`: (parameter
/// name, buffer), stored as `momentum.{name}`.
pub fn write_optim(path: &Path, pos: &Position, momentum: Vec<(String, Tensor)>) -> Result<(), CheckpointError> {
    let named: Vec<(String, Tensor)> = momentum.into_iter().map(|(n, t)| (format!("momentum.{n}"), t)).collect();
    let val_errors = serde_json::to_string(&pos.val_errors).map_err(|e| bad(path, format!("val_errors: {e}")))?;
    let meta: HashMap<String, String> = HashMap::from([
        ("format".into(), OPTIM_FORMAT.into()),
        ("epoch".into(), pos.epoch.to_string()),
        ("batch".into(), pos.batch.to_string()),
        ("global_step".into(), pos.global_step.to_string()),
        ("val_errors".into(), val_errors),
        ("best_top1".into(), pos.best_top1.to_string()),
    ]);
    write_tensors(path, named, Some(meta))
}

/// The position and the momentum buffers (on the CPU) in the order of `names`; every
/// buffer must be there, in float32.
pub fn read_optim(path: &Path, names: &[String]) -> Result<(Position, Vec<Tensor>), CheckpointError> {
    let file = TensorFile::open(path, "damaged optimizer state")?;
    let pos = position(path, file.metadata())?;
    let mut bufs = Vec::with_capacity(names.len());
    for n in names {
        let v = file.view(&format!("momentum.{n}")).ok_or_else(|| bad(path, format!("no momentum for {n}")))?;
        if v.dtype != Dtype::F32 {
            return Err(bad(
                path,
                format!(
                    "momentum for {n} is {:?}, expected float32 (not an optimizer state this trainer wrote)",
                    v.dtype
                ),
            ));
        }
        let shape: Vec<i64> = v.shape.iter().map(|&d| d as i64).collect();
        bufs.push(Tensor::f_from_data_size(v.data, &shape, Kind::Float)?);
    }
    Ok((pos, bufs))
}

/// The position in an optimizer file's metadata.
fn position(path: &Path, m: Option<&HashMap<String, String>>) -> Result<Position, CheckpointError> {
    let m = m.filter(|m| m.get("format").map(String::as_str) == Some(OPTIM_FORMAT));
    let m = m.ok_or_else(|| bad(path, "not an optimizer state file"))?;
    let get = |k: &str| m.get(k).ok_or_else(|| bad(path, format!("no {k}")));
    fn parse<T: std::str::FromStr>(path: &Path, k: &str, v: &str) -> Result<T, CheckpointError> {
        v.parse().map_err(|_| bad(path, format!("{k} {v:?} is not a number")))
    }
    Ok(Position {
        epoch: parse(path, "epoch", get("epoch")?)?,
        batch: parse(path, "batch", get("batch")?)?,
        global_step: parse(path, "global_step", get("global_step")?)?,
        val_errors: serde_json::from_str(get("val_errors")?).map_err(|e| bad(path, format!("val_errors: {e}")))?,
        best_top1: parse(path, "best_top1", get("best_top1")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optim_path_is_beside_the_model_file() {
        assert_eq!(
            optim_path(Path::new("r/checkpoints/epoch-003.safetensors")),
            Path::new("r/checkpoints/epoch-003.optim.safetensors")
        );
    }

    #[test]
    fn read_optim_gives_back_what_write_optim_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step-000000007.optim.safetensors");
        let pos = Position { epoch: 2, batch: 3, global_step: 15, val_errors: vec![0.75, 0.5, 0.625], best_top1: 0.5 };
        let a = Tensor::from_slice(&[1.5f32, -2.0, 0.25, 8.0]).reshape([2, 2]);
        let b = Tensor::from_slice(&[0.125f64, 3.0]); // stored as float32
        write_optim(&path, &pos, vec![("w".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())]).unwrap();
        let (got, bufs) = read_optim(&path, &["w".into(), "b".into()]).unwrap();
        assert_eq!(got, pos);
        assert_eq!(bufs.len(), 2);
        assert!(bufs[0].equal(&a), "{bufs:?}");
        assert!(bufs[1].equal(&b.to_kind(Kind::Float)), "{bufs:?}");
        // A fresh run's position (best top-1 -1, no errors yet) survives too.
        let fresh = Position { best_top1: -1.0, ..Default::default() };
        write_optim(&path, &fresh, vec![]).unwrap();
        assert_eq!(read_optim(&path, &[]).unwrap().0, fresh);
        // A parameter without momentum, and a model file given as an optimizer file.
        write_optim(&path, &pos, vec![("w".into(), a)]).unwrap();
        let e = read_optim(&path, &["w".into(), "v".into()]).unwrap_err().to_string();
        assert!(e.contains("step-000000007.optim.safetensors") && e.contains("no momentum for v"), "{e}");
        let model = dir.path().join("m.safetensors");
        write_tensors(&model, vec![], None).unwrap();
        let e = read_optim(&model, &[]).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("not an optimizer state file"), "{e}");
        std::fs::write(&model, b"junk").unwrap();
        let e = read_optim(&model, &[]).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("damaged optimizer state"), "{e}");
    }
}
