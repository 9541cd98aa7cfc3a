//! TensorBoard event files in the run folder, beside `metrics.jsonl`, so that
//! `tensorboard --logdir runs/` shows every run: the same numbers as the `train`, `val`
//! and `holdout` records, as scalars against the global step (`train/loss`, `train/lr`,
//! `train/images_per_s`, `train/data_wait_s`; `val/top1`, `val/top5`, `val/loss`,
//! `val/epoch_seconds`; `holdout/top1`, `holdout/top5`, `holdout/loss`).
//!
//! The format is TensorFlow's: a file named `events.out.tfevents.<seconds>.<host>.<pid>`
//! of TFRecords (`u64` length, masked CRC-32C of the length, the bytes, masked CRC-32C
//! of the bytes; little-endian), each an `Event` protobuf (tensorflow/core/util/
//! event.proto; the summary in summary.proto). The messages below are the subset of
//! those files' fields that is written, with their field numbers; prost encodes them.
//!
//! Each start of a run writes a file of its own. A resumed run first rewrites the files
//! of the earlier starts without the events after the step it resumes from (those steps
//! are trained and logged again, as in `metrics.jsonl`), so no step is in the folder
//! twice; its file then begins with a `SessionLog` START at the first step it trains,
//! which makes a TensorBoard that is already watching drop what it had shown past it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::metrics::Record;

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// "brain.Event:2": the first event of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value` (a scalar).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// `SessionStatus`: 1 START, 2 STOP, 3 CHECKPOINT.
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `SessionLog.SessionStatus.START`.
pub const SESSION_START: i32 = 1;

/// The file names TensorBoard reads: `events.out.tfevents.*`.
const PREFIX: &str = "events.out.tfevents.";

