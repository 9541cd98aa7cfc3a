//! One loader worker thread: take a free buffer, then the next job (one batch of a
//! pass), decode each row's image when it is a JPEG (a JPEG shard, or a JPEG row of a
//! mixed one), crop, flip and draw its
//! colour noise ([`super::augment`]), write the crops in place into the buffer (uint8,
//! or float through [`super::PixelTransform`]), and hand it to the ready queue. Each
//! row's bytes are checked as they are read (its CRC-32C, or a format 1 shard's sha256
//! once; see `alexnet_shared::ShardReader::check_row`). A damaged row is an error
//! naming its shard and row (or, with [`super::OnDamaged::Skip`], left out with a
//! warning), and a panic is caught and reported, so the consumer never hangs on a dead
//! worker. Each worker times its stages ([`StageTimes`]) for `loader_bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alexnet_shared::{SplitReader, IMAGE_BYTES};
use crossbeam_channel::{select, Receiver, Sender};
use fast_image_resize::Resizer;

use super::augment::{center_crop, crop_into, crop_into_from, resized_crop_draw, ten_crops, train_draw, CropSpec};
use super::batch::HostBuffer;
use super::config::{Crops, LoaderConfig, OnDamaged};
use super::error::DataError;
use super::jpeg::Decoder;
use super::resized_crop::{center_box, resized_crop_into, ten_boxes, CropBox};

/// One batch of a pass.
pub(super) struct Job {
    /// The pass it belongs to: results of an abandoned pass are dropped.
    pub(super) generation: u64,
    /// Its place in the pass.
    pub(super) index: usize,
    /// (position in the pass, split row) of each image of the batch.
    pub(super) items: Vec<(usize, usize)>,
    pub(super) epoch: u64,
}

/// (generation, index, the filled buffer or the buffer and the error).
pub(super) type Done = (u64, usize, Result<HostBuffer, (HostBuffer, DataError)>);

/// What a worker reads from and writes to.
pub(super) struct WorkerCtx {
    pub(super) split: Arc<SplitReader>,
    pub(super) cfg: LoaderConfig,
    pub(super) free_rx: Receiver<HostBuffer>,
    pub(super) job_rx: Receiver<Job>,
    pub(super) ready_tx: Sender<Done>,
    /// Disconnected when the loader is dropped.
    pub(super) quit_rx: Receiver<()>,
    /// Where the workers' time goes, summed over them.
    pub(super) clock: Arc<StageClock>,
}

/// Where the loader workers' time went, summed over every worker since the loader
/// started (so with two workers busy for a second each, the stages add up to about two
/// seconds). The first four are work, the last three waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Finding each row and checking its bytes (CRC-32C) as it is read.
    pub check: Duration,
    /// Decoding JPEG rows (nothing for raw shards).
    pub decode: Duration,
    /// Whole images: resampling each RandomResizedCrop box (or eval box) to the crop.
    pub resize: Duration,
    /// The crop, its flip, the colour noise and the normalization, written into the
    /// batch buffer: one fused pass over the pixels (uint8 crops: the crop and flip).
    pub crop: Duration,
    /// Waiting for a free batch buffer: the consumer holds them all (it is the slower).
    pub wait_buffer: Duration,
    /// Waiting for a job: the pass has no batch left to start.
    pub wait_job: Duration,
    /// Handing the filled buffer to the ready queue.
    pub handoff: Duration,
}

impl StageTimes {
    /// The time of each stage since `earlier` (a snapshot of the same loader).
    pub fn since(&self, earlier: &StageTimes) -> StageTimes {
        let d = |a: Duration, b: Duration| a.saturating_sub(b);
        StageTimes {
            check: d(self.check, earlier.check),
            decode: d(self.decode, earlier.decode),
            resize: d(self.resize, earlier.resize),
            crop: d(self.crop, earlier.crop),
            wait_buffer: d(self.wait_buffer, earlier.wait_buffer),
            wait_job: d(self.wait_job, earlier.wait_job),
            handoff: d(self.handoff, earlier.handoff),
        }
    }
}

