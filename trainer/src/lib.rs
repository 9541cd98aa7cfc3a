//! `trainer`: the AlexNet training side (input pipeline, models, SGD, checkpoints,
//! data parallel). So far: the input pipeline ([`data`]) and device selection.

pub mod data;
pub mod device;