/// One event file being written.
pub struct EventFile {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventFile {
    /// A new event file in `dir` (named for `wall_time`, the host and the process),
    /// with its version event.
    pub fn create(dir: &Path, wall_time: f64) -> io::Result<Self> {
        let base =
            format!("{PREFIX}{:010}.{}.{}", wall_time as u64, crate::provenance::host_name(), std::process::id());
        let mut n = 0;
        let (file, path) = loop {
            let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
            let path = dir.join(name);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let mut me = Self { out: BufWriter::new(file), path };
        me.write(&Event { wall_time, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, e: &Event) -> io::Result<()> {
        self.out.write_all(&frame(&e.encode_to_vec()))
    }

    /// Scalars at `step`, one event.
    pub fn scalars(&mut self, wall_time: f64, step: u64, values: &[(&str, f64)]) -> io::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue { tag: tag.to_string(), simple_value: Some(*v as f32) })
            .collect();
        self.write(&Event { wall_time, step: step as i64, what: Some(What::Summary(Summary { value })) })
    }

    /// The scalars of a `metrics.jsonl` record.
    pub fn record(&mut self, r: &Record) -> io::Result<()> {
        match *r {
            Record::Train { time, step, loss, lr, images_per_s, data_wait_s, .. } => self.scalars(
                time,
                step,
                &[
                    ("train/loss", loss),
                    ("train/lr", lr),
                    ("train/images_per_s", images_per_s),
                    ("train/data_wait_s", data_wait_s),
                ],
            ),
            Record::Val { time, step, top1, top5, loss, epoch_seconds, .. } => self.scalars(
                time,
                step,
                &[("val/top1", top1), ("val/top5", top5), ("val/loss", loss), ("val/epoch_seconds", epoch_seconds)],
            ),
            Record::Holdout { time, step, top1, top5, loss, .. } => {
                self.scalars(time, step, &[("holdout/top1", top1), ("holdout/top5", top5), ("holdout/loss", loss)])
            }
            Record::World { time, step, to, global_batch, lr, .. } => self.scalars(
                time,
                step,
                &[("dist/world_size", to as f64), ("dist/global_batch", global_batch as f64), ("dist/lr", lr)],
            ),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The event files of `dir`, in the order TensorBoard reads them (by name).
pub fn event_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(PREFIX) && e.file_type()?.is_file() {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The events of the file `path`, up to the first record cut short or damaged (a kill
/// in the middle of a write): `(events, whole)`, `whole` false when something was cut.
pub fn read_events(path: &Path) -> io::Result<(Vec<Event>, bool)> {
    let bytes = std::fs::read(path)?;
    let mut events = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match unframe(rest) {
            Some((data, next)) => match Event::decode(data) {
                Ok(e) => {
                    events.push(e);
                    rest = next;
                }
                Err(_) => return Ok((events, false)),
            },
            None => return Ok((events, false)),
        }
    }
    Ok((events, true))
}

/// For a run resumed at global step `step`: rewrites each event file of `dir` without
/// the summaries after `step` (and without a record cut by a kill), atomically. Returns
/// the number of summary events dropped.
pub fn drop_after(dir: &Path, step: u64) -> io::Result<usize> {
    let mut dropped = 0;
    for path in event_files(dir)? {
        let (events, whole) = read_events(&path)?;
        let later = |e: &Event| matches!(e.what, Some(What::Summary(_))) && e.step > step as i64;
        let n = events.iter().filter(|e| later(e)).count();
        if n == 0 && whole {
            continue;
        }
        dropped += n;
        let kept: Vec<u8> = events.iter().filter(|e| !later(e)).flat_map(|e| frame(&e.encode_to_vec())).collect();
        alexnet_shared::atomic_write(&path, &kept).map_err(io::Error::other)?;
    }
    Ok(dropped)
}

/// TFRecord framing of `data`.
fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The first record of `b` and what follows it; `None` when it is cut or its checksums
/// do not match.
fn unframe(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len_bytes = b.get(..8)?;
    let len = u64::from_le_bytes(len_bytes.try_into().ok()?);
    let crc = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
    if crc != masked_crc(len_bytes) {
        return None;
    }
    let end = 12usize.checked_add(usize::try_from(len).ok()?)?;
    let data = b.get(12..end)?;
    let crc = u32::from_le_bytes(b.get(end..end.checked_add(4)?)?.try_into().ok()?);
    (crc == masked_crc(data)).then(|| (data, &b[end + 4..]))
}

/// TFRecord's masked CRC-32C.
fn masked_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(b);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_steps(dir: &Path, tag: &str) -> Vec<i64> {
        let mut steps = Vec::new();
        for f in event_files(dir).unwrap() {
            for e in read_events(&f).unwrap().0 {
                if let Some(What::Summary(s)) = &e.what {
                    if s.value.iter().any(|v| v.tag == tag) {
                        steps.push(e.step);
                    }
                }
            }
        }
        steps
    }

    #[test]
    fn the_framing_is_tfrecords() {
        // TFRecord of the empty record: length 0, its masked CRC, no bytes, the masked
        // CRC of nothing (0xa282ead8, since crc32c("") = 0).
        let f = frame(b"");
        assert_eq!(&f[..8], &[0; 8]);
        assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), 0xa282_ead8);
        // crc32c("123456789") = 0xe3069283 (RFC 3720's check value), masked.
        assert_eq!(masked_crc(b"123456789"), 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
        let f = frame(b"abc");
        assert_eq!(unframe(&f), Some((&b"abc"[..], &[][..])));
        let mut bad = f.clone();
        bad[13] ^= 1;
        assert_eq!(unframe(&bad), None);
        assert_eq!(unframe(&f[..f.len() - 1]), None);
    }

    #[test]
    fn a_resume_drops_the_later_steps_and_a_cut_record() {
        let t = tempfile::tempdir().unwrap();
        let train = |step| Record::Train {
            time: 1.0,
            epoch: 0,
            step,
            loss: step as f64,
            lr: 0.1,
            images_per_s: 1.0,
            data_wait_s: 0.0,
        };
        let mut w = EventFile::create(t.path(), 1000.0).unwrap();
        for s in [2, 4, 6, 8] {
            w.record(&train(s)).unwrap();
        }
        w.record(&Record::Val { time: 1.0, epoch: 0, step: 8, top1: 0.5, top5: 0.9, loss: 1.0, epoch_seconds: 1.0 })
            .unwrap();
        w.flush().unwrap();
        let first = w.path().to_path_buf();
        drop(w);
        // A kill in the middle of a record.
        let whole = std::fs::read(&first).unwrap();
        std::fs::OpenOptions::new().append(true).open(&first).unwrap().write_all(&frame(b"xyz")[..9]).unwrap();
        assert!(!read_events(&first).unwrap().1);
        assert_eq!(drop_after(t.path(), 4).unwrap(), 3);
        assert!(read_events(&first).unwrap().1);
        // Nothing more to drop: the file is left alone.
        let before = std::fs::read(&first).unwrap();
        assert!(before.len() < whole.len());
        assert_eq!(drop_after(t.path(), 4).unwrap(), 0);
        assert_eq!(std::fs::read(&first).unwrap(), before);
        let mut w = EventFile::create(t.path(), 1000.0).unwrap(); // same second, same process
        assert_ne!(w.path(), first);
        for s in [6, 8] {
            w.record(&train(s)).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(scalar_steps(t.path(), "train/loss"), [2, 4, 6, 8]);
        assert_eq!(scalar_steps(t.path(), "val/top1"), Vec::<i64>::new());
        let (events, _) = read_events(&first).unwrap();
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
    }
}
