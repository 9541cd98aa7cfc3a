//! `eval`: scores AlexNet checkpoints. The top-k rule every score uses lives in the
//! trainer (validation during training uses it too): a prediction is correct at k when
//! the label is among the k classes of highest probability, ties broken towards the
//! lower class index (so results do not depend on the sort algorithm of a device).

pub use trainer::topk;
