//! A run's checkpoints (`RUN_DIR/checkpoints`): `epoch-NNN` after each epoch, `best`
//! (the best val top-1 so far), `step-NNNNNNNNN` mid-epoch (on a stop, or every
//! `run.checkpoint_minutes`). Each is a model file and an optimizer file, written in
//! that order, so a checkpoint counts only when both exist: a stop between the two
//! leaves the previous checkpoint the latest. Rewriting a name removes its old
//! optimizer file first, so a model file is never paired with an older optimizer file.
//!
//! [`RunDir::survey`] lists what a resume can use, newest first, and what it cannot
//! (and why); [`RunDir::prune`] goes by the epoch number in the name, and never
//! removes the checkpoint just written.

use std::path::{Path, PathBuf};

use tch::{nn::VarStore, Tensor};

use super::file::read_header;
use super::{io, optim_path, save_model, write_optim, CheckpointError, CheckpointMeta, Position};

/// The checkpoints of a run folder, as a resume sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// Model files whose optimizer file exists and has a readable header, the highest
    /// global step first.
    pub candidates: Vec<PathBuf>,
    /// Checkpoint files a resume cannot use, each with the reason (no optimizer file,
    /// an unreadable one, `best`).
    pub unusable: Vec<(PathBuf, String)>,
}

