//! The training run: for epoch { train_epoch; validate; checkpoint }, resumable
//! exactly. Its stages, each in its file:
//!
//! - [`setup`](Run::new): the resolved configuration saved in the run folder, the
//!   learner, the resumed position, the input pipelines;
//! - [`step`]: one step ([`Learner::step`]): seed, forward under the configured
//!   precision, loss, backward through the gradient sync, the cross-rank stop
//!   agreement, SGD (the code `step_bench` times);
//! - `epoch`: the batches of an epoch through the step, its log and mid-epoch
//!   checkpoints;
//! - [`validate`]: center-crop top-1/top-5 over every val image once, and the epoch's
//!   end (records, schedule, checkpoint);
//! - [`metrics`]: the typed records of `metrics.jsonl`, and [`tensorboard`]: the same
//!   numbers as TensorBoard event files.
//! - [`stall`]: the warning (or stop) for a run whose loss stays at chance.
//!
//! Every random draw comes from (seed, epoch, step): the loader's crops, flips and
//! colour noise (see [`crate::data`]), and dropout, for which libtorch's generator is
//! reseeded before each step. With the momentum buffers and the loader position saved
//! beside each checkpoint, a run stopped and resumed ends with the same weights as one
//! that never stopped. SIGINT/SIGTERM/SIGUSR1 finish the current step, write a
//! checkpoint and exit cleanly (with the exit code of a stop, see `trainer::cli`); a NaN or infinite loss stops the run naming the step and keeps the
//! last good checkpoint.
//!
//! Data parallel ([`run_distributed`] with a [`ProcessGroup`]): every rank starts from
//! rank 0's weights, trains on its slice of each epoch, and averages the gradients
//! before an identical SGD step; validation counts are summed over the ranks; only
//! rank 0 logs and writes checkpoints; a stop (signal, NaN, `--max-steps`) is agreed at
//! a step boundary through a small all-reduce, and after each epoch the ranks check
//! that their weights are bit-identical.

mod banner;
mod epoch;
pub mod init;
mod log;
pub mod metrics;
mod setup;
pub mod stall;
pub mod step;
pub mod tensorboard;
pub mod validate;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tch::Device;

use crate::config::TrainConfig;
use crate::dist::ProcessGroup;
pub use metrics::{MetricsSink, Record};
use setup::Run;
pub use step::{Learner, StepOutcome};
pub use validate::{validate, validate_counts, ValCounts};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data: PathBuf,
    pub run_dir: PathBuf,
    pub device: Device,
    pub resume: bool,
    /// Stop (with a checkpoint, as on SIGTERM) after this many steps of this process.
    pub max_steps: Option<u64>,
    /// A new run's weights from this model file (`--init`, see [`init`]).
    pub init: Option<PathBuf>,
}

/// Why a run stopped before its last epoch, with a checkpoint to resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// SIGINT, SIGTERM or SIGUSR1 (on any rank).
    Signal,
    /// `--max-steps` steps taken by this process.
    MaxSteps,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub global_step: u64,
    pub val_top1: Option<f64>,
    pub val_top5: Option<f64>,
    pub stopped_early: bool,
    /// Why it stopped early (None: it finished).
    pub stopped_by: Option<StopCause>,
    pub last_checkpoint: PathBuf,
}

impl std::fmt::Display for TrainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.val_top1, self.val_top5) {
            (Some(t1), Some(t5)) => write!(
                f,
                "epochs {} steps {}: val top-1 {:.2}% top-5 {:.2}% (error {:.2}% / {:.2}%); checkpoint {}",
                self.epochs_done,
                self.global_step,
                100.0 * t1,
                100.0 * t5,
                100.0 * (1.0 - t1),
                100.0 * (1.0 - t5),
                self.last_checkpoint.display()
            ),
            _ => write!(f, "stopped at step {}; checkpoint {}", self.global_step, self.last_checkpoint.display()),
        }?;
        match self.stopped_by {
            Some(StopCause::Signal) => write!(f, " (stopped by a signal; continue with --resume)"),
            Some(StopCause::MaxSteps) => write!(f, " (stopped by --max-steps; continue with --resume)"),
            None => Ok(()),
        }
    }
}

pub fn run(cfg: &TrainConfig, opt: &RunOptions) -> Result<TrainSummary> {
    run_distributed(cfg, opt, None)
}

/// [`run`] as one rank of a data-parallel run over `pg` (`None`: a single process).
/// Every rank reads the run folder (a shared filesystem across machines); only rank 0
/// writes to it.
pub fn run_distributed(cfg: &TrainConfig, opt: &RunOptions, pg: Option<&ProcessGroup>) -> Result<TrainSummary> {
    let stop = stop_signals().context("taking SIGINT/SIGTERM")?;
    let mut run = Run::new(cfg, opt, pg)?;
    while run.pos.epoch < run.cfg.optim.epochs {
        let t_epoch = Instant::now();
        if let Some(stopped) = run.train_epoch(&stop)? {
            return Ok(stopped);
        }
        run.end_epoch(t_epoch.elapsed().as_secs_f64())?;
        let mut stop_now = stop.load(Ordering::Relaxed);
        if let Some(pg) = pg {
            stop_now = crate::dist::agree(pg, 0.0, stop_now)?.1;
        }
        if stop_now || opt.max_steps.is_some_and(|m| run.steps_here >= m) {
            break;
        }
    }
    if let Some(pg) = pg {
        pg.barrier()?; // every rank leaves together, after rank 0's last checkpoint
    }
    Ok(run.summary(run.pos.epoch < run.cfg.optim.epochs))
}

/// SIGINT, SIGTERM and SIGUSR1 (what Slurm's `--signal=USR1@SECONDS` sends before the
/// time limit) as a flag that the training loop reads at step boundaries. The
/// signals are blocked in the calling thread (and so in every thread it starts
/// afterwards: call this before the loader, libtorch and c10d start theirs, as
/// `trainer::cli` does) and taken by one thread of their own with `sigwait`, so that no
/// other thread is interrupted in a system call (a SIGTERM landing in one of gloo's
/// socket threads aborted the process). Later calls return the same flag.
pub fn stop_signals() -> std::io::Result<Arc<AtomicBool>> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the mask
    // calls only change this thread's signal mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
        }
        set
    };
    let f = flag.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` lives in this closure; sigwait writes the signal number.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            f.store(true, Ordering::SeqCst);
        }
    })?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

impl Run<'_> {
    fn summary(&self, stopped_early: bool) -> TrainSummary {
        let stopped_by = stopped_early.then(|| {
            if self.opt.max_steps.is_some_and(|m| self.steps_here >= m) {
                StopCause::MaxSteps
            } else {
                StopCause::Signal
            }
        });
        TrainSummary {
            stopped_by,
            epochs_done: self.pos.epoch,
            global_step: self.pos.global_step,
            val_top1: self.last_val.0,
            val_top5: self.last_val.1,
            stopped_early,
            last_checkpoint: self.last_ckpt.clone(),
        }
    }
}
