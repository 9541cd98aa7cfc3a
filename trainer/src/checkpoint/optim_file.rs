//! The optimizer file beside each model file (`{stem}.optim.safetensors`): the SGD
//! momentum buffers, float32, as `momentum.{parameter name}`, and the run's
//! [`Position`] in the metadata (`format` = [`OPTIM_FORMAT`], `epoch`, `batch`,
//! `global_step`, `val_errors` as a JSON list, `best_top1`; `world` and `batch_size`,
//! the world size and per-rank batch `batch` counts in; `epoch_parts`, a JSON list of
//! the parts of the epoch trained at other world sizes, when there are any), so that a
//! resumed run continues exactly where it stopped, at its world size or another one. It also records `model_tensors_sha256`, the
//! `tensors_sha256` of the model file written with it, which ties the pair together
//! (optional: files written before it have none), and its own `tensors_sha256`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use tch::{Kind, Tensor};

use super::file::{write_tensors, TensorFile};
use super::{bad, CheckpointError};
use crate::data::sampler::Trained;
use crate::data::MAX_BATCH;

/// The largest world size an optimizer file may record.
const MAX_WORLD: usize = 1 << 20;

/// `format` of an optimizer file's metadata.
pub const OPTIM_FORMAT: &str = "alexnet-optim-v1";

/// Where a run stands: saved in `*.optim.safetensors`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    pub epoch: usize,
    /// Batches of `epoch` already trained, at the world size and per-rank batch of
    /// `part` (after the earlier parts `parts`).
    pub batch: usize,
    pub global_step: u64,
    /// The top-1 error of each finished epoch that drives the plateau schedule: on val,
    /// or on the held-out slice of train when the run holds one out.
    pub val_errors: Vec<f64>,
    pub best_top1: f64,
    /// The parts of `epoch` trained at other world sizes before the current one (a run
    /// stopped mid-epoch and resumed at another world size; empty otherwise).
    pub parts: Vec<Trained>,
    /// (world size, per-rank batch) that `batch` counts in. `None`: a file written
    /// before it was recorded (its run's config.toml says).
    pub part: Option<(usize, usize)>,
    /// The stall warning's window ([`crate::train::stall`]), so that a resumed run
    /// counts the steps at chance from where it stopped. `None`: a file written
    /// before it was recorded (the window starts empty).
    pub stall: Option<StallState>,
}

/// The stall warning's state: the training losses of the last steps (oldest first, at
/// most its window) and whether it has fired. Metadata keys `stall_window` (the losses
/// comma-separated, each in Rust's shortest form, which reads back exactly) and
/// `stall_fired` (`true` | `false`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StallState {
    pub losses: Vec<f64>,
    pub fired: bool,
}

/// The most losses `stall_window` may hold (the default window is one epoch: 10,010
/// steps of ImageNet at batch 128).
const MAX_STALL_WINDOW: usize = 1 << 20;

impl Position {
    /// The parts of the current epoch trained so far, in order, the current one last
    /// (`batch` batches at `part`, or at `(world, batch_size)` where the file does
    /// not say): what the loader needs to deal the rest of the epoch.
    pub fn trained(&self, world: usize, batch_size: usize) -> Vec<Trained> {
        let (w, b) = self.part.unwrap_or((world, batch_size));
        let mut v = self.parts.clone();
        v.push(Trained { world: w, batch: b, batches: self.batch });
        v
    }

    /// Batches trained in the earlier parts of the epoch (as counted at their own world
    /// sizes): the offset of this part's batches in the epoch's numbering.
    pub fn batches_before(&self) -> usize {
        self.parts.iter().fold(0usize, |n, t| n.saturating_add(t.batches))
    }

    /// Images of the epoch trained in its earlier parts, over all ranks.
    pub fn images_before(&self) -> usize {
        self.parts.iter().fold(0usize, |n, t| n.saturating_add(t.batches.saturating_mul(t.batch * t.world)))
    }

