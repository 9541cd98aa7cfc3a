//! `eval`: scores AlexNet checkpoints, long after training, through the trainer's
//! models, loader and device code.
//!
//! - [`score`]: center-crop or ten-crop top-1/top-5 of one checkpoint or an ensemble
//!   (probabilities averaged over crops, then over checkpoints), per-class accuracy,
//!   every image's top-5 ([`predictions`]).
//! - [`checkpoint`]: opens the trainer's checkpoints (model, crop, normalization and
//!   class wnids from the metadata) and PyTorch exports without metadata.
//! - [`predict`]: the top classes of image files (a photo, a folder), with the build's
//!   recipe for the input; no dataset needed for checkpoints that carry their inputs.
//! - [`kernels`]: the conv1 kernels as a picture (figure 3).
//! - [`neighbors`]: nearest training images by fc7 activations (section 6.1, figure 4).
//!
//! ```no_run
//! use eval::score::{run, ScoreConfig};
//! let cfg = ScoreConfig::new(vec!["runs/paper/checkpoints/best.safetensors".into()], "data/imagenet".into());
//! let report = run(&cfg)?; // ten crops on val by default
//! println!("top-1 {:.4} top-5 {:.4}", report.top1, report.top5);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! The top-k rule every score uses lives in the trainer (validation during training
//! uses it too): a prediction is correct at k when the label is among the k classes of
//! highest probability, ties broken towards the lower class index.

pub mod checkpoint;
pub mod cli;
pub mod kernels;
pub mod neighbors;
pub mod predict;
pub mod predictions;
pub mod score;
pub mod text;

pub use trainer::topk;
