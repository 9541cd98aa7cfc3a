//! One training step, the same code for `train run` and for `step_bench`: dropout
//! reseeded from (seed, epoch, step, rank), the forward pass under the configured
//! precision, the mean cross-entropy, the backward pass through the gradient sync,
//! the cross-rank agreement on the loss and the stop, and the SGD update.
//!
//! A [`Learner`] is the model with what updates it: its parameters, [`Sgd`] and the
//! [`GradSync`] of a data-parallel run ([`GradSync::Local`] in one process).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::config::{Precision, TrainConfig};
use crate::data::sampler::derive_seed;
use crate::dist::{forward_order, GradSync, ProcessGroup};
use crate::model::AlexNet;
use crate::sgd::Sgd;

pub struct Learner<'a> {
    pub model: AlexNet,
    pub vs: VarStore,
    /// Parameter names (reference_models.py's), sorted; `params` in the same order.
    pub names: Vec<String>,
    pub params: Vec<Tensor>,
    pub sgd: Sgd,
    pub sync: GradSync<'a>,
    pub pg: Option<&'a ProcessGroup>,
    pub precision: Precision,
}

/// What a step reports: the loss (mean over the ranks) and whether any rank asked to
/// stop. A non-finite loss on any rank is non-finite everywhere, and no update is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub loss: f64,
    pub stop: bool,
}

/// The dropout seed of step `batch` of `epoch` on `rank`: the draws depend on these
/// alone, whatever ran before.
pub fn dropout_seed(seed: u64, epoch: usize, batch: usize, rank: usize) -> u64 {
    let mut parts = vec![seed, epoch as u64, batch as u64, 0xd409];
    if rank > 0 {
        parts.push(rank as u64);
    }
    derive_seed(&parts)
}

impl<'a> Learner<'a> {
    /// The model of `cfg` for `num_classes` on `device`, initialised from the run's seed
    /// (the paper's N(0, 0.01) or PyTorch's default), in channels-last when asked, with
    /// its SGD; one process until [`Learner::join`].
    pub fn new(cfg: &TrainConfig, num_classes: usize, device: Device) -> Result<Self> {
        let vs = VarStore::new(device);
        let mut model = AlexNet::new(&vs.root(), &cfg.model_config(num_classes)).map_err(anyhow::Error::msg)?;
        tch::manual_seed(derive_seed(&[cfg.run.seed, 0x1a17]) as i64);
        if cfg.optim.paper_init {
            model.paper_init();
        } else {
            model.torch_default_init();
        }
        if cfg.run.channels_last {
            to_channels_last(&vs);
        }
        model.set_dropout(cfg.model.dropout);
        let mut names: Vec<String> = vs.variables().keys().cloned().collect();
        names.sort();
        let vars = vs.variables();
        let params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
        let sgd =
            Sgd::new(params.iter().map(|p| p.shallow_clone()).collect(), cfg.optim.momentum, cfg.optim.weight_decay);
        Ok(Self { model, vs, names, params, sgd, sync: GradSync::Local, pg: None, precision: cfg.run.precision })
    }

    /// Joins the data-parallel group: rank 0's weights everywhere, and the gradient
    /// sync of `cfg.dist` (buckets of `dist.bucket_mb`, overlapped or not).
    pub fn join(&mut self, pg: &'a ProcessGroup, cfg: &TrainConfig) -> Result<()> {
        crate::dist::broadcast_params(pg, &self.params, 0)?;
        let cap = (cfg.dist.bucket_mb * (1 << 20) as f64) as usize;
        let in_order: Vec<Tensor> =
            forward_order(&self.names).into_iter().map(|i| self.params[i].shallow_clone()).collect();
        self.sync = GradSync::new(Some(pg), in_order, cap, cfg.dist.overlap)?;
        self.pg = Some(pg);
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// (name, momentum buffer) of every parameter, for the optimizer file.
    /// The name of the first parameter with a NaN or infinite value (None: all finite).
    /// A step with a finite loss can still leave non-finite weights (a huge rate, an
    /// infinite decay); no checkpoint is written of such a model.
    pub fn first_non_finite(&self) -> Result<Option<&str>, tch::TchError> {
        tch::no_grad(|| {
            for (name, p) in self.names.iter().zip(&self.params) {
                // The float64 sum is finite exactly when every value is (no overflow at
                // any float32 size), and allocates nothing the size of the weight.
                if !p.f_sum(Kind::Double)?.f_double_value(&[])?.is_finite() {
                    return Ok(Some(name.as_str()));
                }
            }
            Ok(None)
        })
    }

    pub fn momentum(&self) -> Vec<(String, Tensor)> {
        self.names.iter().cloned().zip(self.sgd.buffers()).collect()
    }

    /// One step on the batch `x` (float, NCHW) with labels `y` (int64) at learning
    /// rate `lr`, dropout drawn from `seed`; `stop` set (a signal handler's flag): this
    /// rank asks to stop at this step. `global_step` names the step in errors.
    pub fn step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        lr: f64,
        seed: u64,
        stop: &AtomicBool,
        global_step: u64,
    ) -> Result<StepOutcome> {
        tch::manual_seed(seed as i64);
        self.sync.prepare()?;
        let loss = self.loss(x, y).map_err(|e| {
            crate::device::torch_error(
                e,
                &format!("training step {global_step} (batch {} per rank)", x.size().first().copied().unwrap_or(0)),
                "lower optim.batch_size (with optim.lr) in the config",
            )
        })?;
        self.sgd.zero_grad();
        self.sync.backward(&loss)?;
        let loss = loss.double_value(&[]); // host sync: the loss is checked every step
        let mut out = StepOutcome { loss, stop: stop.load(Ordering::Relaxed) };
        if let Some(pg) = self.pg {
            self.sync.finish()?;
            // The stop is agreed: any rank's signal, or NaN, stops every rank here.
            (out.loss, out.stop) = crate::dist::agree(pg, out.loss, out.stop)?;
        }
        if out.loss.is_finite() {
            self.sgd.step(lr);
        }
        Ok(out)
    }

    /// The mean cross-entropy of the batch, forward pass under the configured precision.
    fn loss(&self, x: &Tensor, y: &Tensor) -> Result<Tensor, tch::TchError> {
        let forward = || {
            self.model.f_forward_t(x, true)?.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
                y,
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
            )
        };
        match self.precision {
            Precision::Fp32 => forward(),
            Precision::Bf16 => crate::ext::autocast_bf16(self.device(), forward)
                .map_err(|e| tch::TchError::Torch(format!("bf16 autocast: {e}")))?,
        }
    }
}

/// Conv weights in channels-last (NHWC) memory layout; convolutions then run, and hand
/// on activations, in that layout. The tensors keep their NCHW shapes and names.
pub fn to_channels_last(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                v.set_data(&nhwc(&v));
            }
        }
    });
}

/// The same tensor in channels-last memory layout (NCHW shape, NHWC strides).
pub fn nhwc(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
