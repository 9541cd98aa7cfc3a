//! What a training epoch shows while it runs: on a terminal, a bar with the loss and
//! images/s; in logs, a line every `run.log_every_steps` (which a terminal sees printed
//! above the bar); and a `train` record of the same numbers in `metrics.jsonl`. Rank 0
//! alone shows anything.
//!
//! Epochs are numbered from 1 everywhere (`epoch 3/90`: the third of 90, whose end
//! writes `epoch-003`), as in the checkpoint names and `metrics.jsonl`. Both the bar and
//! the log lines give the time this process has trained and an ETA for the whole run,
//! at its pace so far (validation included once an epoch has ended).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use alexnet_shared::progress::fmt_duration;

use super::metrics::{unix_time, MetricsSink, Record};

/// When this process began training, and at which global step: the pace the ETA of the
/// whole run is taken from.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunClock {
    pub start: Instant,
    pub step0: u64,
}

impl RunClock {
    pub fn now(step0: u64) -> Self {
        Self { start: Instant::now(), step0 }
    }

    /// (seconds trained here, seconds left) at global step `step` with `remaining` steps
    /// to go; None before the first step.
    pub fn eta(&self, step: u64, remaining: u64) -> Option<(f64, f64)> {
        let done = step.checked_sub(self.step0).filter(|&d| d > 0)?;
        let elapsed = self.start.elapsed().as_secs_f64();
        Some((elapsed, elapsed / done as f64 * remaining as f64))
    }
}

/// One step as the log sees it.
pub(super) struct Tick {
    /// Batches of the epoch done (1-based: this step's batch).
    pub batch: usize,
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    /// Images of this step over all ranks.
    pub images: usize,
    /// The loader's total wait so far.
    pub wait: Duration,
}

pub(super) struct EpochLog {
    /// 0-based (the position's); shown and recorded 1-based.
    epoch: usize,
    epochs: usize,
    clock: RunClock,
    steps: usize,
    every: u64,
    main: bool,
    bar: Option<ProgressBar>,
    since: Instant,
    loss_sum: f64,
    loss_n: usize,
    images: usize,
    /// The loader's wait when the epoch began.
    wait0: Duration,
}

impl EpochLog {
    /// The log of `epoch` (0-based, of `epochs`; `steps` batches), resumed at batch
    /// `done`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        epoch: usize,
        epochs: usize,
        clock: RunClock,
        steps: usize,
        done: usize,
        every: usize,
        main: bool,
        wait0: Duration,
    ) -> Self {
        let bar = (main && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:20}] {pos}/{len}  {msg}  epoch ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{epochs}", epoch + 1));
            bar.set_position(done as u64);
            bar
        });
        let every = every.max(1) as u64;
        Self {
            epoch,
            epochs,
            clock,
            steps,
            every,
            main,
            bar,
            since: Instant::now(),
            loss_sum: 0.0,
            loss_n: 0,
            images: 0,
            wait0,
        }
    }

    /// `elapsed 1m05s, run ETA 2h10m` at global step `step`, batch `b` of the epoch.
    fn times(&self, step: u64, b: usize) -> String {
        let remaining = (self.epochs.saturating_sub(self.epoch + 1) * self.steps + self.steps.saturating_sub(b)) as u64;
        match self.clock.eta(step, remaining) {
            Some((elapsed, eta)) => format!("elapsed {}, run ETA {}", fmt_duration(elapsed), fmt_duration(eta)),
            None => "run ETA ?".into(),
        }
    }

    /// After a step: shown on the bar, and logged every `run.log_every_steps`.
    pub fn step(&mut self, metrics: &mut MetricsSink, t: &Tick) -> std::io::Result<()> {
        let Tick { batch: b, step, loss, lr, images, wait } = *t;
        self.loss_sum += loss;
        self.loss_n += 1;
        self.images += images;
        let rate = self.images as f64 / self.since.elapsed().as_secs_f64().max(1e-9);
        let mean = self.loss_sum / self.loss_n as f64;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {mean:.4}  lr {lr:.2e}  {rate:.0} img/s  {}", self.times(step, b)));
            bar.set_position(b as u64);
        }
        if !self.main || !(step.is_multiple_of(self.every) || b == self.steps) {
            return Ok(());
        }
        let wait = (wait - self.wait0).as_secs_f64();
        metrics.write(&Record::Train {
            time: unix_time(),
            epoch: self.epoch as u64 + 1,
            step,
            loss: mean,
            lr,
            images_per_s: rate,
            data_wait_s: wait,
        })?;
        let line = format!(
            "train: epoch {}/{} [{b}/{}] loss {mean:.4} lr {lr:.2e} {rate:.0} images/s (waited for data {wait:.1} s) {}",
            self.epoch + 1,
            self.epochs,
            self.steps,
            self.times(step, b)
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => alexnet_shared::err_line!("{line}"),
        }
        (self.since, self.loss_sum, self.loss_n, self.images) = (Instant::now(), 0.0, 0, 0);
        Ok(())
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
