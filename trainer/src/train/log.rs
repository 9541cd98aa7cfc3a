//! What a training epoch shows while it runs: on a terminal, a bar with the loss and
//! images/s; in logs, a line every `run.log_every_steps` (which a terminal sees printed
//! above the bar); and a `train` record of the same numbers in `metrics.jsonl`. Rank 0
//! alone shows anything.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::metrics::{unix_time, MetricsSink, Record};

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
    epoch: usize,
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
    /// The log of `epoch` (`steps` batches), resumed at batch `done`.
    pub fn new(epoch: usize, steps: usize, done: usize, every: usize, main: bool, wait0: Duration) -> Self {
        let bar = (main && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:20}] {pos}/{len}  {msg}  ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(epoch.to_string());
            bar.set_position(done as u64);
            bar
        });
        let every = every.max(1) as u64;
        Self { epoch, steps, every, main, bar, since: Instant::now(), loss_sum: 0.0, loss_n: 0, images: 0, wait0 }
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
            bar.set_message(format!("loss {mean:.4}  lr {lr:.0e}  {rate:.0} img/s"));
            bar.set_position(b as u64);
        }
        if !self.main || !(step.is_multiple_of(self.every) || b == self.steps) {
            return Ok(());
        }
        let wait = (wait - self.wait0).as_secs_f64();
        metrics.write(&Record::Train {
            time: unix_time(),
            epoch: self.epoch as u64,
            step,
            loss: mean,
            lr,
            images_per_s: rate,
            data_wait_s: wait,
        })?;
        let line = format!(
            "train: epoch {} [{b}/{}] loss {mean:.4} lr {lr} {rate:.0} images/s (waited for data {wait:.1} s)",
            self.epoch, self.steps
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
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
