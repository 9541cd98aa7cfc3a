//! The loader: worker threads (`worker.rs`) turn shard rows into crops, written in
//! place into a ring of preallocated batch buffers ([`super::batch`]) that cycle between
//! a free queue and a ready queue (bounded crossbeam channels). Nothing is allocated per
//! image in steady state. This file dispatches a pass's batches to the workers and hands
//! them back to the consumer in order.
//!
//! ```text
//!   free queue ──► worker: take a buffer, then the next job (batch k), crop/flip rows
//!        ▲                 of the memory-mapped shards into it ──► ready queue
//!        │                                                              │
//!        └──── Batch dropped by the training loop ◄── in order by k ◄───┘
//! ```
//!
//! A worker takes its buffer before its job, so jobs start in order and the batch the
//! consumer waits for always has a buffer: the ring cannot deadlock. Batches are handed
//! out in order, so a run is reproducible whatever the thread timing. A worker's error
//! (a damaged shard, a bad JPEG in a shard) reaches the consumer as an error naming the
//! shard and row; dropping the loader stops and joins every thread promptly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alexnet_shared::SplitReader;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use super::batch::{Batch, HostBuffer};
use super::config::{Crops, LoaderConfig};
use super::error::DataError;
use super::sampler::{EpochPlan, Trained};
use super::worker::{Done, Job, StageClock, StageTimes, WorkerCtx};

/// Counters a training loop reports: did it wait for data?
#[derive(Debug, Clone, Default)]
pub struct LoaderStats {
    pub batches: u64,
    pub images: u64,
    /// Time the consumer spent blocked waiting for a batch.
    pub wait: Duration,
    /// Batches ready when the last one was taken (queue depth).
    pub ready_depth: usize,
    /// Rows left out because their bytes failed the check ([`super::OnDamaged::Skip`]).
    pub skipped: u64,
}

/// The loader of one split in one mode (train crops, center or ten crops).
pub struct Loader {
    cfg: LoaderConfig,
    split: Arc<SplitReader>,
    job_tx: Option<Sender<Job>>,
    quit_tx: Option<Sender<()>>,
    free_tx: Sender<HostBuffer>,
    ready_rx: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    generation: u64,
    next: usize,
    total: usize,
    pending: BTreeMap<usize, HostBuffer>,
    stats: LoaderStats,
    clock: Arc<StageClock>,
}

