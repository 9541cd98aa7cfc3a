//! The checkpoint format, in one place (DESIGN.md, "Checkpoints"). A checkpoint is two
//! safetensors files in a run folder:
//!
//! - **The model file** (`{stem}.safetensors`, [`model_file`]): only the model tensors,
//!   under the names and shapes of the PyTorch modules in `reference_models.py`,
//!   contiguous float32, with string metadata ([`CheckpointMeta`]: `format` =
//!   [`FORMAT`], `model`, `num_classes`, `crop`, `width`, `lrn_alpha`, `lrn_towers`,
//!   `normalization`, `epoch`, `step`, `manifest_sha256`, `wnids` as a JSON list).
//!   PyTorch loads it with `model.load_state_dict(safetensors.torch.load_file(path),
//!   strict=True)`; files made by PyTorch (no metadata) load here too, their model read
//!   off the tensor names and shapes ([`Checkpoint::infer_config`]). Keys this version
//!   does not know are ignored; new keys are optional (a missing one means today's
//!   behaviour), so every file written since `alexnet-checkpoint-v1` keeps loading.
//! - **The optimizer file** (`{stem}.optim.safetensors`, [`optim_file`]): the momentum
//!   buffers (`momentum.{parameter}`) and the run's [`Position`] (epoch, batch, global
//!   step, the plateau schedule's errors, the best top-1), so that a resumed run
//!   continues exactly.
//! - **The run folder** (`RUN_DIR/checkpoints`, [`run_dir`]): `epoch-NNN`,
//!   `step-NNNNNNNNN` and `best`; the model file is written first and the optimizer
//!   file last, so a checkpoint counts only when both exist ([`RunDir::latest`]).
//!
//! Every file is written atomically (a temporary file, then a rename) and never
//! modified afterwards; [`Checkpoint::open`] maps a model file once and serves its
//! metadata, shapes, tensors and the loading into a model from that one map.
//!
//! What is checked on every open (model and optimizer files alike): the file is a
//! regular file (a FIFO, directory or device is refused before it is read); its header
//! is within the file and describes it exactly; the tensors hash to the
//! `tensors_sha256` the file records (files written before that key, and PyTorch
//! exports, are not hashed); every value is finite. The optimizer file records the
//! `model_tensors_sha256` of its model file, and the model file the
//! `data_fingerprint` of its dataset ([`data_fingerprint`]); the resume compares both.
//!
//! ```no_run
//! use trainer::checkpoint::{Checkpoint, Overrides};
//! # fn main() -> Result<(), trainer::checkpoint::CheckpointError> {
//! let ckpt = Checkpoint::open("runs/paper/checkpoints/best.safetensors".as_ref())?;
//! let cfg = match ckpt.meta() {
//!     Some(meta) => meta.model.clone(),
//!     None => ckpt.infer_config(&Overrides::default())?, // a PyTorch export
//! };
//! let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let _model = trainer::model::AlexNet::new(&vs.root(), &cfg).expect("a valid config");
//! ckpt.load_into(&mut vs)?;
//! let (_conv1, _shape) = ckpt.tensor_f32("features.0.weight")?;
//! # Ok(()) }
//! ```

use std::path::Path;

mod file;
mod infer;
pub mod meta;
pub mod model_file;
pub mod optim_file;
pub mod run_dir;

pub use file::{write_tensors, TENSORS_SHA256};
pub use infer::Overrides;
pub use meta::{data_fingerprint, CheckpointMeta, InputsMeta};
pub use model_file::{load_model, read_meta, save_model, Checkpoint};
pub use optim_file::{optim_path, read_optim, write_optim, OptimState, Position, StallState, OPTIM_FORMAT};
pub use run_dir::{RunDir, Survey};

/// `format` of a model file's metadata.
pub const FORMAT: &str = "alexnet-checkpoint-v1";

/// Errors of the checkpoint files: each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file this program did not accept (not a checkpoint, another model, bad metadata).
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
    /// A file damaged after it was written: truncated, a header that does not parse or
    /// describe the file, tensor bytes that do not match their recorded hash.
    #[error("{path}: {message}")]
    Damaged { path: String, message: String },
    /// A NaN or an infinity among the weights (or momentum buffers), naming the tensor.
    #[error("{path}: {message}")]
    NonFinite { path: String, message: String },
    #[error("{0}")]
    Io(#[from] alexnet_shared::Error),
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

fn bad(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad { path: path.display().to_string(), message: message.into() }
}

fn damaged(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Damaged { path: path.display().to_string(), message: message.into() }
}

impl CheckpointError {
    /// True when the file is damaged or holds non-finite values, or vanished: a resume
    /// falls back to the previous checkpoint instead of stopping.
    pub fn is_damage(&self) -> bool {
        match self {
            CheckpointError::Damaged { .. } | CheckpointError::NonFinite { .. } => true,
            CheckpointError::Io(alexnet_shared::Error::Io { source, .. }) => {
                source.kind() == std::io::ErrorKind::NotFound || source.kind() == std::io::ErrorKind::UnexpectedEof
            }
            _ => false,
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> CheckpointError {
    CheckpointError::Io(alexnet_shared::Error::io(path, e))
}
