//! Progress on stderr: a bar with rate and ETA on a terminal, a line every 30 seconds
//! otherwise (logs of runs started from scripts), nothing when disabled.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    name: &'static str,
    total: u64,
    done: u64,
    bar: Option<ProgressBar>,
    log: Option<Instant>,
    start: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(30);

impl Progress {
    pub fn new(name: &'static str, total: u64, enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images  {per_sec:.0}  ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(name);
            b
        });
        let log = (enabled && !tty).then(Instant::now);
        Self { name, total, done: 0, bar, log, start: Instant::now() }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(last) = &mut self.log {
            if last.elapsed() >= LOG_EVERY {
                *last = Instant::now();
                let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
                let eta = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
                eprintln!(
                    "{}: {}/{} images ({:.1}%), {rate:.1} images/s, ETA {:.0} s",
                    self.name,
                    self.done,
                    self.total,
                    100.0 * self.done as f64 / self.total.max(1) as f64,
                    eta
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
