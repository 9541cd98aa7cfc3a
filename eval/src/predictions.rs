//! Every image's top-5 (`eval score --predictions FILE`): CSV, or Parquet when the
//! name ends in `.parquet`. Columns: `key` (the image's source path in its split),
//! `label` (class index), then `class_1, prob_1, ..., class_k, prob_k` with
//! k = min(5, classes), ordered by probability, ties to the lower class index.
//! Written as [`OutputFile`] writes: a regular file under a temporary name renamed when
//! complete (left as it was when scoring fails), a symlink through to its target, a
//! FIFO or device in place.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use alexnet_shared::OutputFile;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::{ArrayBuilder, Float32Builder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

/// One image's line.
pub struct Prediction<'a> {
    pub key: &'a str,
    pub label: i64,
    pub classes: &'a [i64],
    pub probabilities: &'a [f32],
}

struct ParquetSink {
    writer: ArrowWriter<OutputFile>,
    schema: Arc<Schema>,
    keys: StringBuilder,
    labels: Int32Builder,
    top: Vec<(Int32Builder, Float32Builder)>,
}

enum Sink {
    Csv(BufWriter<OutputFile>),
    Parquet(Box<ParquetSink>),
}

pub struct PredictionWriter {
    path: PathBuf,
    /// What is written now (the temporary file, or the target in place), for messages.
    tmp: PathBuf,
    k: usize,
    sink: Sink,
    rows: usize,
}

const PARQUET_BATCH: usize = 8192;

impl PredictionWriter {
    /// `k`: columns of classes (min(5, classes)).
    pub fn create(path: &Path, k: usize) -> Result<Self> {
        let file = OutputFile::create(path).with_context(|| format!("creating {}", path.display()))?;
        let tmp = file.writing().to_path_buf();
        let parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let sink = if parquet {
            let mut fields =
                vec![Field::new("key", DataType::Utf8, false), Field::new("label", DataType::Int32, false)];
            for i in 1..=k {
                fields.push(Field::new(format!("class_{i}"), DataType::Int32, false));
                fields.push(Field::new(format!("prob_{i}"), DataType::Float32, false));
            }
            let schema = Arc::new(Schema::new(fields));
            let writer = ArrowWriter::try_new(file, schema.clone(), None)
                .with_context(|| format!("starting {}", tmp.display()))?;
            Sink::Parquet(Box::new(ParquetSink {
                writer,
                schema,
                keys: StringBuilder::new(),
                labels: Int32Builder::new(),
                top: (0..k).map(|_| (Int32Builder::new(), Float32Builder::new())).collect(),
            }))
        } else {
            let mut w = BufWriter::new(file);
            let cols: Vec<String> = (1..=k).map(|i| format!(",class_{i},prob_{i}")).collect();
            writeln!(w, "key,label{}", cols.concat()).with_context(|| format!("writing {}", tmp.display()))?;
            Sink::Csv(w)
        };
        Ok(Self { path: path.to_path_buf(), tmp, k, sink, rows: 0 })
    }

    pub fn write(&mut self, p: &Prediction<'_>) -> Result<()> {
        debug_assert!(p.classes.len() == self.k && p.probabilities.len() == self.k);
        match &mut self.sink {
            Sink::Csv(w) => {
                let mut line = format!("{},{}", csv_field(p.key), p.label);
                for (c, q) in p.classes.iter().zip(p.probabilities) {
                    line += &format!(",{c},{q}");
                }
                writeln!(w, "{line}").with_context(|| format!("writing {}", self.tmp.display()))?;
            }
            Sink::Parquet(ps) => {
                ps.keys.append_value(p.key);
                ps.labels.append_value(p.label as i32);
                for ((cb, pb), (&c, &q)) in ps.top.iter_mut().zip(p.classes.iter().zip(p.probabilities)) {
                    cb.append_value(c as i32);
                    pb.append_value(q);
                }
            }
        }
        self.rows += 1;
        if self.rows.is_multiple_of(PARQUET_BATCH) {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if let Sink::Parquet(ps) = &mut self.sink {
            let ParquetSink { writer, schema, keys, labels, top } = ps.as_mut();
            if labels.is_empty() {
                return Ok(());
            }
            let mut cols: Vec<ArrayRef> = vec![Arc::new(keys.finish()), Arc::new(labels.finish())];
            for (cb, pb) in top.iter_mut() {
                cols.push(Arc::new(cb.finish()));
                cols.push(Arc::new(pb.finish()));
            }
            let batch = RecordBatch::try_new(schema.clone(), cols)?;
            writer.write(&batch).with_context(|| format!("writing {}", self.tmp.display()))?;
        }
        Ok(())
    }

    /// Completes the file and moves it to its name.
    pub fn finish(mut self) -> Result<()> {
        self.flush_batch()?;
        let file = match self.sink {
            Sink::Csv(w) => {
                w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", self.tmp.display()))?
            }
            Sink::Parquet(ps) => ps.writer.into_inner().with_context(|| format!("closing {}", self.tmp.display()))?,
        };
        file.commit().with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("n01/a.JPEG"), "n01/a.JPEG");
        assert_eq!(csv_field("a,b\"c"), "\"a,b\"\"c\"");
    }
}
