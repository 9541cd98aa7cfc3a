//! `train compare RUN_DIR...`: one table of runs side by side: what differs between
//! their configurations, best and last validation top-1 / top-5 error (center crop,
//! from `metrics.jsonl`), ten-crop errors where `eval score --json` wrote a report into
//! the run folder, epochs and wall time, and the paper's claimed difference for the
//! switches a run changes from the first run (the baseline). Markdown, CSV or JSON; with
//! `--plot`, one PNG with the runs' curves overlaid; with `--by-seed` ([`seeds`]), one
//! row per variant with the mean and spread over its seeds.

pub mod seeds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::{TrainConfig, DERIVED};
use crate::train::metrics::Record;

/// One run as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub run: String,
    /// The keys that differ between the runs: this run's values.
    pub differs: BTreeMap<String, String>,
    /// Epochs with a validation record.
    pub epochs: usize,
    /// Best and last center-crop validation errors (fractions), None without any.
    pub best_top1_error: Option<f64>,
    pub best_top5_error: Option<f64>,
    pub last_top1_error: Option<f64>,
    pub last_top5_error: Option<f64>,
    /// From an `eval score --json` report with ten crops in the run folder.
    pub ten_crop_top1_error: Option<f64>,
    pub ten_crop_top5_error: Option<f64>,
    /// Seconds of training (the epochs' own times; else the records' time span).
    pub wall_s: f64,
    /// The paper's claim for each switch this run changes from the first run's value.
    pub paper_claims: Vec<String>,
    /// The training curves: (step, loss) and (epoch, top-1 error).
    #[serde(skip)]
    pub train_loss: Vec<(u64, f64)>,
    #[serde(skip)]
    pub val_top1_error: Vec<(u64, f64)>,
}

/// The paper's claimed effect of a switch's value other than the paper's.
pub fn paper_claim(key: &str, value: &str) -> Option<String> {
    let v = value.trim_matches('"');
    let claim = match (key, v) {
        ("model.activation", "tanh") => "3.1, Figure 1: tanh about 6x slower to 25% training error (CIFAR-10)",
        ("model.lrn", "false") => "3.3: without LRN top-1 / top-5 error +1.4 / +1.2 points",
        ("model.pooling", "non-overlapping") => "3.4: non-overlapping pooling +0.4 / +0.3 points",
        ("model.towers", "1") => "3.2: the one-GPU net +1.7 / +1.2 points",
        ("data.pca_noise", "false") => "4.1: without PCA colour noise top-1 error over +1 point",
        ("model.dropout", "0.0") | ("model.dropout", "0") => "4.2: without dropout, substantial overfitting",
        ("model.dropout", _) => "4.2: the paper's dropout is 0.5",
        _ => return None,
    };
    Some(claim.to_string())
}

/// The newest `*.json` in the run folder that is an `eval score` report of ten crops:
/// (top-1 error, top-5 error).
fn ten_crop(dir: &Path) -> Option<(f64, f64)> {
    let mut best: Option<(std::time::SystemTime, f64, f64)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let (Some(t1), Some(t5), Some(10)) = (v["top1"].as_f64(), v["top5"].as_f64(), v["crops"].as_u64()) else {
            continue;
        };
        let when = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|b| when >= b.0) {
            best = Some((when, 1.0 - t1, 1.0 - t5));
        }
    }
    best.map(|(_, a, b)| (a, b))
}

