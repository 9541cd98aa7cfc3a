//! The plan: every shard's rows, decided before any decode (train in a seeded shuffled
//! order, so every shard mixes classes; val in sorted order), and the identity of the
//! build (the parameters and inputs that decide its bytes), which a rerun must match
//! to resume.

use alexnet_shared::{shard_file_name, Encoding, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BuildConfig;
use crate::inputs::{Inputs, Item};

/// The parameters that decide a build's bytes: a rerun with the same identity resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Identity {
    pub(super) format_version: u32,
    /// Whole images and their size (absent: centre squares, as every build before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) whole: Option<(alexnet_shared::WholeResize, u32)>,
    pub(super) program_version: String,
    pub(super) encoding: Encoding,
    pub(super) quality: Option<u8>,
    /// The chroma subsampling, when not the quality's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) chroma: Option<alexnet_shared::Chroma>,
    /// Mixed builds: the fraction of each shard kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) raw_fraction: Option<f64>,
    pub(super) shard_rows: usize,
    pub(super) seed: u64,
    pub(super) limit_per_class: Option<usize>,
    /// sha256 of the class list and of every (split, key, label) in order.
    pub(super) inputs_sha256: String,
}

pub(super) struct PlannedShard {
    pub(super) split: Split,
    pub(super) file: String,
    pub(super) items: Vec<Item>,
}

/// Train: a seeded shuffle of every train item; val: listing order (sorted).
pub(super) fn plan_shards(inputs: &Inputs, cfg: &BuildConfig) -> Vec<PlannedShard> {
    let mut train = inputs.train.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    train.shuffle(&mut rng);
    let mut plan = Vec::new();
    for (split, items) in [(Split::Train, train), (Split::Val, inputs.val.clone())] {
        for (i, chunk) in items.chunks(cfg.shard_rows).enumerate() {
            plan.push(PlannedShard { split, file: shard_file_name(split, i), items: chunk.to_vec() });
        }
    }
    plan
}

pub(super) fn inputs_fingerprint(inputs: &Inputs) -> String {
    let mut h = Sha256::new();
    for w in inputs.classes.wnids() {
        h.update(w.as_bytes());
        h.update(b"\n");
    }
    for (split, items) in [("train", &inputs.train), ("val", &inputs.val)] {
        for it in items {
            h.update(format!("{split}\t{}\t{}\n", it.key, it.label).as_bytes());
        }
    }
    hex::encode(h.finalize())
}
