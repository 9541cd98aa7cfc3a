//! `trainer`: the AlexNet training side (input pipeline, models, SGD, checkpoints,
//! data parallel). This first part holds device selection, shared by `train` and `eval`.

pub mod device;
