//! Validation: center crops of every image of a split once (over all ranks), the
//! top-1/top-5 counts and the mean loss; and what a run does at an epoch's end
//! (validate, hold-out, records, checkpoint).

use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

use super::metrics::{unix_time, Record};
use super::setup::Run;
use crate::curves::Curves;
use crate::data::Pipeline;
use crate::dist::ProcessGroup;
use crate::model::AlexNet;

/// Sums over a validation pass, to be added up across ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ValCounts {
    pub images: i64,
    pub top1: i64,
    pub top5: i64,
    pub loss_sum: f64,
}

impl ValCounts {
    /// (top-1, top-5, mean loss).
    pub fn fractions(&self) -> Result<(f64, f64, f64)> {
        ensure!(self.images > 0, "the val split is empty");
        let n = self.images as f64;
        Ok((self.top1 as f64 / n, self.top5 as f64 / n, self.loss_sum / n))
    }

    pub fn to_vec(self) -> Vec<f64> {
        vec![self.images as f64, self.top1 as f64, self.top5 as f64, self.loss_sum]
    }

    pub fn from_vec(v: &[f64]) -> Self {
        Self { images: v[0] as i64, top1: v[1] as i64, top5: v[2] as i64, loss_sum: v[3] }
    }

    /// These counts summed over the ranks of `pg` (none: as they are).
    pub fn summed(self, pg: Option<&ProcessGroup>) -> Result<Self> {
        Ok(match pg {
            Some(pg) => Self::from_vec(&crate::dist::sum(pg, &self.to_vec())?),
            None => self,
        })
    }
}

/// Center-crop top-1, top-5 (fractions) and mean loss over the val split (this
/// rank's share of it).
pub fn validate(model: &AlexNet, val: &mut Pipeline, device: Device) -> Result<(f64, f64, f64)> {
    validate_counts(model, val, device)?.fractions()
}

/// Counts of correct top-1 and top-5 and the summed loss over this rank's rows.
pub fn validate_counts(model: &AlexNet, val: &mut Pipeline, device: Device) -> Result<ValCounts> {
    val.start(0);
    let mut c = ValCounts::default();
    tch::no_grad(|| -> Result<()> {
        while let Some(batch) = val.next_batch()? {
            let x = val.input(&batch, false)?;
            let y = batch.labels().to_device(device);
            let logits = model.f_forward_t(&x, false).map_err(|e| {
                crate::device::torch_error(e, &format!("validation (batch {})", batch.len()), "lower optim.batch_size")
            })?;
            c.loss_sum += logits
                .f_log_softmax(-1, Kind::Float)?
                .f_nll_loss(&y, None::<Tensor>, tch::Reduction::Mean, -100)?
                .f_double_value(&[])?
                * batch.len() as f64;
            let (a, b) = crate::topk::correct_top1_top5(&logits.to_device(Device::Cpu), &y.to_device(Device::Cpu))?;
            c.top1 += a;
            c.top5 += b;
            c.images += batch.len() as i64;
        }
        Ok(())
    })?;
    Ok(c)
}

impl Run<'_> {
    /// The end of an epoch: validation (and the held-out slice), their records, the
    /// curves, the schedule's history, and the epoch checkpoint (and `best`).
    pub fn end_epoch(&mut self, seconds: f64) -> Result<()> {
        // 1-based: the epoch that just ended, whose checkpoint is epoch-{epoch:03}.
        let (epoch, step, device, pg) =
            (self.pos.epoch as u64 + 1, self.pos.global_step, self.opt.device, self.learner.pg);
        let epochs = self.cfg.optim.epochs;
        let (top1, top5, loss) =
            validate_counts(&self.learner.model, &mut self.val, device)?.summed(pg)?.fractions()?;
        ensure!(
            loss.is_finite(),
            "the model diverged: validation loss is {loss} after epoch {epoch} (step {step}); no checkpoint written \
             (lower optim.lr, check optim.weight_decay and the schedule); the last good checkpoint is {}",
            self.last_ckpt_shown()
        );
        self.last_val = (Some(top1), Some(top5));
        self.metrics.write(&Record::Val {
            time: unix_time(),
            epoch,
            step,
            top1,
            top5,
            loss,
            epoch_seconds: seconds,
        })?;
        if self.main {
            alexnet_shared::err_line!(
                "train: epoch {epoch}/{epochs} val top-1 {:.2}% top-5 {:.2}% loss {loss:.4}",
                100.0 * top1,
                100.0 * top5
            );
        }
        let mut plateau_error = 1.0 - top1;
        if let Some(h) = self.holdout.as_mut() {
            let (h1, h5, hloss) = validate_counts(&self.learner.model, h, device)?.summed(pg)?.fractions()?;
            let images = self.cfg.data.holdout as u64;
            self.metrics.write(&Record::Holdout {
                time: unix_time(),
                epoch,
                step,
                top1: h1,
                top5: h5,
                loss: hloss,
                images,
            })?;
            if self.main {
                alexnet_shared::err_line!(
                    "train: epoch {epoch}/{epochs} held-out train top-1 {:.2}% top-5 {:.2}% loss {hloss:.4} (drives the schedule)",
                    100.0 * h1,
                    100.0 * h5
                );
            }
            plateau_error = 1.0 - h1;
        }
        if self.main {
            self.metrics.flush()?;
            let dir = &self.opt.run_dir;
            if let Err(e) = Curves::read(&dir.join("metrics.jsonl")).and_then(|c| c.write_png(&dir.join("curves.png")))
            {
                alexnet_shared::err_line!("train: warning: curves.png not drawn: {e:#}");
            }
        }
        self.pos.val_errors.push(plateau_error);
        self.pos.next_epoch();
        let improved = top1 > self.pos.best_top1;
        if improved {
            self.pos.best_top1 = top1;
        }
        if let Some(pg) = pg {
            crate::dist::check_same_weights(pg, &self.learner.params, &format!("epoch {}", self.pos.epoch))?;
        }
        self.last_ckpt = self.checkpoint(&format!("epoch-{:03}", self.pos.epoch))?;
        if self.main {
            if improved {
                self.checkpoint("best")?;
            }
            self.ckpts.prune(self.cfg.run.keep_last, &self.last_ckpt)?;
        }
        Ok(())
    }
}
