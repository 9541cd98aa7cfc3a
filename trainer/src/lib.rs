//! `trainer`: the AlexNet training side (input pipeline, models, SGD, checkpoints,
//! data parallel). So far: the input pipeline ([`data`]), the models ([`model`]),
//! checkpoint files ([`checkpoint`]) and device selection.

pub mod checkpoint;
pub mod config;
pub mod curves;
pub mod data;
pub mod device;
pub mod dist;
pub mod ext;
pub mod model;
pub mod schedule;
pub mod sgd;
pub mod topk;
pub mod train;