impl Survey {
    /// No checkpoint file at all: a new run.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty() && self.unusable.is_empty()
    }
}

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
        Ok(self.survey()?.candidates.into_iter().next())
    }

    /// Every checkpoint of the folder: those a resume may use (a model file with an
    /// optimizer file whose header reads), the highest global step first (then the
    /// later name), and the others with the reason. Only the optimizer files' headers
    /// are read; dotfiles (temporary files) are ignored.
    pub fn survey(&self) -> Result<Survey, CheckpointError> {
        if !self.dir.exists() {
            return Ok(Survey::default());
        }
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        let mut unusable = Vec::new();
        for p in self.files()? {
            let name = file_name(&p);
            if !name.ends_with(".safetensors") || name.ends_with(".optim.safetensors") || name.starts_with('.') {
                continue;
            }
            let optim = optim_path(&p);
            if name == "best.safetensors" {
                unusable.push((p, "best is kept for eval, a resume starts from the latest checkpoint".into()));
                continue;
            }
            if !optim.exists() {
                unusable.push((p, format!("no optimizer file {}", file_name(&optim))));
                continue;
            }
            match read_header(&optim) {
                Ok(header) => {
                    let step = header
                        .metadata()
                        .as_ref()
                        .and_then(|m| m.get("global_step"))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    found.push((step, p));
                }
                Err(e @ (CheckpointError::Bad { .. } | CheckpointError::Damaged { .. })) => {
                    unusable.push((p, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        Ok(Survey { candidates: found.into_iter().map(|(_, p)| p).collect(), unusable })
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
        let optim = optim_path(&path);
        // An older pair of this name must not be completed by the new model file.
        match std::fs::remove_file(&optim) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&optim, e)),
            _ => {}
        }
        let hash = save_model(&path, vs, Some(meta))?;
        write_optim(&optim, pos, momentum, hash.as_deref())?;
        Ok(path)
    }

    /// After the epoch checkpoint `written` (`epoch-NNN`): keeps it and the `keep - 1`
    /// highest-numbered epoch checkpoints below it (and `best`); removes the other epoch
    /// checkpoints below it and the step checkpoints of global steps before its own.
    /// Numbers are read from the names (`epoch-NNN`, `step-NNNNNNNNN`), not their
    /// order; checkpoints numbered above `written` (left by a run that went back to an
    /// earlier checkpoint) are not touched: they are replaced as the run reaches them.
    pub fn prune(&self, keep: usize, written: &Path) -> Result<(), CheckpointError> {
        let number = |p: &Path, prefix: &str| -> Option<u64> {
            file_name(p).strip_prefix(prefix)?.strip_suffix(".safetensors")?.parse().ok()
        };
        let Some(current) = number(written, "epoch-") else { return Ok(()) };
        let step = read_header(&optim_path(written))?
            .metadata()
            .as_ref()
            .and_then(|m| m.get("global_step"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let mut epochs: Vec<(u64, PathBuf)> = Vec::new();
        let mut old_steps: Vec<PathBuf> = Vec::new();
        for p in self.files()? {
            if file_name(&p).ends_with(".optim.safetensors") {
                continue;
            }
            if let Some(e) = number(&p, "epoch-").filter(|&e| e < current) {
                epochs.push((e, p));
            } else if number(&p, "step-").is_some_and(|s| s < step) {
                old_steps.push(p);
            }
        }
        epochs.sort();
        let old = epochs.len().saturating_sub(keep.max(1) - 1);
        for p in epochs.iter().take(old).map(|(_, p)| p).chain(old_steps.iter()) {
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
            data_fingerprint: None,
            inputs: None,
            provenance: None,
            pca_noise: true,
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
        write_optim(&optim_path(&run.path_of("step-000000030")), &at(30), momentum(), None).unwrap();
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
        run.prune(2, &run.path_of("epoch-003")).unwrap();
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
        run.prune(0, &run.path_of("epoch-003")).unwrap(); // keeps at least one
        assert_eq!(names(&run)[2..], ["epoch-003.optim.safetensors", "epoch-003.safetensors"]);
        assert_eq!(run.latest().unwrap(), Some(run.path_of("epoch-003")));
    }

    /// B6: the review's case. Stale epoch-002/003 (their optimizer files gone) sort
    /// after a new epoch-001 by name: pruning by name order deleted the new one. By
    /// number, the checkpoint just written stays, with the ones below it; the stale
    /// ones above it are left for the run to replace; `epoch-1000` is above
    /// `epoch-999` although it sorts before it.
    #[test]
    fn prune_goes_by_epoch_number_and_keeps_what_was_just_written() {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(t.path());
        run.create().unwrap();
        let (vs, meta) = model();
        for stem in ["epoch-002", "epoch-003"] {
            save_model(&run.path_of(stem), &vs, Some(&meta)).unwrap();
        }
        run.write("epoch-001", &vs, &meta, &at(10), vec![]).unwrap();
        run.prune(1, &run.path_of("epoch-001")).unwrap();
        assert!(run.path_of("epoch-001").exists() && optim_path(&run.path_of("epoch-001")).exists());
        assert!(run.path_of("epoch-003").exists());
        let survey = run.survey().unwrap();
        assert_eq!(survey.candidates, [run.path_of("epoch-001")]);
        assert_eq!(survey.unusable.len(), 2);
        assert!(survey.unusable[0].1.contains("no optimizer file epoch-002.optim.safetensors"), "{survey:?}");

        for (stem, step) in [("epoch-998", 9980), ("epoch-999", 9990), ("step-000009995", 9995), ("epoch-1000", 10000)]
        {
            run.write(stem, &vs, &meta, &at(step), vec![]).unwrap();
        }
        run.prune(2, &run.path_of("epoch-1000")).unwrap();
        let left: Vec<String> = names(&run).into_iter().filter(|n| !n.contains(".optim.")).collect();
        assert_eq!(left, ["epoch-1000.safetensors", "epoch-999.safetensors"]);
    }

    /// Rewriting a name removes its old optimizer file before the new model file is
    /// written: a stop in between leaves no mismatched pair.
    #[test]
    fn a_rewritten_checkpoint_never_pairs_with_the_old_optimizer_file() {
        let t = tempfile::tempdir().unwrap();
        let run = RunDir::new(t.path());
        run.create().unwrap();
        let (vs, meta) = model();
        let p = run.write("epoch-001", &vs, &meta, &at(10), vec![]).unwrap();
        let first = super::super::read_optim(&optim_path(&p), &[]).unwrap().model_sha256.unwrap();
        assert_eq!(first, super::super::Checkpoint::open(&p).unwrap().tensors_sha256());
        // Rewritten with other weights: the optimizer file names the new model file.
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let _ = v.fill_(0.5);
            }
        });
        run.write("epoch-001", &vs, &meta, &at(11), vec![]).unwrap();
        let second = super::super::read_optim(&optim_path(&p), &[]).unwrap().model_sha256.unwrap();
        assert_ne!(first, second);
        assert_eq!(second, super::super::Checkpoint::open(&p).unwrap().tensors_sha256());
    }
}
