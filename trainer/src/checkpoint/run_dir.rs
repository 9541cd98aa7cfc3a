//! A run's checkpoints (`RUN_DIR/checkpoints`): `epoch-NNN` after each epoch, `best`
//! (the best val top-1 so far), `step-NNNNNNNNN` mid-epoch (on a stop, or every
//! `run.checkpoint_minutes`). Each is a model file and an optimizer file, written in
//! that order, so a checkpoint counts only when both exist: a stop between the two
//! leaves the previous checkpoint the latest.

use std::path::{Path, PathBuf};

use tch::{nn::VarStore, Tensor};

use super::file::read_header;
use super::{io, optim_path, save_model, write_optim, CheckpointError, CheckpointMeta, Position};

/// The checkpoint folder of a run.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// The checkpoints of the run folder `run_dir` (nothing is created).
    pub fn new(run_dir: &Path) -> Self {
        Self { dir: run_dir.join("checkpoints") }
    }

    /// `RUN_DIR/checkpoints`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create(&self) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))
    }

    /// `RUN_DIR/checkpoints/{stem}.safetensors`.
    pub fn path_of(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.safetensors"))
    }

    /// The model file of the checkpoint with the highest global step whose optimizer
    /// file exists (`best` and dotfiles aside); None in a new run. Only the optimizer
    /// files' headers are read; an unreadable one does not count.
    pub fn latest(&self) -> Result<Option<PathBuf>, CheckpointError> {
        if !self.dir.exists() {
            return Ok(None);
        }
        let mut best: Option<(u64, PathBuf)> = None;
        for p in self.files()? {
            let name = file_name(&p);
            if !name.ends_with(".optim.safetensors") || name.starts_with("best") || name.starts_with('.') {
                continue;
            }
            let header = match read_header(&p) {
                Ok(h) => h,
                Err(CheckpointError::Bad { .. }) => continue,
                Err(e) => return Err(e),
            };
            let step: u64 =
                header.metadata().as_ref().and_then(|m| m.get("global_step")).and_then(|s| s.parse().ok()).unwrap_or(0);
            let model = PathBuf::from(p.to_string_lossy().replace(".optim.safetensors", ".safetensors"));
            if model.exists() && best.as_ref().is_none_or(|(s, _)| step > *s) {
                best = Some((step, model));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// Writes the checkpoint `stem`: the model file, then the optimizer file (a
    /// checkpoint counts only when both exist). `momentum`: (parameter name, buffer).
    /// Returns the model file's path.
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

    /// Keeps the `keep` newest epoch checkpoints (and `best`); step checkpoints older
    /// than the newest epoch checkpoint go too.
    pub fn prune(&self, keep: usize) -> Result<(), CheckpointError> {
        let mut epochs: Vec<PathBuf> = Vec::new();
        let mut steps: Vec<PathBuf> = Vec::new();
        for p in self.files()? {
            let name = file_name(&p);
            if name.ends_with(".optim.safetensors") {
                continue;
            }
            if name.starts_with("epoch-") {
                epochs.push(p);
            } else if name.starts_with("step-") {
                steps.push(p);
            }
        }
        let old = epochs.len().saturating_sub(keep.max(1));
        for p in epochs.iter().take(old).chain(steps.iter()) {
            let _ = std::fs::remove_file(p);
            let _ = std::fs::remove_file(optim_path(p));
        }
        Ok(())
    }

    /// The folder's entries, sorted by name.
    fn files(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        let mut paths =
            entries.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>().map_err(|e| io(&self.dir, e))?;
        paths.sort();
        Ok(paths)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;
    use crate::model::{AlexNet, ModelConfig};
    use tch::Device;

    fn model() -> (VarStore, CheckpointMeta) {
        let cfg = ModelConfig { width: 0.1, crop: 67, ..ModelConfig::paper(2) };
        let vs = VarStore::new(Device::Cpu);
        let _m = AlexNet::new(&vs.root(), &cfg).unwrap();
        let meta = CheckpointMeta {
            model: cfg,
            normalization: Normalization::MeanImage,
            epoch: 0,
            step: 0,
            manifest_sha256: String::new(),
            wnids: vec!["n01".into(), "n02".into()],
        };
        (vs, meta)
    }

    fn at(step: u64) -> Position {
        Position { epoch: step as usize / 10, global_step: step, best_top1: 0.5, ..Default::default() }
    }

    fn names(run: &RunDir) -> Vec<String> {
        run.files().unwrap().iter().map(|p| file_name(p)).collect()
    }

    #[test]
    fn latest_is_the_highest_step_with_both_files() {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(t.path());
        assert_eq!(run.dir(), t.path().join("checkpoints"));
        assert_eq!(run.latest().unwrap(), None); // no folder yet
        run.create().unwrap();
        assert_eq!(run.latest().unwrap(), None);
        let (vs, meta) = model();
        let momentum = || vs.variables().into_iter().collect::<Vec<_>>();
        let e1 = run.write("epoch-001", &vs, &meta, &at(10), momentum()).unwrap();
        assert_eq!(e1, run.path_of("epoch-001"));
        assert!(optim_path(&e1).exists());
        run.write("step-000000015", &vs, &meta, &at(15), momentum()).unwrap();
        run.write("best", &vs, &meta, &at(40), momentum()).unwrap(); // best never counts
        assert_eq!(run.latest().unwrap(), Some(run.path_of("step-000000015")));
        // A model file whose optimizer file was never written (a stop between the two).
        save_model(&run.path_of("epoch-002"), &vs, Some(&meta)).unwrap();
        assert_eq!(run.latest().unwrap(), Some(run.path_of("step-000000015")));
        // An optimizer file without its model file, and a damaged optimizer file.
        write_optim(&optim_path(&run.path_of("step-000000030")), &at(30), momentum()).unwrap();
        let s25 = run.write("step-000000025", &vs, &meta, &at(25), momentum()).unwrap();
        let bytes = std::fs::read(optim_path(&s25)).unwrap();
        std::fs::write(optim_path(&s25), &bytes[..bytes.len() - 4]).unwrap();
        assert_eq!(run.latest().unwrap(), Some(run.path_of("step-000000015")));
        run.write("epoch-002", &vs, &meta, &at(20), momentum()).unwrap();
        assert_eq!(run.latest().unwrap(), Some(run.path_of("epoch-002")));
    }

    #[test]
    fn prune_keeps_the_newest_epochs_and_best() {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(t.path());
        run.create().unwrap();
        let (vs, meta) = model();
        for (stem, step) in
            [("epoch-001", 10), ("step-000000015", 15), ("epoch-002", 20), ("epoch-003", 30), ("best", 20)]
        {
            run.write(stem, &vs, &meta, &at(step), vec![]).unwrap();
        }
        run.prune(2).unwrap();
        assert_eq!(
            names(&run),
            [
                "best.optim.safetensors",
                "best.safetensors",
                "epoch-002.optim.safetensors",
                "epoch-002.safetensors",
                "epoch-003.optim.safetensors",
                "epoch-003.safetensors"
            ]
        );
        run.prune(0).unwrap(); // keeps at least one
        assert_eq!(names(&run)[2..], ["epoch-003.optim.safetensors", "epoch-003.safetensors"]);
        assert_eq!(run.latest().unwrap(), Some(run.path_of("epoch-003")));
    }
}