/// Reads every run and builds the comparison (the first run is the baseline).
pub fn compare(dirs: &[PathBuf]) -> Result<Vec<RunSummary>> {
    if dirs.len() < 2 {
        bail!("give at least two run folders to compare");
    }
    let mut configs = Vec::new();
    for d in dirs {
        let path = d.join("config.toml");
        if !path.is_file() {
            bail!("{}: not a run folder (no config.toml; `train run --run-dir` writes one)", d.display());
        }
        configs.push(TrainConfig::read(&path).with_context(|| format!("run {}", d.display()))?.leaves());
    }
    let mut keys: Vec<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| !DERIVED.contains(&k.as_str()))
        .filter(|k| configs.iter().any(|c| c.get(*k) != configs[0].get(*k)))
        .cloned()
        .collect();
    let mut out = Vec::new();
    for (d, cfg) in dirs.iter().zip(&configs) {
        let metrics = d.join("metrics.jsonl");
        let records = if metrics.is_file() {
            Record::read_all(&metrics).with_context(|| format!("reading {}", metrics.display()))?
        } else {
            Vec::new()
        };
        // A step or epoch logged twice (a resume) keeps its latest value.
        let mut val: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
        let mut loss: BTreeMap<u64, f64> = BTreeMap::new();
        let (mut t0, mut t1) = (f64::INFINITY, 0.0f64);
        for r in &records {
            match *r {
                Record::Train { step, loss: l, time, .. } => {
                    loss.insert(step, l);
                    if time > 0.0 {
                        (t0, t1) = (t0.min(time), t1.max(time));
                    }
                }
                Record::Val { epoch, top1, top5, epoch_seconds, time, .. } => {
                    val.insert(epoch, (1.0 - top1, 1.0 - top5, epoch_seconds));
                    if time > 0.0 {
                        (t0, t1) = (t0.min(time), t1.max(time));
                    }
                }
                Record::Holdout { .. } | Record::World { .. } => {}
            }
        }
        let epoch_time: f64 = val.values().map(|v| v.2).sum();
        let wall_s = if epoch_time > 0.0 { epoch_time } else { (t1 - t0).max(0.0) };
        let min = |f: fn(&(f64, f64, f64)) -> f64| val.values().map(f).reduce(f64::min);
        let last = val.values().next_back();
        let ten = ten_crop(d);
        // TOML text, strings without their quotes (`tanh`, not `"tanh"`).
        let shown = |v: &String| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_string();
        let differs: BTreeMap<String, String> =
            differing.iter().map(|k| (k.clone(), cfg.get(k).map_or_else(|| "(unset)".into(), shown))).collect();
        let paper_claims = differing
            .iter()
            .filter(|k| cfg.get(*k) != configs[0].get(*k))
            .filter_map(|k| paper_claim(k, cfg.get(k)?))
            .collect();
        out.push(RunSummary {
            run: d.display().to_string(),
            differs,
            epochs: val.len(),
            best_top1_error: min(|v| v.0),
            best_top5_error: min(|v| v.1),
            last_top1_error: last.map(|v| v.0),
            last_top5_error: last.map(|v| v.1),
            ten_crop_top1_error: ten.map(|t| t.0),
            ten_crop_top5_error: ten.map(|t| t.1),
            wall_s,
            paper_claims,
            train_loss: loss.into_iter().collect(),
            val_top1_error: val.iter().map(|(&e, v)| (e, v.0)).collect(),
        });
    }
    Ok(out)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2}", 100.0 * v))
}

