//! Which rows each rank reads, in which order: deterministic given (seed, epoch, rank).
//!
//! Train (DESIGN.md, "Distributed data parallel"): one seeded permutation of all rows
//! per epoch, cut into `world` equal slices; rank `r` takes slice `r`, in whole batches,
//! the remainder dropped (PyTorch's `DistributedSampler(drop_last=True)` with a
//! drop-last `DataLoader`), so every rank takes the same number of steps.
//! Validation: every row exactly once over all ranks, in order, the last batch of a
//! rank possibly short. [`EpochPlan`] makes that choice for a loader's pass.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::{Crops, LoaderConfig, Rows, Shuffle};
pub use super::seed::derive_seed;

/// How one rank's passes over a split are ordered: the part of a [`LoaderConfig`] that
/// decides which rows a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochPlan {
    pub shuffle: Shuffle,
    pub seed: u64,
    pub rank: usize,
    pub world: usize,
    /// Images per batch: a train pass takes whole batches only.
    pub batch: usize,
}

impl EpochPlan {
    pub fn of(cfg: &LoaderConfig) -> Self {
        Self { shuffle: cfg.shuffle, seed: cfg.seed, rank: cfg.rank, world: cfg.world, batch: cfg.batch_size }
    }

    /// The split rows of this rank's pass `epoch`, in order: a train epoch
    /// ([`Self::train_rows`], without the rows `rows` excludes) for `Crops::Train`, else
    /// this rank's share ([`val_range`]) of the rows `rows` covers. `shard_sizes` are the
    /// row counts of the split's shards, in order.
    pub fn rows(&self, shard_sizes: &[usize], epoch: u64, rows: &Rows, crops: Crops) -> Vec<usize> {
        self.rows_after(shard_sizes, epoch, rows, crops, &[])
    }

    /// [`Self::rows`] of the rest of a train epoch after the parts `trained`
    /// ([`Self::train_rows_after`]); evaluation passes have no parts (`trained` is
    /// ignored: they are read whole).
    pub fn rows_after(
        &self,
        shard_sizes: &[usize],
        epoch: u64,
        rows: &Rows,
        crops: Crops,
        trained: &[Trained],
    ) -> Vec<usize> {
        let n: usize = shard_sizes.iter().sum();
        let share = |len: usize| val_range(len, self.rank, self.world);
        match (crops, rows) {
            (Crops::Train, Rows::All) => self.train_rows_after(shard_sizes, epoch, &[], trained),
            (Crops::Train, Rows::Except(held)) => self.train_rows_after(shard_sizes, epoch, held, trained),
            (_, Rows::All) => share(n).collect(),
            (_, Rows::Only(only)) => share(only.len()).map(|i| only[i]).collect(),
            (_, Rows::Except(held)) => {
                let kept: Vec<usize> = (0..n).filter(|r| held.binary_search(r).is_err()).collect();
                share(kept.len()).map(|i| kept[i]).collect()
            }
        }
    }

    /// The rows this rank trains on in `epoch`, in order: `steps * batch` of them, none
    /// of `held_out` (sorted). The permutation is drawn over all rows, the held-out ones
    /// are taken out, and the rest is cut into the ranks' slices.
    pub fn train_rows(&self, shard_sizes: &[usize], epoch: u64, held_out: &[usize]) -> Vec<usize> {
        self.train_rows_after(shard_sizes, epoch, held_out, &[])
    }

    /// The rows this rank trains on in the rest of `epoch`, after the parts `trained`
    /// (in order; each at its own world size and batch, as a run stopped and resumed at
    /// another world size): each part's ranks read the first `batches` batches of their
    /// slices; what they had not read yet, slice after slice, is dealt again over this
    /// plan's ranks in whole batches. Every row of the epoch is read at most once; a row
    /// is left out only where a dealing drops the rows that do not fill a batch on
    /// every rank. With no parts, or one at this world size and batch, it is the rest of
    /// [`Self::train_rows`].
    pub fn train_rows_after(
        &self,
        shard_sizes: &[usize],
        epoch: u64,
        held_out: &[usize],
        trained: &[Trained],
    ) -> Vec<usize> {
        let (rank, world, batch) = (self.rank, self.world, self.batch);
        assert!(world >= 1 && rank < world && batch >= 1);
        let mut rest = self.epoch_order(shard_sizes, epoch, held_out);
        for t in trained {
            rest = t.unread(&rest);
        }
        let (slice, take) = dealt(rest.len(), world, batch);
        rest[rank * slice..rank * slice + take].to_vec()
    }

