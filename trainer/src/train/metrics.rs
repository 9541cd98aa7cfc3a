//! `RUN_DIR/metrics.jsonl`: one typed [`Record`] per line, written by rank 0 alone
//! ([`MetricsSink`]) and read back by [`crate::curves`] and by the scripts. Lines are
//! JSON objects tagged by `kind`: `train` (every `run.log_every_steps` steps: the mean
//! loss over the interval), `val` and `holdout` (every epoch's end), `world` (a resume at another world size). A resumed run
//! first drops the records after the step it resumes from (they are trained again, so
//! a step is never logged twice) and appends.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train {
        /// Seconds since the Unix epoch.
        #[serde(default)]
        time: f64,
        epoch: u64,
        /// Global step (all ranks step together).
        step: u64,
        /// Mean training loss since the last train record.
        loss: f64,
        #[serde(default)]
        lr: f64,
        /// Images per second over all ranks, since the last train record.
        #[serde(default)]
        images_per_s: f64,
        /// Seconds the step waited for the loader since the epoch began.
        #[serde(default)]
        data_wait_s: f64,
    },
    Val {
        #[serde(default)]
        time: f64,
        epoch: u64,
        step: u64,
        /// Fractions in [0, 1], center crop.
        top1: f64,
        top5: f64,
        loss: f64,
        #[serde(default)]
        epoch_seconds: f64,
    },
    /// The held-out slice of train (`data.holdout`), which drives the schedule.
    Holdout {
        #[serde(default)]
        time: f64,
        epoch: u64,
        step: u64,
        top1: f64,
        top5: f64,
        loss: f64,
        #[serde(default)]
        images: u64,
    },
    /// A resumed run continuing at another world size, from this step on.
    World {
        time: f64,
        epoch: u64,
        step: u64,
        /// The world size before and now.
        from: usize,
        to: usize,
        /// Images per step over all ranks, and the scaled learning rate, from now on.
        global_batch: usize,
        lr: f64,
    },
}

impl Record {
    /// The global step the record was written at.
    pub fn step(&self) -> u64 {
        match self {
            Record::Train { step, .. }
            | Record::Val { step, .. }
            | Record::Holdout { step, .. }
            | Record::World { step, .. } => *step,
        }
    }

    /// Every line of a `metrics.jsonl` that parses (a line cut by a crash is skipped).
    pub fn read_all(path: &Path) -> std::io::Result<Vec<Record>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Where records go: `metrics.jsonl` on rank 0, nowhere on the other ranks.
pub struct MetricsSink {
    file: Option<File>,
}

impl MetricsSink {
    /// Appends to `path` when `main` (rank 0); otherwise a sink that drops records.
    pub fn open(path: &Path, main: bool) -> std::io::Result<Self> {
        let file = if main { Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?) } else { None };
        Ok(Self { file })
    }

    /// As [`Self::open`], for a run resumed at global step `step`: the records written
    /// after it (by the run that stopped, past its last checkpoint) and a line cut by a
    /// kill are dropped first, in one atomic rewrite. Returns the sink and the number
    /// of records dropped.
    pub fn resume(path: &Path, main: bool, step: u64) -> std::io::Result<(Self, usize)> {
        let mut dropped = 0;
        if main && path.exists() {
            let text = std::fs::read_to_string(path)?;
            let mut kept = String::with_capacity(text.len());
            for line in text.split_inclusive('\n') {
                let whole = line.ends_with('\n');
                let later = serde_json::from_str::<Record>(line.trim_end()).is_ok_and(|r| r.step() > step);
                if !whole || later {
                    dropped += usize::from(later);
                    continue;
                }
                kept.push_str(line);
            }
            if kept.len() != text.len() {
                alexnet_shared::atomic_write(path, kept.as_bytes()).map_err(std::io::Error::other)?;
            }
        }
        Ok((Self::open(path, main)?, dropped))
    }

    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        if let Some(f) = &mut self.file {
            let line = serde_json::to_string(r).expect("records serialize");
            writeln!(f, "{line}")?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reliability review B20: after a kill and `--resume`, the steps since the last
    /// checkpoint were logged twice. (Before: the resumed run appended after them.)
    #[test]
    fn a_resumed_run_drops_the_records_after_its_checkpoint() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("metrics.jsonl");
        let train =
            |step| Record::Train { time: 0.0, epoch: 0, step, loss: 1.0, lr: 0.1, images_per_s: 1.0, data_wait_s: 0.0 };
        let mut sink = MetricsSink::open(&p, true).unwrap();
        for s in [2, 4, 6, 8, 10] {
            sink.write(&train(s)).unwrap();
        }
        sink.write(&Record::Val { time: 0.0, epoch: 0, step: 10, top1: 0.5, top5: 0.9, loss: 1.0, epoch_seconds: 1.0 })
            .unwrap();
        drop(sink);
        // A kill in the middle of a line.
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"kind\": \"train\", \"ep").unwrap();
        // The last checkpoint was at step 6: 8, 10 and the val record are trained again.
        let (mut sink, dropped) = MetricsSink::resume(&p, true, 6).unwrap();
        assert_eq!(dropped, 3);
        for s in [8, 10] {
            sink.write(&train(s)).unwrap();
        }
        drop(sink);
        let steps: Vec<u64> = Record::read_all(&p).unwrap().iter().map(Record::step).collect();
        assert_eq!(steps, [2, 4, 6, 8, 10]);
        // Another rank's sink writes nothing and touches nothing.
        let before = std::fs::read(&p).unwrap();
        let (_, dropped) = MetricsSink::resume(&p, false, 0).unwrap();
        assert_eq!((dropped, std::fs::read(&p).unwrap()), (0, before));
    }

    #[test]
    fn records_round_trip_and_lines_of_earlier_versions_read() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("metrics.jsonl");
        let r = Record::Val { time: 1.5, epoch: 2, step: 30, top1: 0.25, top5: 0.5, loss: 1.75, epoch_seconds: 9.0 };
        let mut sink = MetricsSink::open(&p, true).unwrap();
        sink.write(&r).unwrap();
        sink.flush().unwrap();
        // As the trainer wrote them before the records were typed (spaces, rounding).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"time\": 3.000, \"kind\": \"train\", \"epoch\": 0, \"step\": 2, \"loss\": 2.29920, \"lr\": 0.005, \"images_per_s\": 151.0, \"data_wait_s\": 0.000}\n{\"kind\": \"tr")
            .unwrap();
        let all = Record::read_all(&p).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], r);
        assert!(matches!(all[1], Record::Train { step: 2, loss, .. } if loss == 2.2992));
        // Other ranks write nothing.
        let q = t.path().join("other.jsonl");
        MetricsSink::open(&q, false).unwrap().write(&r).unwrap();
        assert!(!q.exists());
    }
}