/// The table's columns: the differing keys, then the scores (errors in percent).
fn rows(runs: &[RunSummary]) -> (Vec<String>, Vec<Vec<String>>) {
    let keys: Vec<String> = runs.first().map(|r| r.differs.keys().cloned().collect()).unwrap_or_default();
    let mut header = vec!["run".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(
        [
            "epochs",
            "best top-1 err %",
            "best top-5 err %",
            "last top-1 err %",
            "last top-5 err %",
            "10-crop top-1 err %",
            "10-crop top-5 err %",
            "wall s",
            "paper's claimed difference",
        ]
        .map(String::from),
    );
    let body = runs
        .iter()
        .map(|r| {
            let mut row = vec![r.run.clone()];
            row.extend(keys.iter().map(|k| r.differs.get(k).cloned().unwrap_or_default()));
            row.extend([
                r.epochs.to_string(),
                pct(r.best_top1_error),
                pct(r.best_top5_error),
                pct(r.last_top1_error),
                pct(r.last_top5_error),
                pct(r.ten_crop_top1_error),
                pct(r.ten_crop_top5_error),
                format!("{:.0}", r.wall_s),
                if r.paper_claims.is_empty() { "-".into() } else { r.paper_claims.join("; ") },
            ]);
            row
        })
        .collect();
    (header, body)
}

/// Markdown: the table (the first run is the baseline the claims compare against).
pub fn markdown(runs: &[RunSummary]) -> String {
    let (header, body) = rows(runs);
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!("| {} |\n", header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
    out += &format!("|{}\n", "---|".repeat(header.len()));
    for row in body {
        out += &format!("| {} |\n", row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | "));
    }
    out += "\nErrors in percent on val, center crop (best and last epoch); the first run is the baseline.";
    out
}

/// CSV with the same columns (fields quoted where needed).
pub fn csv(runs: &[RunSummary]) -> String {
    let (header, body) = rows(runs);
    let field = |s: &String| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.clone()
        }
    };
    std::iter::once(header)
        .chain(body)
        .map(|r| r.iter().map(field).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The runs' curves overlaid, one colour per run: the training loss by step (left)
/// and the validation top-1 error by epoch (right). Written atomically.
pub fn write_plot(runs: &[RunSummary], path: &Path) -> Result<()> {
    use image::ImageEncoder;
    use plotters::prelude::*;
    let (w, h) = (crate::curves::WIDTH, crate::curves::HEIGHT);
    crate::curves::register_font();
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (left, right) = root.split_horizontally(w / 2);
        let name =
            |r: &RunSummary| Path::new(&r.run).file_name().map_or(r.run.clone(), |n| n.to_string_lossy().into_owned());
        let color = |i: usize| Palette99::pick(i).to_rgba();
        let x_max = runs.iter().flat_map(|r| r.train_loss.iter().map(|p| p.0 as f64)).fold(1.0, f64::max);
        let y_max =
            runs.iter().flat_map(|r| r.train_loss.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(1e-3, f64::max);
        let mut chart = ChartBuilder::on(&left)
            .caption("training loss", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max * 1.05)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("step").y_desc("cross-entropy").draw().map_err(|e| err(&e))?;
        for (i, r) in runs.iter().enumerate() {
            let c = color(i);
            let pts = r.train_loss.iter().filter(|p| p.1.is_finite()).map(|&(s, l)| (s as f64, l));
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name(r))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| err(&e))?;
        let e_max = runs.iter().flat_map(|r| r.val_top1_error.iter().map(|p| p.0 as f64)).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&right)
            .caption("val top-1 error (center crop)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..e_max, 0.0..1.0)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("epochs done").y_desc("error").draw().map_err(|e| err(&e))?;
        for (i, r) in runs.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = r.val_top1_error.iter().map(|&(e, v)| (e as f64, v)).collect();
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2))).map_err(|e| err(&e))?;
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(|e| err(&e))?
                .label(name(r))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, c.filled()));
        }
        chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&buf, w, h, image::ExtendedColorType::Rgb8)
        .context("encoding the comparison PNG")?;
    alexnet_shared::atomic_write(path, &png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, sets: &[&str], vals: &[(f64, f64)], ten: Option<(f64, f64)>) {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = TrainConfig::parse("", &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        std::fs::write(dir.join("config.toml"), cfg.to_toml()).unwrap();
        let mut m = String::new();
        for (e, (t1, t5)) in vals.iter().enumerate() {
            m += &format!(
                "{{\"kind\": \"train\", \"epoch\": {e}, \"step\": {}, \"loss\": {}}}\n",
                e * 10 + 5,
                2.0 - e as f64 * 0.1
            );
            m += &format!(
                "{{\"kind\": \"val\", \"epoch\": {e}, \"step\": {}, \"top1\": {t1}, \"top5\": {t5}, \"loss\": 1.0, \
                 \"epoch_seconds\": 30.0}}\n",
                e * 10 + 10
            );
        }
        std::fs::write(dir.join("metrics.jsonl"), m).unwrap();
        if let Some((t1, t5)) = ten {
            std::fs::write(dir.join("score.json"), format!("{{\"top1\": {t1}, \"top5\": {t5}, \"crops\": 10}}"))
                .unwrap();
        }
    }

    #[test]
    fn the_table_shows_what_differs_the_errors_and_the_papers_claim() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("base"), t.path().join("nolrn"));
        run(&a, &["run.seed=1"], &[(0.5, 0.8), (0.7, 0.9), (0.6, 0.9)], Some((0.75, 0.95)));
        run(&b, &["run.seed=1", "model.lrn=false"], &[(0.4, 0.7), (0.6, 0.85)], None);
        let runs = compare(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(runs[0].differs, BTreeMap::from([("model.lrn".to_string(), "true".to_string())]));
        assert_eq!(runs[1].differs["model.lrn"], "false");
        assert_eq!((runs[0].epochs, runs[0].wall_s), (3, 90.0));
        let close = |x: Option<f64>, y: f64| (x.unwrap() - y).abs() < 1e-12;
        assert!(close(runs[0].best_top1_error, 0.3) && close(runs[0].last_top1_error, 0.4));
        assert!(close(runs[0].ten_crop_top1_error, 0.25) && runs[1].ten_crop_top1_error.is_none());
        assert!(runs[0].paper_claims.is_empty());
        assert_eq!(runs[1].paper_claims, ["3.3: without LRN top-1 / top-5 error +1.4 / +1.2 points"]);
        let c = t.path().join("pool2");
        run(&c, &["run.seed=1", "model.pooling=non-overlapping"], &[(0.5, 0.8)], None);
        let three = compare(&[a.clone(), c]).unwrap();
        assert_eq!(three[1].differs["model.pooling"], "non-overlapping", "strings shown without quotes");
        let md = markdown(&runs);
        assert!(md.contains("| run | model.lrn | epochs | best top-1 err % |"), "{md}");
        assert!(md.contains("| false | 2 | 40.00 | 15.00 | 40.00 | 15.00 | - | - | 60 | 3.3: without LRN"), "{md}");
        let c = csv(&runs);
        assert_eq!(c.lines().count(), 3);
        assert!(c.lines().nth(1).unwrap().ends_with(",true,3,30.00,10.00,40.00,10.00,25.00,5.00,90,-"), "{c}");
        let png = t.path().join("cmp.png");
        write_plot(&runs, &png).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (crate::curves::WIDTH, crate::curves::HEIGHT));
        let e = compare(std::slice::from_ref(&a)).unwrap_err().to_string();
        assert!(e.contains("at least two"), "{e}");
        let e = compare(&[a, t.path().join("nope")]).unwrap_err().to_string();
        assert!(e.contains("nope: not a run folder"), "{e}");
    }
}