impl Loader {
    /// Allocates the ring (`workers + prefetch` buffers) and starts the workers; they
    /// wait for [`Self::start`].
    pub fn new(split: Arc<SplitReader>, cfg: LoaderConfig) -> Result<Self, DataError> {
        cfg.check()?;
        let whole = split.shards().iter().any(|s| s.is_whole());
        if cfg.crops == Crops::Train && whole != cfg.resized_crop.is_some() {
            return Err(DataError::Config(if whole {
                "the paper's random crops take 256x256 centre squares, and this dataset holds whole images: train \
                 it with torchvision's RandomResizedCrop (data.train_crop = \"random-resized-crop\", as \
                 configs/alexnet-owt.toml), or build a centre-square dataset (preprocess build --keep center)"
                    .into()
            } else {
                "RandomResizedCrop takes whole images, and this dataset holds 256x256 centre squares: build a \
                 whole-image dataset (preprocess build --keep whole), or train with the paper's crops \
                 (data.train_crop = \"paper\")"
                    .into()
            }));
        }
        if whole && cfg.transform.as_ref().is_some_and(|t| t.mean_image.is_some()) {
            return Err(DataError::NoMeanImage);
        }
        let buffers = cfg.workers + cfg.prefetch.max(1);
        let (free_tx, free_rx) = bounded::<HostBuffer>(buffers);
        for _ in 0..buffers {
            let buf = HostBuffer::new(cfg.capacity(), cfg.crop, cfg.pin_memory, cfg.transform.is_some())?;
            free_tx.send(buf).expect("ring has room");
        }
        let (job_tx, job_rx) = unbounded::<Job>();
        let (ready_tx, ready_rx) = bounded::<Done>(buffers);
        let (quit_tx, quit_rx) = bounded::<()>(0);
        let clock = Arc::new(StageClock::default());
        let mut workers = Vec::with_capacity(cfg.workers);
        for w in 0..cfg.workers {
            let ctx = WorkerCtx {
                split: split.clone(),
                cfg: cfg.clone(),
                free_rx: free_rx.clone(),
                job_rx: job_rx.clone(),
                ready_tx: ready_tx.clone(),
                quit_rx: quit_rx.clone(),
                clock: clock.clone(),
            };
            let h = ctx.spawn(w).map_err(|e| DataError::Config(format!("starting loader threads: {e}")))?;
            workers.push(h);
        }
        Ok(Self {
            cfg,
            split,
            job_tx: Some(job_tx),
            quit_tx: Some(quit_tx),
            free_tx,
            ready_rx,
            workers,
            generation: 0,
            next: 0,
            total: 0,
            pending: BTreeMap::new(),
            stats: LoaderStats::default(),
            clock,
        })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    pub fn split(&self) -> &SplitReader {
        &self.split
    }

    /// Starts a pass: a train epoch (`Crops::Train`), or the whole of this rank's share
    /// of the split (center/ten crops), the rows chosen by [`EpochPlan::rows`]. Returns
    /// the number of batches it will yield. Batches of an unfinished earlier pass are
    /// discarded.
    pub fn start(&mut self, epoch: u64) -> usize {
        self.start_after(epoch, &[])
    }

    /// [`Self::start`] of the rest of a train epoch after the parts `trained` (a
    /// resumed epoch: [`EpochPlan::rows_after`]): the rows no rank has read yet, dealt
    /// over this loader's ranks, none of them read and thrown away.
    pub fn start_after(&mut self, epoch: u64, trained: &[Trained]) -> usize {
        self.generation += 1;
        self.next = 0;
        for (_, b) in std::mem::take(&mut self.pending) {
            let _ = self.free_tx.send(b);
        }
        let sizes: Vec<usize> = self.split.shards().iter().map(|s| s.len()).collect();
        let rows = EpochPlan::of(&self.cfg).rows_after(&sizes, epoch, &self.cfg.rows, self.cfg.crops, trained);
        // The positions of a resumed epoch go on from those already read, so that the
        // crops, flips and colour noise drawn for them (by position) are those of a run
        // that never stopped.
        let first = trained.iter().fold(0usize, |n, t| n.saturating_add(t.batches.saturating_mul(t.batch)));
        let items: Vec<(usize, usize)> = rows.into_iter().enumerate().map(|(i, r)| (first + i, r)).collect();
        let jobs = items.chunks(self.cfg.batch_size);
        self.total = jobs.len();
        let tx = self.job_tx.as_ref().expect("job sender lives with the loader");
        for (index, chunk) in jobs.enumerate() {
            let _ = tx.send(Job { generation: self.generation, index, items: chunk.to_vec(), epoch });
        }
        self.total
    }

    /// The next batch of the current pass, in order; `None` at its end.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, DataError> {
        if self.next >= self.total {
            return Ok(None);
        }
        let t = Instant::now();
        let buf = loop {
            if let Some(b) = self.pending.remove(&self.next) {
                break b;
            }
            let (generation, index, result) = match self.ready_rx.recv_timeout(Duration::from_secs(1)) {
                Ok(done) => done,
                Err(RecvTimeoutError::Timeout) => {
                    self.check_workers()?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.check_workers()?;
                    return Err(DataError::Panic { worker: 0, message: "every loader worker stopped".into() });
                }
            };
            match result {
                Ok(b) if generation == self.generation => {
                    self.pending.insert(index, b);
                }
                Ok(b) => {
                    let _ = self.free_tx.send(b);
                }
                Err((b, e)) => {
                    let _ = self.free_tx.send(b);
                    if generation == self.generation {
                        return Err(e);
                    }
                }
            }
        };
        self.stats.wait += t.elapsed();
        self.stats.batches += 1;
        self.stats.images += (buf.len() / self.cfg.crops.per_image()) as u64;
        self.stats.skipped += buf.skipped;
        self.stats.ready_depth = self.ready_rx.len() + self.pending.len();
        self.next += 1;
        Ok(Some(Batch::new(buf, self.free_tx.clone(), self.cfg.crop)))
    }

    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// Where the workers' time has gone so far (summed over them; up to the last batch
    /// each finished).
    pub fn stage_times(&self) -> StageTimes {
        self.clock.snapshot()
    }

    /// A worker that died from a panic is an error, not a hang.
    fn check_workers(&mut self) -> Result<(), DataError> {
        if let Some(i) = self.workers.iter().position(|h| h.is_finished()) {
            let h = self.workers.remove(i);
            let message = match h.join() {
                Err(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into()),
                Ok(()) => "exited".into(),
            };
            return Err(DataError::Panic { worker: i, message });
        }
        Ok(())
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Disconnecting the quit and job channels wakes every worker, wherever it waits.
        self.quit_tx.take();
        self.job_tx.take();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}
