//! `train run --init FILE`: a new run starts from the weights of a model file instead
//! of a random initialisation, e.g. a checkpoint of another run (fine-tuning on other
//! classes) or torchvision's pretrained AlexNet converted to safetensors
//! (`python -m alexnet_bridge convert alexnet-owt-7be5be79.pth alexnet.safetensors`;
//! a `.pth` pickle is not read here: the message says how to convert it).
//!
//! Every tensor of the model must be in the file with its shape, and the file must hold
//! nothing else, with one exception: the last layer (`classifier.6`, fc8) of a file made
//! for another class count keeps this run's fresh initialisation, and the log says so.
//! Any other difference (another width, crop, arch or switch) is an error naming the
//! tensor. Only the weights are taken: the optimizer (momentum), the schedule and the
//! position start fresh, at epoch 1 step 0.
//!
//! The start is recorded in `RUN_DIR/init.json` (the file and the hash of its tensors):
//! a run stopped before its first checkpoint and started again with `--resume` takes
//! the same weights again instead of a random initialisation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::step::Learner;
use crate::checkpoint::Checkpoint;

/// The record of `--init` in the run folder.
pub const INIT_FILE: &str = "init.json";

/// The last layer's parameters: re-initialized when the class count differs.
const LAST_LAYER: [&str; 2] = ["classifier.6.weight", "classifier.6.bias"];

/// What `RUN_DIR/init.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRecord {
    /// The model file, as an absolute path.
    pub file: PathBuf,
    /// The sha256 of its tensors ([`Checkpoint::tensors_sha256`]).
    pub tensors_sha256: String,
    /// The tensors that kept their fresh initialisation (the last layer, for another
    /// class count).
    pub reinitialized: Vec<String>,
}

impl InitRecord {
    /// The record of the run in `run_dir` (None: it was not started with `--init`).
    pub fn read(run_dir: &Path) -> Result<Option<Self>> {
        let path = run_dir.join(INIT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("the record serializes");
        text.push('\n');
        Ok(alexnet_shared::atomic_write(&run_dir.join(INIT_FILE), text.as_bytes())?)
    }
}

/// Copies the weights of `path` into `learner` (see the module doc): the record for
/// `init.json` and the lines to log. `wnids`: the classes of this run's dataset (a file
/// with the same count of other classes is used as it is, with a warning).
pub fn init_weights(learner: &mut Learner, path: &Path, wnids: &[String]) -> Result<(InitRecord, Vec<String>)> {
    let shown = path.display();
    if matches!(path.extension().and_then(|e| e.to_str()), Some("pth" | "pt" | "bin" | "ckpt")) {
        bail!(
            "--init {shown}: a PyTorch pickle is not read here; convert it to safetensors first: `PYTHONPATH=python \
             python -m alexnet_bridge convert {shown} weights.safetensors`, then --init weights.safetensors"
        );
    }
    let ckpt = Checkpoint::open(path).with_context(|| format!("--init {shown}"))?;
    let file_shapes = ckpt.shapes();
    let vars = learner.vs.variables();
    let mut missing: Vec<&str> =
        learner.names.iter().map(String::as_str).filter(|n| !file_shapes.contains_key(*n)).collect();
    missing.sort();
    let mut extra: Vec<&str> = file_shapes.keys().map(String::as_str).filter(|n| !vars.contains_key(*n)).collect();
    extra.sort();
    if !missing.is_empty() || !extra.is_empty() {
        bail!(
            "--init {shown}: its tensors are not this model's: missing {missing:?}, unexpected {extra:?} (a file of \
             the other model? model.arch is {})",
            learner.model.config().arch.name()
        );
    }
    let mut reinitialized = Vec::new();
    // In forward order, so that a mismatch names the first layer that differs.
    for name in crate::dist::forward_order(&learner.names).into_iter().map(|i| &learner.names[i]) {
        let want = vars[name].size();
        let have: Vec<i64> = file_shapes[name].iter().map(|&d| d as i64).collect();
        if have == want {
            continue;
        }
        // fc8 of another class count: [classes, fc7] and [classes]; fc7's width must match.
        let other_classes = LAST_LAYER.contains(&name.as_str()) && have.len() == want.len() && have[1..] == want[1..];
        if !other_classes {
            bail!(
                "--init {shown}: {name} has shape {have:?} there, this model needs {want:?}: --init takes a network \
                 of the same configuration (model.* keys), apart from the class count"
            );
        }
        reinitialized.push(name.clone());
    }
    tch::no_grad(|| -> Result<()> {
        for name in learner.names.iter().filter(|n| !reinitialized.contains(n)) {
            let mut var = vars[name].shallow_clone();
            let t = ckpt.tensor(name).with_context(|| format!("--init {shown}"))?;
            var.f_copy_(&t.f_to_device(var.device())?.f_to_kind(var.kind())?)?;
        }
        Ok(())
    })?;
    let mut lines = Vec::new();
    let here = learner.model.config().num_classes;
    if reinitialized.is_empty() {
        lines.push(format!(
            "--init {shown}: weights of all {} tensors; optimizer and schedule start fresh",
            learner.names.len()
        ));
        if let Some(meta) = ckpt.meta().filter(|m| !m.wnids.is_empty() && m.wnids != wnids) {
            let same = meta.wnids.iter().zip(wnids).filter(|(a, b)| a == b).count();
            lines.push(format!(
                "warning: --init {shown}: its {here} classes are not this dataset's ({same} of {here} wnids at the same \
                 index): the last layer keeps its weights, class by index"
            ));
        }
    } else {
        let there = file_shapes["classifier.6.weight"][0];
        lines.push(format!(
            "--init {shown}: weights of {} of {} tensors; the last layer (classifier.6) re-initialized: the file has \
             {there} classes, this dataset {here}; optimizer and schedule start fresh",
            learner.names.len() - reinitialized.len(),
            learner.names.len()
        ));
    }
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    Ok((InitRecord { file, tensors_sha256: ckpt.tensors_sha256().to_string(), reinitialized }, lines))
}
