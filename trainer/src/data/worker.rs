//! One loader worker thread: take a free buffer, then the next job (one batch of a
//! pass), decode each row's image when the shard holds JPEG, crop, flip and draw its
//! colour noise ([`super::augment`]), write the crops in place into the buffer (uint8,
//! or float through [`super::PixelTransform`]), and hand it to the ready queue. Each
//! row's bytes are checked as they are read (its CRC-32C, or a format 1 shard's sha256
//! once; see `alexnet_shared::ShardReader::check_row`). A damaged row is an error
//! naming its shard and row (or, with [`super::OnDamaged::Skip`], left out with a
//! warning), and a panic is caught and reported, so the consumer never hangs on a dead
//! worker.

use std::sync::Arc;
use std::thread::JoinHandle;

use alexnet_shared::{Encoding, SplitReader, IMAGE_BYTES, IMAGE_SIDE};
use crossbeam_channel::{select, Receiver, Sender};

use super::augment::{center_crop, crop_into, ten_crops, train_draw, CropSpec};
use super::batch::HostBuffer;
use super::config::{Crops, LoaderConfig, OnDamaged};
use super::error::DataError;

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
}

impl WorkerCtx {
    /// Starts worker `worker` on its own named thread.
    pub(super) fn spawn(self, worker: usize) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(format!("loader-{worker}")).spawn(move || self.run(worker))
    }

    fn run(self, worker: usize) {
        let mut decoded = vec![0u8; IMAGE_BYTES];
        loop {
            // The buffer before the job: jobs start in order, so the batch the consumer
            // waits for always has a buffer and the ring cannot deadlock.
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
            if self.ready_tx.send((job.generation, job.index, result)).is_err() {
                return;
            }
        }
    }

    /// Writes the crops of `job`'s rows into `buf`, in order.
    fn fill(&self, buf: &mut HostBuffer, job: &Job, decoded: &mut [u8]) -> Result<(), DataError> {
        let crop = self.cfg.crop;
        let per_crop = crop * crop * 3;
        buf.clear();
        let ten = ten_crops(crop);
        let mut slot = 0;
        for &(position, row) in &job.items {
            let (src, label) = match self.image(row, decoded) {
                Ok(x) => x,
                Err(Damaged(e)) if self.cfg.on_damaged == OnDamaged::Skip => {
                    alexnet_shared::err_line!("warning: {e} (skipped: on_damaged = skip)");
                    buf.skipped += 1;
                    continue;
                }
                Err(Damaged(e) | Other(e)) => return Err(e),
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
        }
        if slot == 0 && !job.items.is_empty() {
            return Err(DataError::Config(format!("every row of batch {} is damaged (skipped)", job.index)));
        }
        Ok(())
    }

    /// The 256x256x3 pixels of split row `row` (a slice of the map, or decoded into
    /// `decoded`) and its label.
    fn image<'a>(&'a self, row: usize, decoded: &'a mut [u8]) -> Result<(&'a [u8], i64), RowError> {
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
        let bytes = shard.image_unchecked(r);
        let label = shard.labels()[r] as i64;
        if shard.encoding() != Encoding::Jpeg {
            return Ok((bytes, label));
        }
        decode_jpeg(bytes, decoded)
            .map_err(|message| Other(DataError::Image { shard: shard.path().to_path_buf(), row: r, message }))?;
        Ok((decoded, label))
    }
}

/// Why a row could not be read: its bytes failed their check (skippable), or anything
/// else (a row outside the split, a JPEG that does not decode).
enum RowError {
    Damaged(DataError),
    Other(DataError),
}
use RowError::{Damaged, Other};

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
