//! The loader: worker threads turn shard rows into uint8 crops, written in place into a
//! ring of preallocated batch buffers that cycle between a free queue and a ready queue
//! (bounded crossbeam channels). Nothing is allocated per image in steady state.
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
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alexnet_shared::{Encoding, SplitReader, IMAGE_BYTES, IMAGE_SIDE};
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use tch::{Device, Kind, Tensor};

use super::augment::{center_crop, crop_into, ten_crops, train_draw, CropSpec};
use super::normalize::PixelTransform;
use super::sampler::{train_rows_except, val_range, Shuffle};

/// What a pass over a split produces per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Crops {
    /// Random crop, optional flip, PCA noise coefficients (training).
    #[value(skip)]
    Train,
    /// One center crop per image.
    Center,
    /// The paper's ten crops (corners and center, and their mirror images), softmax
    /// averaged; torchvision's order, consecutive in the batch.
    Ten,
}

impl Crops {
    pub fn per_image(self) -> usize {
        if self == Crops::Ten {
            10
        } else {
            1
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Images per batch (a ten-crop batch holds 10x as many crops).
    pub batch_size: usize,
    /// Side of the crops: 227 (paper), 224 (OWT), smaller for demos.
    pub crop: usize,
    pub crops: Crops,
    pub workers: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub rank: usize,
    pub world: usize,
    pub shuffle: Shuffle,
    /// Random horizontal flips (training).
    pub flip: bool,
    /// PCA colour noise coefficients (training); zero when off.
    pub pca_noise: bool,
    /// Page-locked host buffers for asynchronous copies to this CUDA device.
    pub pin_memory: Option<Device>,
    /// Make normalized float crops in the workers (CHW, PCA noise on train crops)
    /// instead of uint8 crops for [`super::Normalizer`] to convert on the device.
    pub transform: Option<PixelTransform>,
    /// The rows of the split this loader covers.
    pub rows: Rows,
}

/// Which rows of a split a loader covers: all of them, all but a held-out set (train),
/// or only that set (scoring the held-out slice). Sets are sorted row indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Rows {
    #[default]
    All,
    Except(Arc<Vec<usize>>),
    Only(Arc<Vec<usize>>),
}

impl LoaderConfig {
    pub fn new(batch_size: usize, crop: usize, crops: Crops) -> Self {
        Self {
            batch_size,
            crop,
            crops,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            prefetch: 4,
            seed: 0,
            rank: 0,
            world: 1,
            shuffle: Shuffle::Full,
            flip: true,
            pca_noise: true,
            pin_memory: None,
            transform: None,
            rows: Rows::All,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("{shard}: row {row}: {message}")]
    Image { shard: PathBuf, row: usize, message: String },
    #[error("loader worker {worker} panicked: {message}")]
    Panic { worker: usize, message: String },
    #[error("invalid loader configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

/// Counters a training loop reports: did it wait for data?
#[derive(Debug, Clone, Default)]
pub struct LoaderStats {
    pub batches: u64,
    pub images: u64,
    /// Time the consumer spent blocked waiting for a batch.
    pub wait: Duration,
    /// Batches ready when the last one was taken (queue depth).
    pub ready_depth: usize,
}

/// One preallocated batch buffer.
struct HostBuffer {
    /// u8 [capacity, crop, crop, 3] HWC crops, or f32 [capacity, 3, crop, crop].
    images: Tensor,
    float: bool,
    ptr: *mut u8,
    bytes: usize,
    labels: Vec<i64>,
    alphas: Vec<[f32; 3]>,
    specs: Vec<CropSpec>,
    rows: Vec<usize>,
}

// SAFETY: a HostBuffer is owned by exactly one thread at a time (it moves through the
// channels); `ptr` points into `images`' storage, which lives as long as the buffer.
unsafe impl Send for HostBuffer {}

impl HostBuffer {
    fn new(capacity: usize, crop: usize, pin: Option<Device>, float: bool) -> Result<Self, LoaderError> {
        let (c, k) = (crop as i64, capacity as i64);
        let bytes = capacity * crop * crop * 3 * if float { 4 } else { 1 };
        let oom = |e: tch::TchError| {
            LoaderError::Config(format!(
                "a batch buffer of {capacity} crops ({:.2} GiB) could not be allocated ({}): lower the batch size",
                bytes as f64 / (1u64 << 30) as f64,
                crate::device::torch_message(&e).0
            ))
        };
        let mut images = if float {
            Tensor::f_zeros([k, 3, c, c], (Kind::Float, Device::Cpu))
        } else {
            Tensor::f_zeros([k, c, c, 3], (Kind::Uint8, Device::Cpu))
        }
        .map_err(oom)?;
        if let Some(dev) = pin {
            images = images.f_pin_memory(dev).map_err(oom)?;
        }
        let ptr = images.data_ptr() as *mut u8;
        Ok(Self {
            images,
            float,
            ptr,
            bytes,
            labels: Vec::with_capacity(capacity),
            alphas: Vec::with_capacity(capacity),
            specs: Vec::with_capacity(capacity),
            rows: Vec::with_capacity(capacity),
        })
    }

    fn pixels(&mut self) -> &mut [u8] {
        assert!(!self.float);
        // SAFETY: `ptr` is the start of a contiguous u8 tensor of `bytes` bytes that this
        // buffer owns; `&mut self` makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }

    fn floats(&mut self) -> &mut [f32] {
        assert!(self.float);
        // SAFETY: as for `pixels`; a float tensor's storage is aligned for f32.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut f32, self.bytes / 4) }
    }
}

/// A batch ready for the training loop; its buffer returns to the ring when dropped.
pub struct Batch {
    buf: Option<HostBuffer>,
    free: Sender<HostBuffer>,
    crop: usize,
}

impl Batch {
    fn buf(&self) -> &HostBuffer {
        self.buf.as_ref().expect("batch holds its buffer until dropped")
    }

    /// Number of crops (images x crops per image).
    pub fn len(&self) -> usize {
        self.buf().labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// u8 [len, crop, crop, 3] crops (HWC), a view of the buffer: valid until the batch
    /// is dropped (copy it, or convert it with [`super::Normalizer`], before that).
    /// `None` when the workers made float crops.
    pub fn images(&self) -> Option<Tensor> {
        let b = self.buf();
        (!b.float).then(|| b.images.narrow(0, 0, self.len() as i64))
    }

    /// f32 [len, 3, crop, crop] normalized crops, a view of the buffer (valid until the
    /// batch is dropped), when the loader has a `transform`.
    pub fn floats(&self) -> Option<Tensor> {
        let b = self.buf();
        b.float.then(|| b.images.narrow(0, 0, self.len() as i64))
    }

    /// int64 `[len]` class indices (repeated for each crop of an image).
    pub fn labels(&self) -> Tensor {
        Tensor::from_slice(&self.buf().labels)
    }

    /// float [len, 3] PCA noise coefficients (zero outside training).
    pub fn alphas(&self) -> Tensor {
        let flat: Vec<f32> = self.buf().alphas.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([self.len() as i64, 3])
    }

    /// Where each crop was taken (for the mean image and for tests).
    pub fn specs(&self) -> &[CropSpec] {
        &self.buf().specs
    }

    /// The split row of each crop.
    pub fn rows(&self) -> &[usize] {
        &self.buf().rows
    }

    pub fn crop(&self) -> usize {
        self.crop
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            let _ = self.free.send(b); // the loader may be gone: then the buffer is freed
        }
    }
}

struct Job {
    generation: u64,
    index: usize,
    /// (position in the pass, split row) of each image of the batch.
    items: Vec<(usize, usize)>,
    epoch: u64,
}

type Done = (u64, usize, Result<HostBuffer, (HostBuffer, LoaderError)>);

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
}

impl Loader {
    pub fn new(split: Arc<SplitReader>, cfg: LoaderConfig) -> Result<Self, LoaderError> {
        if cfg.batch_size == 0 || cfg.workers == 0 {
            return Err(LoaderError::Config("batch size and workers must be at least 1".into()));
        }
        if cfg.crop == 0 || cfg.crop > IMAGE_SIDE {
            return Err(LoaderError::Config(format!("crop {} must be in 1..=256", cfg.crop)));
        }
        if cfg.world == 0 || cfg.rank >= cfg.world {
            return Err(LoaderError::Config(format!("rank {} of world size {}", cfg.rank, cfg.world)));
        }
        let buffers = cfg.workers + cfg.prefetch.max(1);
        let capacity = cfg.batch_size * cfg.crops.per_image();
        let (free_tx, free_rx) = bounded::<HostBuffer>(buffers);
        for _ in 0..buffers {
            free_tx
                .send(HostBuffer::new(capacity, cfg.crop, cfg.pin_memory, cfg.transform.is_some())?)
                .expect("ring has room");
        }
        let (job_tx, job_rx) = unbounded::<Job>();
        let (ready_tx, ready_rx) = bounded::<Done>(buffers);
        let (quit_tx, quit_rx) = bounded::<()>(0);
        let mut workers = Vec::with_capacity(cfg.workers);
        for w in 0..cfg.workers {
            let ctx = WorkerCtx {
                split: split.clone(),
                cfg: cfg.clone(),
                free_rx: free_rx.clone(),
                job_rx: job_rx.clone(),
                ready_tx: ready_tx.clone(),
                quit_rx: quit_rx.clone(),
            };
            let h = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || ctx.run(w))
                .map_err(|e| LoaderError::Config(format!("starting loader threads: {e}")))?;
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
        })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    pub fn split(&self) -> &SplitReader {
        &self.split
    }

    /// Starts a pass: a train epoch (`Crops::Train`), or the whole of this rank's share
    /// of the split (center/ten crops). Returns the number of batches it will yield.
    /// Batches of an unfinished earlier pass are discarded.
    pub fn start(&mut self, epoch: u64) -> usize {
        self.generation += 1;
        self.next = 0;
        for (_, b) in std::mem::take(&mut self.pending) {
            let _ = self.free_tx.send(b);
        }
        let cfg = &self.cfg;
        let rows: Vec<usize> = match (cfg.crops, &cfg.rows) {
            (Crops::Train, Rows::All | Rows::Except(_)) => {
                let sizes: Vec<usize> = self.split.shards().iter().map(|s| s.len()).collect();
                let held: &[usize] = if let Rows::Except(h) = &cfg.rows { h } else { &[] };
                train_rows_except(&sizes, cfg.shuffle, cfg.seed, epoch, cfg.rank, cfg.world, cfg.batch_size, held)
            }
            (_, Rows::All) => val_range(self.split.len(), cfg.rank, cfg.world).collect(),
            (_, Rows::Only(only)) => val_range(only.len(), cfg.rank, cfg.world).map(|i| only[i]).collect(),
            (_, Rows::Except(held)) => {
                let kept: Vec<usize> = (0..self.split.len()).filter(|r| held.binary_search(r).is_err()).collect();
                val_range(kept.len(), cfg.rank, cfg.world).map(|i| kept[i]).collect()
            }
        };
        let items: Vec<(usize, usize)> = rows.into_iter().enumerate().collect();
        let jobs = items.chunks(cfg.batch_size);
        self.total = jobs.len();
        let tx = self.job_tx.as_ref().expect("job sender lives with the loader");
        for (index, chunk) in jobs.enumerate() {
            let _ = tx.send(Job { generation: self.generation, index, items: chunk.to_vec(), epoch });
        }
        self.total
    }

    /// The next batch of the current pass, in order; `None` at its end.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, LoaderError> {
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
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.check_workers()?;
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    self.check_workers()?;
                    return Err(LoaderError::Panic { worker: 0, message: "every loader worker stopped".into() });
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
        self.stats.images += (buf.labels.len() / self.cfg.crops.per_image()) as u64;
        self.stats.ready_depth = self.ready_rx.len() + self.pending.len();
        self.next += 1;
        Ok(Some(Batch { buf: Some(buf), free: self.free_tx.clone(), crop: self.cfg.crop }))
    }

    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// A worker that died from a panic is an error, not a hang.
    fn check_workers(&mut self) -> Result<(), LoaderError> {
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
            return Err(LoaderError::Panic { worker: i, message });
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

struct WorkerCtx {
    split: Arc<SplitReader>,
    cfg: LoaderConfig,
    free_rx: Receiver<HostBuffer>,
    job_rx: Receiver<Job>,
    ready_tx: Sender<Done>,
    quit_rx: Receiver<()>,
}

impl WorkerCtx {
    fn run(self, worker: usize) {
        let mut decoded = vec![0u8; IMAGE_BYTES];
        loop {
            let mut buf = select! {
                recv(self.quit_rx) -> _ => return,
                recv(self.free_rx) -> b => match b { Ok(b) => b, Err(_) => return },
            };
            let job = select! {
                recv(self.quit_rx) -> _ => return,
                recv(self.job_rx) -> j => match j { Ok(j) => j, Err(_) => return },
            };
            let filled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fill(&mut buf, &job, &mut decoded)));
            let result = match filled {
                Ok(Ok(())) => Ok(buf),
                Ok(Err(e)) => Err((buf, e)),
                Err(p) => Err((
                    buf,
                    LoaderError::Panic {
                        worker,
                        message: format!(
                            "while filling batch {}: {}",
                            job.index,
                            alexnet_shared::guard::panic_message(p.as_ref())
                        ),
                    },
                )),
            };
            if self.ready_tx.send((job.generation, job.index, result)).is_err() {
                return;
            }
        }
    }

