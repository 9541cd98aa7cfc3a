//! `trainer`: the AlexNet training side: the input pipeline ([`data`]), the models
//! ([`model`]), SGD ([`sgd`]), checkpoint files ([`checkpoint`]), the training loop
//! ([`train`]), data parallel through libtorch's c10d ([`dist`]) and device selection.

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