    /// Continues the position at `world` ranks of `batch_size` images: at the world
    /// size and batch of the current part it stays as it is; at another one mid-epoch,
    /// the current part is closed (kept in `parts`) and the new one starts at batch 0.
    /// `recorded` is the run's world size where the file does not say. Returns whether
    /// the part changed.
    pub fn continue_at(&mut self, world: usize, batch_size: usize, recorded: usize) -> bool {
        let (w, b) = self.part.unwrap_or((recorded, batch_size));
        self.part = Some((world, batch_size));
        if (w, b) == (world, batch_size) || self.batch == 0 {
            return false;
        }
        self.parts.push(Trained { world: w, batch: b, batches: self.batch });
        self.batch = 0;
        true
    }

    /// The position at the start of the next epoch.
    pub fn next_epoch(&mut self) {
        (self.epoch, self.batch) = (self.epoch + 1, 0);
        self.parts.clear();
    }
}

/// The optimizer file of the model file `model` (`x.safetensors` -> `x.optim.safetensors`).
pub fn optim_path(model: &Path) -> PathBuf {
    let s = model.to_string_lossy();
    PathBuf::from(s.trim_end_matches(".safetensors").to_string() + ".optim.safetensors")
}

/// Metadata key of the model file's `tensors_sha256` in its optimizer file.
pub const MODEL_TENSORS_SHA256: &str = "model_tensors_sha256";

/// What an optimizer file holds.
#[derive(Debug)]
pub struct OptimState {
    pub pos: Position,
    /// The momentum buffers (on the CPU) in the order asked for.
    pub momentum: Vec<Tensor>,
    /// The `tensors_sha256` of the model file it was written with (None: an older file).
    pub model_sha256: Option<String>,
}

/// Writes the position and the momentum buffers, atomically. `momentum`: (parameter
/// name, buffer), stored as `momentum.{name}`; `model_sha256`: the `tensors_sha256` of
/// the model file it goes with.
pub fn write_optim(
    path: &Path,
    pos: &Position,
    momentum: Vec<(String, Tensor)>,
    model_sha256: Option<&str>,
) -> Result<(), CheckpointError> {
    let named: Vec<(String, Tensor)> = momentum.into_iter().map(|(n, t)| (format!("momentum.{n}"), t)).collect();
    let val_errors = serde_json::to_string(&pos.val_errors).map_err(|e| bad(path, format!("val_errors: {e}")))?;
    let mut meta: HashMap<String, String> = HashMap::from([
        ("format".into(), OPTIM_FORMAT.into()),
        ("epoch".into(), pos.epoch.to_string()),
        ("batch".into(), pos.batch.to_string()),
        ("global_step".into(), pos.global_step.to_string()),
        ("val_errors".into(), val_errors),
        ("best_top1".into(), pos.best_top1.to_string()),
    ]);
    if !pos.parts.is_empty() {
        let parts = serde_json::to_string(&pos.parts).map_err(|e| bad(path, format!("epoch_parts: {e}")))?;
        meta.insert("epoch_parts".into(), parts);
    }
    if let Some((w, b)) = pos.part {
        meta.insert("world".into(), w.to_string());
        meta.insert("batch_size".into(), b.to_string());
    }
    if let Some(h) = model_sha256 {
        meta.insert(MODEL_TENSORS_SHA256.into(), h.into());
    }
    if let Some(st) = &pos.stall {
        let w: Vec<String> = st.losses.iter().map(f64::to_string).collect();
        meta.insert("stall_window".into(), w.join(","));
        meta.insert("stall_fired".into(), st.fired.to_string());
    }
    write_tensors(path, named, Some(meta)).map(|_| ())
}

/// The position and the momentum buffers (on the CPU) in the order of `names`; every
/// buffer must be there, in float32, hashing to the file's `tensors_sha256` (when it
/// records one) and finite.
pub fn read_optim(path: &Path, names: &[String]) -> Result<OptimState, CheckpointError> {
    let file = TensorFile::open(path, "damaged optimizer state")?;
    let pos = position(path, file.metadata())?;
    let mut views = Vec::with_capacity(names.len());
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
        views.push(v);
    }
    file.verify()?;
    let mut momentum = Vec::with_capacity(names.len());
    for v in views {
        let shape: Vec<i64> = v.shape.iter().map(|&d| d as i64).collect();
        momentum.push(Tensor::f_from_data_size(v.data, &shape, Kind::Float)?);
    }
    let model_sha256 = file.metadata().and_then(|m| m.get(MODEL_TENSORS_SHA256)).cloned();
    Ok(OptimState { pos, momentum, model_sha256 })
}

