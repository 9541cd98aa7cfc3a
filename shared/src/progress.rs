//! Progress of long work on stderr (the dataset build, scoring, retrieval): a bar with
//! rate and ETA on a terminal, a line every 30 seconds otherwise (logs of runs started
//! from scripts), nothing when disabled. `inc` takes `&self`: worker threads share it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    name: &'static str,
    /// Counting bytes (shown in GB) rather than things.
    bytes: bool,
    /// What is counted ("images", "class tars").
    unit: &'static str,
    total: u64,
    done: AtomicU64,
    rejected: AtomicU64,
    bar: Option<ProgressBar>,
    log: Option<Mutex<Instant>>,
    start: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(30);

impl Progress {
    /// Progress over `total` images.
    pub fn new(name: &'static str, total: u64, enabled: bool) -> Self {
        Self::with_unit(name, total, enabled, false, "images")
    }

    /// Progress over `total` things named `unit` ("class tars").
    pub fn counting(name: &'static str, total: u64, enabled: bool, unit: &'static str) -> Self {
        Self::with_unit(name, total, enabled, false, unit)
    }

    /// Progress over `total` bytes (long reads such as checksums of large files).
    pub fn bytes(name: &'static str, total: u64, enabled: bool) -> Self {
        Self::with_unit(name, total, enabled, true, "bytes")
    }

    fn with_unit(name: &'static str, total: u64, enabled: bool, bytes: bool, unit: &'static str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = if bytes {
                "{prefix} [{bar:30}] {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}  {msg}".to_string()
            } else {
                format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{per_sec:.0}}  ETA {{eta}}  {{msg}}")
            };
            b.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
            b.set_prefix(name);
            b
        });
        let log = (enabled && !tty).then(|| Mutex::new(Instant::now()));
        Self {
            name,
            bytes,
            unit,
            total,
            done: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            bar,
            log,
            start: Instant::now(),
        }
    }

    pub fn inc(&self, n: u64, rejected: bool) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if rejected {
            let r = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(b) = &self.bar {
                b.set_message(format!("{r} rejected"));
            }
        }
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(last) = &self.log {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= LOG_EVERY {
                *last = Instant::now();
                let secs = self.start.elapsed().as_secs_f64();
                let rate = done as f64 / secs.max(1e-9);
                let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
                let rejected = match self.rejected.load(Ordering::Relaxed) {
                    0 => String::new(),
                    r => format!(", {r} rejected"),
                };
                let pct = 100.0 * done as f64 / self.total.max(1) as f64;
                if self.bytes {
                    crate::err_line!(
                        "{}: {:.1}/{:.1} GB ({pct:.1}%), {:.0} MB/s, ETA {}",
                        self.name,
                        done as f64 / 1e9,
                        self.total as f64 / 1e9,
                        rate / 1e6,
                        fmt_duration(eta),
                    );
                } else {
                    crate::err_line!(
                        "{}: {done}/{} {} ({pct:.1}%), {rate:.0} {}/s, ETA {}{rejected}",
                        self.name,
                        self.total,
                        self.unit,
                        self.unit,
                        fmt_duration(eta),
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn fmt_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=5999 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