/// The stages of [`StageTimes`], in its order.
#[derive(Clone, Copy)]
enum Stage {
    Check,
    Decode,
    Resize,
    Crop,
    WaitBuffer,
    WaitJob,
    Handoff,
}
const STAGES: usize = 7;

/// The workers' [`StageTimes`], in nanoseconds, added to once per batch.
#[derive(Default)]
pub(super) struct StageClock([AtomicU64; STAGES]);

impl StageClock {
    pub(super) fn snapshot(&self) -> StageTimes {
        let t = |s: Stage| Duration::from_nanos(self.0[s as usize].load(Ordering::Relaxed));
        StageTimes {
            check: t(Stage::Check),
            decode: t(Stage::Decode),
            resize: t(Stage::Resize),
            crop: t(Stage::Crop),
            wait_buffer: t(Stage::WaitBuffer),
            wait_job: t(Stage::WaitJob),
            handoff: t(Stage::Handoff),
        }
    }

    fn add(&self, laps: &mut Laps) {
        for (total, ns) in self.0.iter().zip(laps.ns.iter_mut()) {
            total.fetch_add(std::mem::take(ns), Ordering::Relaxed);
        }
    }
}

/// One worker's stopwatch: each lap's time goes to the stage that just ended.
struct Laps {
    at: Instant,
    ns: [u64; STAGES],
}

impl Laps {
    fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.ns[stage as usize] += (now - self.at).as_nanos() as u64;
        self.at = now;
    }
}

