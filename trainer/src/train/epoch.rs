//! One training epoch: batches from the train pipeline through [`Learner::step`], the
//! log, and the mid-epoch checkpoints (every `run.checkpoint_minutes`, and on a stop).

use std::sync::atomic::AtomicBool;

use anyhow::{bail, ensure, Result};

use super::log::{EpochLog, Tick};
use super::setup::Run;
use super::step::dropout_seed;
use super::TrainSummary;
use crate::schedule::{learning_rate, warmup_lr};

impl Run<'_> {
    /// Trains the rest of the current epoch (from `pos.batch`). `Some(summary)` when
    /// the run stopped in it (a signal on any rank, `--max-steps`), with a checkpoint.
    pub fn train_epoch(&mut self, stop: &AtomicBool) -> Result<Option<TrainSummary>> {
        let (cfg, epoch) = (&self.cfg, self.pos.epoch);
        let epoch_lr = learning_rate(&cfg.optim.schedule, cfg.optim.lr * self.lr_factor, epoch, &self.pos.val_errors);
        let steps = self.train.start(epoch as u64);
        ensure!(steps > 0, "the train split has fewer rows than one batch of {}", cfg.optim.batch_size);
        let wait0 = self.train.loader.stats().wait;
        let mut log = EpochLog::new(epoch, steps, self.pos.batch, cfg.run.log_every_steps, self.main, wait0);
        let mut b = 0;
        while let Some(batch) = self.train.next_batch()? {
            if b < self.pos.batch {
                b += 1; // resumed mid-epoch: these were trained before the stop
                continue;
            }
            let cfg = &self.cfg;
            let lr = warmup_lr(epoch_lr, self.lr_factor, cfg.dist.warmup_epochs, epoch, b, steps);
            let x = self.train.input(&batch, cfg.data.pca_noise)?;
            let y = batch.labels().to_device(self.opt.device);
            let seed = dropout_seed(cfg.run.seed, epoch, b, self.rank);
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
            eprintln!("train: warning: {message}");
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
            eprintln!("train: stopped at epoch {} batch {}; resume with --resume", self.pos.epoch, self.pos.batch);
        }
        Ok(self.summary(true))
    }
}
