//! `trainer`: AlexNet on libtorch, in two layers for its two clients.
//!
//! The runtime (always built; what `eval` uses, with `default-features = false`):
//! - [`model`]: the two AlexNets, named and shaped as the PyTorch modules;
//! - [`checkpoint`]: the checkpoint format: model file, optimizer file, run folder;
//! - [`data`]: the input pipeline: memory-mapped shards -> workers -> batch ring ->
//!   float batches on the device ([`data::Pipeline`]);
//! - [`topk`], [`device`], [`ext`] (bf16 autocast and deterministic mode);
//! - [`provenance`]: the build, libtorch and run a checkpoint or run folder comes from.
//!
//! Training (the default `train` feature):
//! - [`train`]: the run: setup, [`train::Learner::step`], epochs, validation, metrics;
//! - [`config`]: the TOML presets, `--set`, what a resumed run may change;
//! - [`sgd`], [`schedule`]: the optimizer and the learning-rate schedules;
//! - [`dist`]: data parallel through libtorch's c10d (the C++ shim);
//! - [`curves`]: the training curves picture; [`cli`]: what the `train` binary runs;
//! - [`describe`]: the layer table of `train describe`; [`compare`]: `train compare`;
//! - [`figure1`]: the paper's Figure 1 experiment (ReLU against tanh), `train figure1`.

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod ext;
pub mod model;
pub mod provenance;
pub mod topk;

#[cfg(feature = "train")]
pub mod cli;
#[cfg(feature = "train")]
pub mod compare;
#[cfg(feature = "train")]
pub mod config;
#[cfg(feature = "train")]
pub mod curves;
#[cfg(feature = "train")]
pub mod describe;
#[cfg(feature = "train")]
pub mod dist;
#[cfg(feature = "train")]
pub mod figure1;
#[cfg(feature = "train")]
pub mod schedule;
#[cfg(feature = "train")]
pub mod sgd;
#[cfg(feature = "train")]
pub mod train;
