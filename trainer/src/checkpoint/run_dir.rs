//! The checkpoints of a run folder (`RUN_DIR/checkpoints`): written model file first,
//! optimizer file second (a checkpoint counts only when both exist), the latest found
//! by global step, old ones pruned.

use std::path::{Path, PathBuf};

use safetensors::tensor::SafeTensors;
use tch::{nn::VarStore, Tensor};

use super::{optim_path, save_model, write_optim, CheckpointError, CheckpointMeta, Position};

pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(run_dir: &Path) -> Self {
        Self { dir: run_dir.join("checkpoints") }
    }

    /// `RUN_DIR/checkpoints`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create(&self) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| alexnet_shared::Error::io(&self.dir, e))?;
        Ok(())
    }

    /// `RUN_DIR/checkpoints/{stem}.safetensors`.
    pub fn path_of(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.safetensors"))
    }

    /// Model file, then optimizer file; returns the model file's path.
    pub fn write(
        &self,
        stem: &str,
        vs: &VarStore,
        meta: &CheckpointMeta,
        pos: &Position,
        momentum: Vec<(String, Tensor)>,
    ) -> Result<PathBuf, CheckpointError> {
        let path = self.path_of(stem);
        save_model(&path, vs, Some(meta))?;
        write_optim(&optim_path(&path), pos, momentum)?;
        Ok(path)
    }

    /// The checkpoint with the highest global step whose optimizer file exists.
    pub fn latest(&self) -> Result<Option<PathBuf>, CheckpointError> {
        if !self.dir.exists() {
            return Ok(None);
        }
        let io = |e| alexnet_shared::Error::io(&self.dir, e);
        let mut best: Option<(u64, PathBuf)> = None;
        for e in std::fs::read_dir(&self.dir).map_err(io)? {
            let p = e.map_err(io)?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !name.ends_with(".optim.safetensors") || name.starts_with("best") || name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(&p).map_err(|e| alexnet_shared::Error::io(&p, e))?;
            let Ok((_, h)) = SafeTensors::read_metadata(&bytes) else { continue };
            let step: u64 =
                h.metadata().as_ref().and_then(|m| m.get("global_step")).and_then(|s| s.parse().ok()).unwrap_or(0);
            let model = PathBuf::from(p.to_string_lossy().replace(".optim.safetensors", ".safetensors"));
            if model.exists() && best.as_ref().is_none_or(|(s, _)| step > *s) {
                best = Some((step, model));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// Keeps the `keep` newest epoch checkpoints (and `best`); step checkpoints older
    /// than the newest epoch checkpoint go too.
    pub fn prune(&self, keep: usize) -> Result<(), CheckpointError> {
        let io = |e| alexnet_shared::Error::io(&self.dir, e);
        let mut epochs: Vec<PathBuf> = Vec::new();
        let mut steps: Vec<PathBuf> = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io)? {
            let p = e.map_err(io)?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(".optim.safetensors") {
                continue;
            }
            if name.starts_with("epoch-") {
                epochs.push(p);
            } else if name.starts_with("step-") {
                steps.push(p);
            }
        }
        epochs.sort();
        let old = epochs.len().saturating_sub(keep.max(1));
        for p in epochs.iter().take(old).chain(steps.iter()) {
            let _ = std::fs::remove_file(p);
            let _ = std::fs::remove_file(optim_path(p));
        }
        Ok(())
    }
}