/// The position in an optimizer file's metadata.
fn position(path: &Path, m: Option<&HashMap<String, String>>) -> Result<Position, CheckpointError> {
    let m = m.filter(|m| m.get("format").map(String::as_str) == Some(OPTIM_FORMAT));
    let m = m.ok_or_else(|| bad(path, "not an optimizer state file"))?;
    let get = |k: &str| m.get(k).ok_or_else(|| bad(path, format!("no {k}")));
    fn parse<T: std::str::FromStr>(path: &Path, k: &str, v: &str) -> Result<T, CheckpointError> {
        v.parse().map_err(|_| bad(path, format!("{k} {v:?} is not a number")))
    }
    let val_errors: Vec<f64> =
        serde_json::from_str(get("val_errors")?).map_err(|e| bad(path, format!("val_errors: {e}")))?;
    let best_top1: f64 = parse(path, "best_top1", get("best_top1")?)?;
    // best_top1 is -1 before the first validation.
    if !(-1.0..=1.0).contains(&best_top1) || val_errors.iter().any(|e| !(0.0..=1.0).contains(e)) {
        return Err(bad(path, format!("best_top1 {best_top1} or val_errors {val_errors:?} outside [0, 1]")));
    }
    let parts: Vec<Trained> = match m.get("epoch_parts") {
        Some(v) => serde_json::from_str(v).map_err(|e| bad(path, format!("epoch_parts: {e}")))?,
        None => Vec::new(),
    };
    let part = match (m.get("world"), m.get("batch_size")) {
        (Some(w), Some(b)) => Some((parse(path, "world", w)?, parse(path, "batch_size", b)?)),
        (None, None) => None,
        _ => return Err(bad(path, "world without batch_size, or batch_size without world")),
    };
    let mut counts = parts.iter().map(|t| (t.world, t.batch)).chain(part);
    if counts.any(|(w, b)| w == 0 || b == 0 || w > MAX_WORLD || b > MAX_BATCH) {
        return Err(bad(path, format!("epoch parts {parts:?} or part {part:?}: a world size or batch out of range")));
    }
    let stall = match (m.get("stall_window"), m.get("stall_fired").map(String::as_str)) {
        (None, None) => None,
        (Some(w), Some(f @ ("true" | "false"))) => {
            let losses = w
                .split(',')
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<f64>().map_err(|_| bad(path, format!("stall_window: {v:?} is not a number"))))
                .collect::<Result<Vec<f64>, _>>()?;
            if losses.len() > MAX_STALL_WINDOW || losses.iter().any(|l| !l.is_finite() || *l < 0.0) {
                return Err(bad(path, "stall_window: more than 2^20 losses, or a loss that is negative or not finite"));
            }
            Some(StallState { losses, fired: f == "true" })
        }
        _ => return Err(bad(path, "stall_window and stall_fired must come together, stall_fired true or false")),
    };
    Ok(Position {
        stall,
        epoch: parse(path, "epoch", get("epoch")?)?,
        batch: parse(path, "batch", get("batch")?)?,
        global_step: parse(path, "global_step", get("global_step")?)?,
        val_errors,
        best_top1,
        parts,
        part,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_continued_at_another_world_size_closes_its_part() {
        let t = |world, batch, batches| Trained { world, batch, batches };
        let mut p = Position { epoch: 1, batch: 3, part: Some((2, 8)), ..Default::default() };
        assert!(!p.continue_at(2, 8, 2), "the same world size and batch: the same part");
        assert_eq!((p.batch, p.parts.len(), p.trained(2, 8)), (3, 0, vec![t(2, 8, 3)]));
        assert!(p.continue_at(3, 8, 2));
        assert_eq!((p.batch, p.part, p.parts.clone()), (0, Some((3, 8)), vec![t(2, 8, 3)]));
        p.batch = 2;
        assert_eq!(p.trained(3, 8), [t(2, 8, 3), t(3, 8, 2)]);
        assert_eq!((p.batches_before(), p.images_before()), (3, 48));
        // A file of an older trainer: its part is at the run's recorded world size.
        let mut q = Position { batch: 2, ..Default::default() };
        assert!(q.continue_at(1, 8, 2));
        assert_eq!(q.parts, [t(2, 8, 2)]);
        // At an epoch's start there is nothing to close.
        let mut r = Position { part: Some((2, 8)), ..Default::default() };
        assert!(!r.continue_at(4, 8, 2));
        assert_eq!((r.parts.len(), r.part), (0, Some((4, 8))));
        p.next_epoch();
        assert_eq!((p.epoch, p.batch, p.parts.len()), (2, 0, 0));
    }

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
        let pos = Position {
            epoch: 2,
            batch: 3,
            global_step: 15,
            val_errors: vec![0.75, 0.5, 0.625],
            best_top1: 0.5,
            parts: vec![Trained { world: 2, batch: 4, batches: 5 }],
            part: Some((3, 4)),
            stall: Some(StallState { losses: vec![std::f64::consts::LN_10, 2.25, 0.1], fired: false }),
        };
        let a = Tensor::from_slice(&[1.5f32, -2.0, 0.25, 8.0]).reshape([2, 2]);
        let b = Tensor::from_slice(&[0.125f64, 3.0]); // stored as float32
        write_optim(&path, &pos, vec![("w".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())], Some("ab12"))
            .unwrap();
        let OptimState { pos: got, momentum: bufs, model_sha256 } =
            read_optim(&path, &["w".into(), "b".into()]).unwrap();
        assert_eq!(got, pos);
        assert_eq!(model_sha256.as_deref(), Some("ab12"));
        assert_eq!(bufs.len(), 2);
        assert!(bufs[0].equal(&a), "{bufs:?}");
        assert!(bufs[1].equal(&b.to_kind(Kind::Float)), "{bufs:?}");
        // A file of an older trainer (no world, no parts) reads as a single part at the run's world size.
        let old = Position { parts: vec![], part: None, stall: None, ..pos.clone() };
        write_optim(&path, &old, vec![], None).unwrap();
        let got = read_optim(&path, &[]).unwrap().pos;
        assert_eq!(got, old);
        assert_eq!(got.trained(2, 4), [Trained { world: 2, batch: 4, batches: 3 }]);
        // A fresh run's position (best top-1 -1, no errors yet) survives too.
        let fresh = Position { best_top1: -1.0, ..Default::default() };
        write_optim(&path, &fresh, vec![], None).unwrap();
        assert_eq!(read_optim(&path, &[]).unwrap().pos, fresh);
        // A parameter without momentum, and a model file given as an optimizer file.
        write_optim(&path, &pos, vec![("w".into(), a.shallow_clone())], None).unwrap();
        let e = read_optim(&path, &["w".into(), "v".into()]).unwrap_err().to_string();
        assert!(e.contains("step-000000007.optim.safetensors") && e.contains("no momentum for v"), "{e}");
        let model = dir.path().join("m.safetensors");
        write_tensors(&model, vec![], None).unwrap();
        let e = read_optim(&model, &[]).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("not an optimizer state file"), "{e}");
        std::fs::write(&model, b"junk").unwrap();
        let e = read_optim(&model, &[]).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("damaged optimizer state"), "{e}");
        // B7: damaged momentum bytes, and (B5) a NaN momentum buffer.
        write_optim(&path, &pos, vec![("w".into(), a.shallow_clone())], None).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = read_optim(&path, &["w".into()]).unwrap_err();
        assert!(e.is_damage() && e.to_string().contains("tensor data damaged"), "{e}");
        let nan = Tensor::from_slice(&[1.0f32, f32::NAN]);
        write_optim(&path, &pos, vec![("w".into(), nan)], None).unwrap();
        let e = read_optim(&path, &["w".into()]).unwrap_err();
        assert!(
            e.is_damage() && e.to_string().contains("momentum.w holds a non-finite value (NaN at element 1"),
            "{e}"
        );
        // An absurd best top-1.
        let odd = Position { best_top1: 7.0, ..pos.clone() };
        write_optim(&path, &odd, vec![], None).unwrap();
        let e = read_optim(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("best_top1 7"), "{e}");
    }
}