    /// The epoch's permutation of the split's rows, without `held_out`.
    fn epoch_order(&self, shard_sizes: &[usize], epoch: u64, held_out: &[usize]) -> Vec<usize> {
        let n: usize = shard_sizes.iter().sum();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(&[self.seed, epoch, 0x5ea1]));
        let order: Vec<usize> = match self.shuffle {
            Shuffle::Full => {
                let mut v: Vec<usize> = (0..n).collect();
                v.shuffle(&mut rng);
                v
            }
            Shuffle::ShardThenRow => {
                let mut starts = Vec::with_capacity(shard_sizes.len());
                let mut s = 0;
                for &len in shard_sizes {
                    starts.push((s, len));
                    s += len;
                }
                starts.shuffle(&mut rng);
                let mut v = Vec::with_capacity(n);
                for (start, len) in starts {
                    let first = v.len();
                    v.extend(start..start + len);
                    v[first..].shuffle(&mut rng);
                }
                v
            }
        };
        if held_out.is_empty() {
            return order;
        }
        let mut out = vec![false; n];
        for &r in held_out {
            out[r] = true;
        }
        order.into_iter().filter(|&r| !out[r]).collect()
    }
}

/// (slice, taken) of each of `world` ranks dealt `rows` rows in whole batches of
/// `batch`: rank `r` reads `[r * slice, r * slice + taken)`.
fn dealt(rows: usize, world: usize, batch: usize) -> (usize, usize) {
    let slice = rows / world;
    (slice, slice / batch * batch)
}

/// A part of an epoch already trained: every one of `world` ranks read `batches`
/// batches of `batch` rows of its slice (recorded in the optimizer file, so that a run
/// can resume at another world size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trained {
    pub world: usize,
    pub batch: usize,
    pub batches: usize,
}

impl Trained {
    /// The rows of `order` (dealt over this part's ranks) that its ranks had not read.
    fn unread(&self, order: &[usize]) -> Vec<usize> {
        let (slice, take) = dealt(order.len(), self.world.max(1), self.batch.max(1));
        let read = (self.batches * self.batch).min(take);
        (0..self.world).flat_map(|r| order[r * slice + read..r * slice + take].iter().copied()).collect()
    }
}

/// The rows rank `rank` of `world` trains on in `epoch`, in order: `steps * batch` of
/// them ([`EpochPlan::train_rows`] with nothing held out).
pub fn train_rows(
    shard_sizes: &[usize],
    shuffle: Shuffle,
    seed: u64,
    epoch: u64,
    rank: usize,
    world: usize,
    batch: usize,
) -> Vec<usize> {
    EpochPlan { shuffle, seed, rank, world, batch }.train_rows(shard_sizes, epoch, &[])
}

/// The rows of train held out of training (to drive the plateau schedule): `count`
/// rows drawn once from `seed`, the same in every epoch and on every rank; sorted.
pub fn held_out_rows(rows: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(&[seed, 0x401d_0017]));
    let mut v = rand::seq::index::sample(&mut rng, rows, count.min(rows)).into_vec();
    v.sort_unstable();
    v
}

/// Steps per epoch of a train split: the same on every rank.
pub fn train_steps(rows: usize, world: usize, batch: usize) -> usize {
    rows / world / batch
}

