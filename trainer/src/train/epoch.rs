//! One training epoch: batches from the train pipeline through [`Learner::step`], the
//! log, and the mid-epoch checkpoints (every `run.checkpoint_minutes`, and on a stop).

use std::sync::atomic::AtomicBool;

use anyhow::{bail, ensure, Context, Result};

use super::log::{EpochLog, Tick};
use super::setup::Run;
use super::step::dropout_seed;
use super::TrainSummary;
use crate::schedule::{learning_rate, warmup_lr};

impl Run<'_> {
    /// Trains the rest of the current epoch (from `pos.batch`, after the parts of it
    /// trained at other world sizes). `Some(summary)` when the run stopped in it (a
    /// signal on any rank, `--max-steps`), with a checkpoint.
    pub fn train_epoch(&mut self, stop: &AtomicBool) -> Result<Option<TrainSummary>> {
        let (cfg, epoch) = (&self.cfg, self.pos.epoch);
        let epoch_lr = learning_rate(&cfg.optim.schedule, cfg.optim.lr * self.lr_factor, epoch, &self.pos.val_errors);
        // The rows no rank has read yet: none is read and thrown away.
        let trained = self.pos.trained(self.world, cfg.optim.batch_size);
        let fresh = self.pos.batch == 0 && self.pos.parts.is_empty();
        let steps = self.pos.batch + self.train.start_after(epoch as u64, &trained);
        ensure!(!fresh || steps > 0, "the train split has fewer rows than one batch of {}", cfg.optim.batch_size);
        // Where a part of the epoch ran at another world size: the batches and images
        // before this part, so that dropout seeds and the warmup's progress go on.
        let (before, images_before) = (self.pos.batches_before(), self.pos.images_before());
        let step_images = cfg.optim.batch_size * self.world;
        let wait0 = self.train.loader.stats().wait;
        let mut log = EpochLog::new(
            epoch,
            cfg.optim.epochs,
            self.clock,
            steps,
            self.pos.batch,
            cfg.run.log_every_steps,
            self.main,
            wait0,
        );
        let mut b = self.pos.batch;
        while let Some(batch) = self.train.next_batch()? {
            let cfg = &self.cfg;
            let (done, all) = (images_before + b * step_images, images_before + steps * step_images);
            let lr = warmup_lr(epoch_lr, self.lr_factor, cfg.dist.warmup_epochs, epoch, done, all);
            let x = self.train.input(&batch, cfg.data.pca_noise)?;
            let y = batch.labels().to_device(self.opt.device);
            let seed = dropout_seed(cfg.run.seed, epoch, before + b, self.rank);
            self.trace_rows(b, batch.rows())?;
            let out = self.learner.step(&x, &y, lr, seed, stop, self.pos.global_step)?;
            if !out.loss.is_finite() {
                bail!(
                    "loss is {} at epoch {epoch} step {b} (global step {}): stopping; the last good checkpoint is {}",
                    out.loss,
                    self.pos.global_step,
                    self.last_ckpt_shown()
                );
            }
            drop(batch);
            b += 1;
            (self.pos.batch, self.pos.global_step, self.steps_here) =
                (b, self.pos.global_step + 1, self.steps_here + 1);
            let tick = Tick {
                batch: b,
                step: self.pos.global_step,
                loss: out.loss,
                lr,
                images: cfg.optim.batch_size * self.world,
                wait: self.train.loader.stats().wait,
            };
            log.step(&mut self.metrics, &tick)?;
            if let Some(stall) = self.stall.observe(out.loss, self.pos.global_step, steps) {
                self.stalled(&stall)?;
            }
            let interrupted = out.stop || self.opt.max_steps.is_some_and(|m| self.steps_here >= m);
            let timed = self.last_ckpt_time.elapsed().as_secs_f64() >= cfg.run.checkpoint_minutes * 60.0;
            if (interrupted || timed) && b < steps {
                self.last_ckpt = self.checkpoint(&format!("step-{:09}", self.pos.global_step))?;
                if interrupted {
                    return self.stopped().map(Some);
                }
            }
        }
        log.finish();
        Ok(None)
    }

    /// With `ALEXNET_TRACE_ROWS=DIR` (a debugging aid; the tests of resumes at another
    /// world size use it): one line `epoch batch row...` per step in
    /// `DIR/rows-rank{rank}.txt`, the split rows this rank trained on.
    fn trace_rows(&self, batch: usize, rows: &[usize]) -> Result<()> {
        let Some(dir) = std::env::var_os("ALEXNET_TRACE_ROWS") else { return Ok(()) };
        let path = std::path::Path::new(&dir).join(format!("rows-rank{}.txt", self.rank));
        let mut line = format!("{} {}", self.pos.epoch, batch);
        for r in rows {
            line.push_str(&format!(" {r}"));
        }
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("ALEXNET_TRACE_ROWS: {}", path.display()))?;
        std::io::Write::write_all(&mut f, line.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// The loss has stayed at chance ([`super::stall`]): the warning, or with
    /// `stall.stop` the error that ends the run (on every rank: they see the same loss).
    fn stalled(&self, stall: &super::stall::Stall) -> Result<()> {
        let message = stall.message(self.cfg.optim.paper_init);
        if self.cfg.stall.stop {
            bail!(
                "{message}. Stopped (stall.stop = true) at step {}; the last checkpoint is {}",
                stall.to,
                self.last_ckpt_shown()
            );
        }
        if self.main {
            alexnet_shared::err_line!("train: warning: {message}");
        }
        Ok(())
    }

    /// After a stop mid-epoch: every rank checks the weights and leaves together.
    fn stopped(&mut self) -> Result<TrainSummary> {
        if let Some(pg) = self.learner.pg {
            crate::dist::check_same_weights(pg, &self.learner.params, &format!("step {}", self.pos.global_step))?;
            pg.barrier()?;
        }
        if self.main {
            alexnet_shared::err_line!(
                "train: stopped at epoch {}/{} batch {}; resume with --resume",
                self.pos.epoch + 1,
                self.cfg.optim.epochs,
                self.pos.batch
            );
        }
        Ok(self.summary(true))
    }
}
