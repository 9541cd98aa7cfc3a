//! `eval`: scores AlexNet checkpoints. This first part is the top-k rule every score
//! uses: a prediction is correct at k when the label is among the k classes of highest
//! probability, ties broken towards the lower class index (so results do not depend on
//! the sort algorithm of a device).

pub mod topk;