/// The contiguous range of validation rows of `rank`: all rows over all ranks, once.
pub fn val_range(rows: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    assert!(world >= 1 && rank < world);
    (rows * rank / world)..(rows * (rank + 1) / world)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_takes_the_same_steps_and_rows_are_disjoint_and_whole() {
        let shards = [100, 100, 37];
        for shuffle in [Shuffle::Full, Shuffle::ShardThenRow] {
            let (world, batch) = (3, 8);
            let per: Vec<Vec<usize>> =
                (0..world).map(|r| train_rows(&shards, shuffle, 7, 2, r, world, batch)).collect();
            let steps = train_steps(237, world, batch);
            assert_eq!(steps, 9); // 237 / 3 = 79 per rank, 9 whole batches of 8
            let mut all: Vec<usize> = per.iter().flatten().copied().collect();
            assert!(per.iter().all(|p| p.len() == steps * batch));
            all.sort();
            let before = all.len();
            all.dedup();
            assert_eq!(all.len(), before, "a row is read twice in one epoch");
            assert!(all.iter().all(|&r| r < 237));
        }
    }

    #[test]
    fn one_rank_one_epoch_reads_every_row_once_when_batches_divide() {
        let mut r = train_rows(&[64, 64], Shuffle::Full, 1, 0, 0, 1, 16);
        r.sort();
        assert_eq!(r, (0..128).collect::<Vec<_>>());
        let mut r = train_rows(&[64, 64], Shuffle::ShardThenRow, 1, 0, 0, 1, 16);
        assert!(r[..64].iter().all(|&x| x < 64) || r[..64].iter().all(|&x| x >= 64), "one shard at a time");
        r.sort();
        assert_eq!(r, (0..128).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_order_other_epoch_other_order() {
        let a = train_rows(&[500], Shuffle::Full, 3, 1, 0, 2, 10);
        assert_eq!(a, train_rows(&[500], Shuffle::Full, 3, 1, 0, 2, 10));
        assert_ne!(a, train_rows(&[500], Shuffle::Full, 3, 2, 0, 2, 10));
        assert_ne!(a, train_rows(&[500], Shuffle::Full, 4, 1, 0, 2, 10));
    }

    #[test]
    fn held_out_rows_are_never_trained_on_and_the_rest_is_sliced_as_before() {
        let shards = [100, 100, 37];
        let held = held_out_rows(237, 20, 5);
        assert_eq!(held.len(), 20);
        assert!(held.windows(2).all(|w| w[0] < w[1]) && held.iter().all(|&r| r < 237));
        assert_eq!(held, held_out_rows(237, 20, 5), "the same slice in every epoch");
        assert_ne!(held, held_out_rows(237, 20, 6));
        for shuffle in [Shuffle::Full, Shuffle::ShardThenRow] {
            let (world, batch) = (2, 8);
            let mut all = Vec::new();
            for r in 0..world {
                let plan = EpochPlan { shuffle, seed: 7, rank: r, world, batch };
                let rows = plan.train_rows(&shards, 3, &held);
                assert_eq!(rows.len(), train_steps(237 - 20, world, batch) * batch);
                all.extend(rows);
            }
            assert!(all.iter().all(|r| held.binary_search(r).is_err()), "a held-out row was trained on");
            let n = all.len();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), n);
        }
        // Nothing held out: exactly train_rows.
        assert_eq!(
            EpochPlan { shuffle: Shuffle::Full, seed: 7, rank: 1, world: 2, batch: 8 }.train_rows(&shards, 3, &[]),
            train_rows(&shards, Shuffle::Full, 7, 3, 1, 2, 8)
        );
    }

    #[test]
    fn an_epoch_plan_picks_train_epochs_or_every_kept_row_once() {
        let shards = [100, 100, 37];
        let held = std::sync::Arc::new(held_out_rows(237, 20, 5));
        let plan = |rank| EpochPlan { shuffle: Shuffle::Full, seed: 7, rank, world: 2, batch: 8 };
        // Train passes are exactly the train rows, with or without a held-out set.
        assert_eq!(
            plan(1).rows(&shards, 3, &Rows::All, Crops::Train),
            train_rows(&shards, Shuffle::Full, 7, 3, 1, 2, 8)
        );
        assert_eq!(
            plan(1).rows(&shards, 3, &Rows::Except(held.clone()), Crops::Train),
            plan(1).train_rows(&shards, 3, &held)
        );
        // Evaluation passes: every row of the set once over the ranks, in order, whatever the epoch.
        for (rows, want) in [
            (Rows::All, (0..237).collect::<Vec<_>>()),
            (Rows::Except(held.clone()), (0..237).filter(|r| held.binary_search(r).is_err()).collect()),
            (Rows::Only(held.clone()), held.to_vec()),
        ] {
            for crops in [Crops::Center, Crops::Ten] {
                let got: Vec<usize> = (0..2).flat_map(|r| plan(r).rows(&shards, 9, &rows, crops)).collect();
                assert_eq!(got, want, "{rows:?} {crops:?}");
            }
        }
    }

    #[test]
    fn validation_covers_every_row_once() {
        for world in 1..6 {
            let mut all: Vec<usize> = (0..world).flat_map(|r| val_range(103, r, world)).collect();
            all.sort();
            assert_eq!(all, (0..103).collect::<Vec<_>>());
        }
    }

    /// Resuming at the world size and batch a run stopped at: the rest of the same rows.
    #[test]
    fn resumed_at_the_same_world_size_an_epoch_goes_on_with_the_same_rows() {
        let shards = [100, 100, 37];
        for shuffle in [Shuffle::Full, Shuffle::ShardThenRow] {
            for rank in 0..3 {
                let plan = EpochPlan { shuffle, seed: 7, rank, world: 3, batch: 8 };
                let whole = plan.train_rows(&shards, 2, &[]);
                let done = [Trained { world: 3, batch: 8, batches: 4 }];
                assert_eq!(plan.train_rows_after(&shards, 2, &[], &done), whole[32..]);
            }
        }
    }

    /// Stopped at 2 ranks, resumed at 1 and at 3 (and changed again): every row of the
    /// epoch is read at most once over all the parts, and only the rows that did not
    /// fill a batch on every rank at some dealing are left out.
    #[test]
    fn resumed_at_another_world_size_every_row_is_read_at_most_once() {
        let shards = [100, 100, 37];
        let n = 237;
        let held = held_out_rows(n, 11, 5);
        for (parts, last) in [
            (vec![Trained { world: 2, batch: 8, batches: 5 }], (1, 8)),
            (vec![Trained { world: 2, batch: 8, batches: 5 }], (3, 8)),
            (vec![Trained { world: 2, batch: 8, batches: 3 }, Trained { world: 3, batch: 4, batches: 2 }], (2, 8)),
            (vec![Trained { world: 2, batch: 8, batches: 0 }], (4, 5)),
        ] {
            let mut read = Vec::new();
            // Each part's ranks: the first `batches` batches of what they were dealt.
            for (k, t) in parts.iter().enumerate() {
                for rank in 0..t.world {
                    let plan = EpochPlan { shuffle: Shuffle::Full, seed: 7, rank, world: t.world, batch: t.batch };
                    let rows = plan.train_rows_after(&shards, 2, &held, &parts[..k]);
                    read.extend_from_slice(&rows[..t.batches * t.batch]);
                }
            }
            let (world, batch) = last;
            for rank in 0..world {
                let plan = EpochPlan { shuffle: Shuffle::Full, seed: 7, rank, world, batch };
                let rows = plan.train_rows_after(&shards, 2, &held, &parts);
                assert_eq!(rows.len() % batch, 0, "whole batches");
                read.extend(rows);
            }
            let count = read.len();
            read.sort();
            read.dedup();
            assert_eq!(read.len(), count, "a row read twice: {parts:?} then {last:?}");
            assert!(read.iter().all(|r| held.binary_search(r).is_err() && *r < n));
            // Left out: at most what each dealing drops (fewer than world x batch rows
            // per rank slice, and the rows that do not divide among the ranks).
            let dealings = parts.iter().map(|t| (t.world, t.batch)).chain([last]);
            let bound: usize = dealings.map(|(w, b)| w * b + w).sum();
            assert!(n - 11 - read.len() < bound, "{} rows left out of {}", n - 11 - read.len(), n - 11);
        }
    }
}
