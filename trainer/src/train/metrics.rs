//! `RUN_DIR/metrics.jsonl`: one typed [`Record`] per line, written by rank 0 alone
//! ([`MetricsSink`]) and read back by [`crate::curves`] and by the scripts. Lines are
//! JSON objects tagged by `kind`: `train` (every `run.log_every_steps` steps: the mean
//! loss over the interval), `val` and `holdout` (every epoch's end), `world` (a resume at another world size). A resumed run
//! first drops the records after the step it resumes from (they are trained again, so
//! a step is never logged twice) and appends. Rank 0 writes the same numbers as
//! TensorBoard scalars beside it ([`super::tensorboard`]), and drops them in the same way
//! on a resume.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tensorboard::{self, EventFile, SessionLog, What, SESSION_START};

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
    /// A resumed run continuing at another world size, from this step on (`epoch`: the
    /// one being trained, from 1).
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

    /// The epoch, numbered from 1 as the checkpoints are: the epoch being trained
    /// (`train`), the epoch just ended (`val`, `holdout`: its checkpoint is `epoch-NNN`).
    pub fn epoch(&self) -> u64 {
        match self {
            Record::Train { epoch, .. }
            | Record::Val { epoch, .. }
            | Record::Holdout { epoch, .. }
            | Record::World { epoch, .. } => *epoch,
        }
    }

    fn epoch_mut(&mut self) -> &mut u64 {
        match self {
            Record::Train { epoch, .. }
            | Record::Val { epoch, .. }
            | Record::Holdout { epoch, .. }
            | Record::World { epoch, .. } => epoch,
        }
    }

    /// Every line of a `metrics.jsonl` that parses (a line cut by a crash is skipped),
    /// with the epochs numbered from 1. (Trainers before that numbering wrote them from
    /// 0: a file holding an epoch 0 is one of theirs, and is read shifted by one.)
    pub fn read_all(path: &Path) -> std::io::Result<Vec<Record>> {
        let text = std::fs::read_to_string(path)?;
        let mut all: Vec<Record> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if all.iter().any(|r| r.epoch() == 0) {
            all.iter_mut().for_each(|r| *r.epoch_mut() += 1);
        }
        Ok(all)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Where records go: `metrics.jsonl` and a TensorBoard event file of this start in the
/// same folder on rank 0, nowhere on the other ranks.
pub struct MetricsSink {
    file: Option<File>,
    events: Option<EventFile>,
}

/// The folder of `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl MetricsSink {
    /// Appends to `path` and starts an event file beside it when `main` (rank 0);
    /// otherwise a sink that drops records.
    pub fn open(path: &Path, main: bool) -> std::io::Result<Self> {
        if !main {
            return Ok(Self { file: None, events: None });
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let events = EventFile::create(folder_of(path), unix_time())?;
        Ok(Self { file: Some(file), events: Some(events) })
    }

    /// As [`Self::open`], for a run resumed at global step `step`: the records written
    /// after it (by the run that stopped, past its last checkpoint) and a line cut by a
    /// kill are dropped first, in one atomic rewrite, and so are the TensorBoard events
    /// after it in the folder's event files; the new event file starts with a session
    /// start at `step + 1`. Returns the sink and the number of records dropped from
    /// `metrics.jsonl`.
    pub fn resume(path: &Path, main: bool, step: u64) -> std::io::Result<(Self, usize)> {
        let mut dropped = 0;
        if main {
            tensorboard::drop_after(folder_of(path), step)?;
        }
        if main && path.exists() {
            let text = std::fs::read_to_string(path)?;
            let parse = |line: &str| serde_json::from_str::<Record>(line.trim_end()).ok();
            // Written with epochs from 0 (an older trainer): renumbered from 1 here, so
            // that the lines appended now follow the same numbering.
            let renumber = text.lines().filter_map(parse).any(|r| r.epoch() == 0);
            let mut kept = String::with_capacity(text.len());
            for line in text.split_inclusive('\n') {
                let whole = line.ends_with('\n');
                let record = parse(line);
                let later = record.as_ref().is_some_and(|r| r.step() > step);
                if !whole || later {
                    dropped += usize::from(later);
                    continue;
                }
                match record {
                    Some(mut r) if renumber => {
                        *r.epoch_mut() += 1;
                        kept.push_str(&serde_json::to_string(&r).expect("records serialize"));
                        kept.push('\n');
                    }
                    _ => kept.push_str(line),
                }
            }
            if kept.len() != text.len() {
                alexnet_shared::atomic_write(path, kept.as_bytes()).map_err(std::io::Error::other)?;
            }
        }
        let mut sink = Self::open(path, main)?;
        if let Some(ev) = &mut sink.events {
            if step > 0 {
                // A TensorBoard already watching drops what it showed from this step on.
                let log = SessionLog { status: SESSION_START, msg: format!("resumed after step {step}") };
                let start = tensorboard::Event {
                    wall_time: unix_time(),
                    step: step as i64 + 1,
                    what: Some(What::SessionLog(log)),
                };
                ev.write(&start)?;
                ev.flush()?;
            }
        }
        Ok((sink, dropped))
    }

    /// Writes `r` to both files (each record is on disk when this returns, for a
    /// TensorBoard or a `tail -f` watching the run).
    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        if let Some(f) = &mut self.file {
            let line = serde_json::to_string(r).expect("records serialize");
            writeln!(f, "{line}")?;
        }
        if let Some(ev) = &mut self.events {
            ev.record(r)?;
            ev.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some(ev) = &mut self.events {
            ev.flush()?;
        }
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
        // The TensorBoard files alike: two starts, each step once, the val event gone,
        // and the second file marks the session start at step 7.
        let files = tensorboard::event_files(t.path()).unwrap();
        assert_eq!(files.len(), 2);
        let events: Vec<_> = files.iter().flat_map(|f| tensorboard::read_events(f).unwrap().0).collect();
        let summaries: Vec<(i64, String)> = events
            .iter()
            .filter_map(|e| match &e.what {
                Some(What::Summary(s)) => Some((e.step, s.value[0].tag.clone())),
                _ => None,
            })
            .collect();
        let want: Vec<(i64, String)> = [2, 4, 6, 8, 10].iter().map(|&s| (s, "train/loss".to_string())).collect();
        assert_eq!(summaries, want);
        assert!(events.iter().any(|e| e.step == 7 && matches!(&e.what, Some(What::SessionLog(l)) if l.status == 1)));
        // Another rank's sink writes nothing and touches nothing.
        let before = std::fs::read(&p).unwrap();
        let (_, dropped) = MetricsSink::resume(&p, false, 0).unwrap();
        assert_eq!((dropped, std::fs::read(&p).unwrap()), (0, before));
    }

    /// First-use review: epochs were 0-based in the logs and metrics.jsonl, 1-based in
    /// the checkpoint names. A file of the old numbering reads renumbered, and a resume
    /// renumbers it before appending, so one file never mixes the two.
    #[test]
    fn epochs_of_an_older_file_are_renumbered_from_one() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("metrics.jsonl");
        std::fs::write(
            &p,
            concat!(
                "{\"kind\": \"train\", \"epoch\": 0, \"step\": 2, \"loss\": 2.0}\n",
                "{\"kind\": \"val\", \"epoch\": 0, \"step\": 3, \"top1\": 0.25, \"top5\": 0.5, \"loss\": 1.8}\n",
                "{\"kind\": \"train\", \"epoch\": 1, \"step\": 4, \"loss\": 1.5}\n",
            ),
        )
        .unwrap();
        let epochs = |p: &Path| Record::read_all(p).unwrap().iter().map(Record::epoch).collect::<Vec<_>>();
        assert_eq!(epochs(&p), [1, 1, 2]);
        let (mut sink, dropped) = MetricsSink::resume(&p, true, 3).unwrap();
        assert_eq!(dropped, 1);
        let r = Record::Train { time: 0.0, epoch: 2, step: 4, loss: 1.4, lr: 0.1, images_per_s: 1.0, data_wait_s: 0.0 };
        sink.write(&r).unwrap();
        drop(sink);
        assert_eq!(epochs(&p), [1, 1, 2]);
        assert!(!std::fs::read_to_string(&p).unwrap().contains("\"epoch\":0"));
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
        // That line's epoch 0 marks the file as numbered from 0: read renumbered from 1.
        let mut renumbered = r.clone();
        *renumbered.epoch_mut() += 1;
        assert_eq!(all[0], renumbered);
        assert!(matches!(all[1], Record::Train { epoch: 1, step: 2, loss, .. } if loss == 2.2992));
        // Other ranks write nothing.
        let q = t.path().join("other.jsonl");
        let files = tensorboard::event_files(t.path()).unwrap().len();
        MetricsSink::open(&q, false).unwrap().write(&r).unwrap();
        assert!(!q.exists());
        assert_eq!(tensorboard::event_files(t.path()).unwrap().len(), files);
    }
}