    fn fill(&self, buf: &mut HostBuffer, job: &Job, decoded: &mut [u8]) -> Result<(), LoaderError> {
        let crop = self.cfg.crop;
        let per_crop = crop * crop * 3;
        buf.labels.clear();
        buf.alphas.clear();
        buf.specs.clear();
        buf.rows.clear();
        let ten = ten_crops(crop);
        let mut slot = 0;
        for &(position, row) in &job.items {
            let (s, r) = self.split.locate(row).expect("rows come from this split");
            let shard = &self.split.shards()[s];
            let bytes = shard.image(r);
            let label = shard.labels()[r] as i64;
            let src: &[u8] = if shard.encoding() == Encoding::Jpeg {
                decode_jpeg(bytes, decoded).map_err(|message| LoaderError::Image {
                    shard: shard.path().to_path_buf(),
                    row: r,
                    message,
                })?;
                decoded
            } else {
                bytes
            };
            let one: [CropSpec; 1];
            let (specs, alpha): (&[CropSpec], [f32; 3]) = match self.cfg.crops {
                Crops::Train => {
                    let d = train_draw(self.cfg.seed, job.epoch, self.cfg.rank, position, crop, self.cfg.flip);
                    one = [d.crop];
                    (&one, if self.cfg.pca_noise { d.alpha } else { [0.0; 3] })
                }
                Crops::Center => {
                    one = [center_crop(crop)];
                    (&one, [0.0; 3])
                }
                Crops::Ten => (&ten, [0.0; 3]),
            };
            for &spec in specs {
                match &self.cfg.transform {
                    Some(t) => {
                        t.crop_float(src, spec, crop, alpha, &mut buf.floats()[slot * per_crop..(slot + 1) * per_crop])
                    }
                    None => crop_into(src, spec, crop, &mut buf.pixels()[slot * per_crop..(slot + 1) * per_crop]),
                }
                buf.labels.push(label);
                buf.alphas.push(alpha);
                buf.specs.push(spec);
                buf.rows.push(row);
                slot += 1;
            }
        }
        Ok(())
    }
}

/// Decodes a 256x256 RGB JPEG of a shard into `out` (196608 bytes).
fn decode_jpeg(bytes: &[u8], out: &mut [u8]) -> Result<(), String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    d.decode_headers().map_err(|e| format!("bad JPEG in shard: {e:?}"))?;
    match d.dimensions() {
        Some((w, h)) if w == IMAGE_SIDE && h == IMAGE_SIDE => {}
        other => return Err(format!("JPEG in shard is {other:?}, expected 256x256")),
    }
    d.decode_into(out).map_err(|e| format!("bad JPEG in shard: {e:?}"))
}