impl WorkerCtx {
    /// Starts worker `worker` on its own named thread.
    pub(super) fn spawn(self, worker: usize) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(format!("loader-{worker}")).spawn(move || self.run(worker))
    }

    fn run(self, worker: usize) {
        // Reused for every image: decoded pixels (grown to the largest image once),
        // the resizer's buffers and one resized crop.
        let mut scratch = Scratch {
            decoded: vec![0u8; IMAGE_BYTES],
            resizer: Resizer::new(),
            crop: vec![0u8; self.cfg.crop * self.cfg.crop * 3],
            jpeg: None,
        };
        let mut laps = Laps { at: Instant::now(), ns: [0; STAGES] };
        loop {
            // The buffer before the job: jobs start in order, so the batch the consumer
            // waits for always has a buffer and the ring cannot deadlock.
            let mut buf = select! {
                recv(self.quit_rx) -> _ => return,
                recv(self.free_rx) -> b => match b { Ok(b) => b, Err(_) => return },
            };
            laps.lap(Stage::WaitBuffer);
            let job = select! {
                recv(self.quit_rx) -> _ => return,
                recv(self.job_rx) -> j => match j { Ok(j) => j, Err(_) => return },
            };
            laps.lap(Stage::WaitJob);
            let filled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.fill(&mut buf, &job, &mut scratch, &mut laps)
            }));
            let result = match filled {
                Ok(Ok(())) => Ok(buf),
                Ok(Err(e)) => Err((buf, e)),
                Err(p) => Err((
                    buf,
                    DataError::Panic {
                        worker,
                        message: format!(
                            "while filling batch {}: {}",
                            job.index,
                            alexnet_shared::guard::panic_message(p.as_ref())
                        ),
                    },
                )),
            };
            let sent = self.ready_tx.send((job.generation, job.index, result));
            laps.lap(Stage::Handoff);
            self.clock.add(&mut laps);
            if sent.is_err() {
                return;
            }
        }
    }

    /// Writes the crops of `job`'s rows into `buf`, in order.
    fn fill(&self, buf: &mut HostBuffer, job: &Job, scratch: &mut Scratch, laps: &mut Laps) -> Result<(), DataError> {
        let crop = self.cfg.crop;
        let per_crop = crop * crop * 3;
        buf.clear();
        let ten = ten_crops(crop);
        let mut slot = 0;
        let Scratch { decoded, resizer, crop: resized, jpeg } = scratch;
        for &(position, row) in &job.items {
            let read = self.row(row);
            laps.lap(Stage::Check);
            let d = match read {
                Ok(x) => x,
                Err(Damaged(e)) if self.cfg.on_damaged == OnDamaged::Skip => {
                    alexnet_shared::err_line!("warning: {e} (skipped: on_damaged = skip)");
                    buf.skipped += 1;
                    continue;
                }
                Err(Damaged(e) | Other(e)) => return Err(e),
            };
            let label = d.label;
            if d.whole {
                let (h, w) = d.size;
                let (boxes, n, alpha) = self.whole_boxes(job.epoch, position, h, w);
                // Only the part the crops read is decoded.
                let region = boxes[..n].iter().map(|(b, _)| *b).reduce(CropBox::union).unwrap_or(CropBox {
                    top: 0,
                    left: 0,
                    height: h,
                    width: w,
                });
                let src = self.pixels(&d, region, decoded, jpeg)?;
                laps.lap(Stage::Decode);
                for &(b, flip) in &boxes[..n] {
                    let at = slot * per_crop..(slot + 1) * per_crop;
                    let direct = b.height == crop && b.width == crop;
                    let spec = CropSpec { y: b.top, x: b.left, flip };
                    let fail = |message: String| self.row_error(&d, message);
                    match (&self.cfg.transform, direct) {
                        (Some(t), true) => t.crop_float_from(src, w, spec, crop, alpha, &mut buf.floats()[at]),
                        (None, true) => crop_into_from(src, w, spec, crop, &mut buf.pixels()[at]),
                        (Some(t), false) => {
                            resized_crop_into(resizer, src, h, w, b, crop, flip, resized).map_err(fail)?;
                            laps.lap(Stage::Resize);
                            let plain = CropSpec { y: 0, x: 0, flip: false };
                            t.crop_float_from(resized, crop, plain, crop, alpha, &mut buf.floats()[at]);
                        }
                        (None, false) => {
                            resized_crop_into(resizer, src, h, w, b, crop, flip, &mut buf.pixels()[at])
                                .map_err(fail)?;
                            laps.lap(Stage::Resize);
                        }
                    }
                    buf.labels.push(label);
                    buf.alphas.push(alpha);
                    buf.specs.push(spec);
                    buf.rows.push(row);
                    slot += 1;
                    laps.lap(Stage::Crop);
                }
                continue;
            }
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
                Crops::Ten | Crops::TenWhole => (&ten, [0.0; 3]),
            };
            let region = specs
                .iter()
                .map(|s| CropBox { top: s.y, left: s.x, height: crop, width: crop })
                .reduce(CropBox::union)
                .unwrap_or(CropBox { top: 0, left: 0, height: d.size.0, width: d.size.1 });
            let src = self.pixels(&d, region, decoded, jpeg)?;
            laps.lap(Stage::Decode);
            for &spec in specs {
                let at = slot * per_crop..(slot + 1) * per_crop;
                match &self.cfg.transform {
                    Some(t) => t.crop_float(src, spec, crop, alpha, &mut buf.floats()[at]),
                    None => crop_into(src, spec, crop, &mut buf.pixels()[at]),
                }
                buf.labels.push(label);
                buf.alphas.push(alpha);
                buf.specs.push(spec);
                buf.rows.push(row);
                slot += 1;
            }
            laps.lap(Stage::Crop);
        }
        if slot == 0 && !job.items.is_empty() {
            return Err(DataError::Config(format!("every row of batch {} is damaged (skipped)", job.index)));
        }
        Ok(())
    }

    /// The boxes (with their flips) of a whole image's crops for this pass, how many, and
    /// the colour noise coefficients.
    fn whole_boxes(&self, epoch: u64, position: usize, h: usize, w: usize) -> ([(CropBox, bool); 10], usize, [f32; 3]) {
        let crop = self.cfg.crop;
        let mut out = [(CropBox { top: 0, left: 0, height: crop, width: crop }, false); 10];
        match self.cfg.crops {
            Crops::Train => {
                let rrc = self.cfg.resized_crop.unwrap_or_default();
                let c = &self.cfg;
                let (b, flip, alpha) = resized_crop_draw(c.seed, epoch, c.rank, position, h, w, &rrc, c.flip);
                out[0] = (b, flip);
                (out, 1, if c.pca_noise { alpha } else { [0.0; 3] })
            }
            Crops::Center => {
                out[0] = (center_box(h, w, crop, self.cfg.eval_resize), false);
                (out, 1, [0.0; 3])
            }
            Crops::Ten | Crops::TenWhole => {
                let corners = self.cfg.crops == Crops::TenWhole;
                (ten_boxes(h, w, crop, self.cfg.eval_resize, corners), 10, [0.0; 3])
            }
        }
    }

    /// Split row `row`, its bytes checked: see [`RowData`].
    fn row(&self, row: usize) -> Result<RowData<'_>, RowError> {
        let Some((s, r)) = self.split.locate(row) else {
            return Err(Other(DataError::Config(format!(
                "row {row} is outside the split ({} rows)",
                self.split.len()
            ))));
        };
        let shard = &self.split.shards()[s];
        if self.cfg.check_rows {
            shard.check_row(r).map_err(|e| {
                let message = match e {
                    alexnet_shared::Error::Damaged { message, .. } => message,
                    other => other.to_string(),
                };
                Damaged(DataError::Image { shard: shard.path().to_path_buf(), row: r, message })
            })?;
        }
        Ok(RowData {
            bytes: shard.image_unchecked(r),
            label: shard.labels()[r] as i64,
            size: shard.size(r),
            whole: shard.is_whole(),
            jpeg: shard.is_jpeg(r),
            shard: s,
            row: r,
        })
    }

    /// An error about row `d`, naming its shard and row there.
    fn row_error(&self, d: &RowData<'_>, message: String) -> DataError {
        DataError::Image { shard: self.split.shards()[d.shard].path().to_path_buf(), row: d.row, message }
    }

    /// The pixels of `d`: its bytes (raw), or at least `region` of it decoded into
    /// `decoded` (JPEG), at its place in an image-sized buffer.
    fn pixels<'a>(
        &self,
        d: &RowData<'a>,
        region: CropBox,
        decoded: &'a mut Vec<u8>,
        decoder: &mut Option<Decoder>,
    ) -> Result<&'a [u8], DataError> {
        if !d.jpeg {
            return Ok(d.bytes);
        }
        let fail = |message: String| self.row_error(d, message);
        let (h, w) = d.size;
        // Grows once to the largest image; never shrinks its allocation.
        decoded.resize(h * w * 3, 0);
        let dec = match decoder {
            Some(dec) => dec,
            None => decoder.insert(Decoder::new().map_err(fail)?),
        };
        // A region that is most of the image is decoded whole: skipping a few rows and
        // columns saves less than it costs (BENCHMARKS.md, issue 16).
        let small = region.height * region.width * 4 < 3 * h * w;
        let region = (self.cfg.decode_region && small).then_some(region);
        dec.decode(d.bytes, h, w, region, decoded).map_err(fail)?;
        Ok(decoded)
    }
}

/// A row of the split, not yet decoded.
struct RowData<'a> {
    /// Raw pixels (a slice of the map) or the JPEG.
    bytes: &'a [u8],
    label: i64,
    /// (height, width): 256x256 for centre squares.
    size: (usize, usize),
    /// A whole image (format 3).
    whole: bool,
    jpeg: bool,
    /// Its shard (index in the split) and row there, for messages.
    shard: usize,
    row: usize,
}

/// Why a row could not be read: its bytes failed their check (skippable), or anything
/// else (a row outside the split, a JPEG that does not decode).
enum RowError {
    Damaged(DataError),
    Other(DataError),
}
use RowError::{Damaged, Other};

/// A worker's reusable buffers and its JPEG decoder.
struct Scratch {
    decoded: Vec<u8>,
    resizer: Resizer,
    crop: Vec<u8>,
    jpeg: Option<Decoder>,
}
