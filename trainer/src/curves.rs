//! The training curves as a picture: `RUN_DIR/curves.png`, redrawn after every epoch
//! from `RUN_DIR/metrics.jsonl`, so a resumed run shows its whole history.
//!
//! Titled with the run's name (its folder). Left, top: the training loss by step (the
//! mean over each logging interval), with the validation loss at each epoch's end; left,
//! bottom: the learning rate by step (log scale: the paper's divisions by 10 are equal
//! steps down), on the same step axis. Right: the top-1 and top-5 error by epoch on val
//! (solid) and, where the run holds out part of train, on that slice (dashed).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result};
use image::ImageEncoder;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::train::metrics::Record;

pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 600;
/// The title bar of the curves picture.
const TITLE_HEIGHT: u32 = 40;

/// What the picture draws, read back from `metrics.jsonl`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Curves {
    /// The run's name in the title (its folder's name; empty: none).
    pub name: String,
    /// step -> mean training loss
    pub train_loss: BTreeMap<u64, f64>,
    /// step -> learning rate (records written before it was logged have none)
    pub lr: BTreeMap<u64, f64>,
    /// epoch (from 1: the checkpoint `epoch-NNN` written after it) -> (step, top-1,
    /// top-5, loss) on val
    pub val: BTreeMap<u64, (u64, f64, f64, f64)>,
    /// epoch -> (step, top-1, top-5, loss) on the held-out slice of train
    pub holdout: BTreeMap<u64, (u64, f64, f64, f64)>,
}

impl Curves {
    /// Reads `metrics.jsonl`. A step or epoch logged twice (a run resumed from a
    /// checkpoint older than its last log line) keeps its latest value; lines that do
    /// not parse (a line cut by a crash) are skipped. The name is the folder's.
    pub fn read(path: &Path) -> Result<Self> {
        let records = Record::read_all(path).with_context(|| format!("reading {}", path.display()))?;
        let name = std::path::absolute(path).ok().and_then(|p| Some(p.parent()?.file_name()?.to_string_lossy().into()));
        let mut c = Curves { name: name.unwrap_or_default(), ..Default::default() };
        for r in records {
            match r {
                Record::Train { step, loss, lr, .. } => {
                    c.train_loss.insert(step, loss);
                    if lr.is_finite() && lr > 0.0 {
                        c.lr.insert(step, lr);
                    }
                }
                Record::Val { epoch, step, top1, top5, loss, .. } => {
                    c.val.insert(epoch, (step, top1, top5, loss));
                }
                Record::Holdout { epoch, step, top1, top5, loss, .. } => {
                    c.holdout.insert(epoch, (step, top1, top5, loss));
                }
                Record::World { .. } => {}
            }
        }
        Ok(c)
    }

    /// The picture as RGB pixels, `WIDTH` x `HEIGHT`.
    pub fn render(&self) -> Result<Vec<u8>> {
        register_font();
        let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let (title, body) = root.split_vertically(TITLE_HEIGHT);
            let text = if self.name.is_empty() {
                "training curves".to_string()
            } else {
                format!("training curves: {}", self.name)
            };
            title.draw(&Text::new(text, (16, 10), ("sans-serif", 24).into_font().color(&BLACK))).map_err(plot_err)?;
            let (left, right) = body.split_horizontally(WIDTH / 2);
            let (loss, lr) = left.split_vertically((HEIGHT - TITLE_HEIGHT) * 5 / 8);
            self.draw_loss(&loss).map_err(plot_err)?;
            self.draw_lr(&lr).map_err(plot_err)?;
            self.draw_error(&right).map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        Ok(buf)
    }

    /// Renders and writes the PNG atomically (a reader never sees half a picture).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let rgb = self.render()?;
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&rgb, WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
            .context("encoding the curves PNG")?;
        alexnet_shared::atomic_write(path, &png)?;
        Ok(())
    }

    fn draw_loss<DB: DrawingBackend>(&self, area: &DrawingArea<DB, plotters::coord::Shift>) -> PlotResult<DB> {
        let mut pts: Vec<(f64, f64)> = self.train_loss.iter().map(|(&s, &l)| (s as f64, l)).collect();
        let vpts: Vec<(f64, f64)> = self.val.values().map(|&(s, _, _, l)| (s as f64, l)).collect();
        pts.retain(|p| p.1.is_finite());
        let x_max = self.step_max();
        let y_max = pts.iter().chain(vpts.iter()).map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption("loss", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("cross-entropy")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))?
            .label("train (mean per log interval)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        if !vpts.is_empty() {
            chart.draw_series(LineSeries::new(vpts.clone(), RED.stroke_width(2)))?;
            chart
                .draw_series(vpts.iter().map(|&p| Circle::new(p, 3, RED.filled())))?
                .label("val (epoch end)")
                .legend(|(x, y)| Circle::new((x + 10, y), 3, RED.filled()));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK).draw()?;
        Ok(())
    }

    /// The step axis of the loss and learning-rate panels (the same for both).
    fn step_max(&self) -> f64 {
        let val = self.val.values().map(|v| v.0);
        self.train_loss.keys().copied().chain(self.lr.keys().copied()).chain(val).map(|s| s as f64).fold(1.0, f64::max)
    }

    fn draw_lr<DB: DrawingBackend>(&self, area: &DrawingArea<DB, plotters::coord::Shift>) -> PlotResult<DB> {
        let pts: Vec<(f64, f64)> = self.lr.iter().map(|(&s, &l)| (s as f64, l)).collect();
        let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        // A decade of room around the values (a constant rate is a line in the middle).
        let (lo, hi) = if pts.is_empty() { (1e-4, 1e-1) } else { (lo / 3.0, hi * 3.0) };
        let mut chart = ChartBuilder::on(area)
            .caption("learning rate", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..self.step_max(), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("lr")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .y_labels(4)
            .light_line_style(WHITE)
            .draw()?;
        // A step function: each logged rate holds until the next record.
        let mut stairs = Vec::with_capacity(2 * pts.len());
        for (i, &(s, l)) in pts.iter().enumerate() {
            if i > 0 {
                stairs.push((s, pts[i - 1].1));
            }
            stairs.push((s, l));
        }
        chart.draw_series(LineSeries::new(stairs, MAGENTA.stroke_width(2)))?;
        // Each rate's value where it starts.
        let starts = pts.iter().enumerate().filter(|&(i, p)| i == 0 || pts[i - 1].1 != p.1);
        let font = ("sans-serif", 14).into_font().color(&BLACK);
        chart.draw_series(starts.map(|(_, &(s, l))| Text::new(format!("{l}"), (s, l * 2.2), font.clone())))?;
        Ok(())
    }

    fn draw_error<DB: DrawingBackend>(&self, area: &DrawingArea<DB, plotters::coord::Shift>) -> PlotResult<DB> {
        let x_max = self.val.keys().chain(self.holdout.keys()).map(|&e| e as f64).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption("error (1 - accuracy)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("epochs done")
            .y_desc("error")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        let series = |m: &BTreeMap<u64, (u64, f64, f64, f64)>, top5: bool| -> Vec<(f64, f64)> {
            m.iter().map(|(&e, &(_, t1, t5, _))| (e as f64, 1.0 - if top5 { t5 } else { t1 })).collect()
        };
        for (m, name, dashed) in [(&self.val, "val", false), (&self.holdout, "held-out train", true)] {
            if m.is_empty() {
                continue;
            }
            for (top5, color, k) in [(false, RED, "top-1"), (true, GREEN, "top-5")] {
                let pts = series(m, top5);
                let style = color.stroke_width(2);
                let label = format!("{name} {k}");
                if dashed {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], style));
                } else {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                }
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK).draw()?;
        Ok(())
    }
}

type PlotResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing the training curves: {e}")
}

/// plotters draws text with a font registered at run time: DejaVu Sans, embedded in the
/// binary (no system fonts needed).
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid; a failure would only lose the axis labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_runs_repeated_steps_keep_the_latest_value_and_cut_lines_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("metrics.jsonl");
        std::fs::write(
            &p,
            concat!(
                "{\"kind\": \"train\", \"epoch\": 0, \"step\": 10, \"loss\": 2.0}\n",
                "{\"kind\": \"train\", \"epoch\": 0, \"step\": 20, \"loss\": 1.5}\n",
                "{\"kind\": \"val\", \"epoch\": 0, \"step\": 20, \"top1\": 0.25, \"top5\": 0.5, \"loss\": 1.8}\n",
                "{\"kind\": \"train\", \"epoch\": 1, \"step\": 30, \"lo\n",
                "{\"kind\": \"train\", \"epoch\": 0, \"step\": 20, \"loss\": 1.4}\n",
                "{\"kind\": \"holdout\", \"epoch\": 0, \"step\": 20, \"top1\": 0.5, \"top5\": 0.75, \"loss\": 1.2}\n",
            ),
        )
        .unwrap();
        let c = Curves::read(&p).unwrap();
        assert_eq!(c.train_loss, BTreeMap::from([(10, 2.0), (20, 1.4)]));
        // Written from epoch 0 (an older trainer): read as epoch 1, as the checkpoint.
        assert_eq!(c.val, BTreeMap::from([(1, (20, 0.25, 0.5, 1.8))]));
        assert_eq!(c.holdout, BTreeMap::from([(1, (20, 0.5, 0.75, 1.2))]));
    }

    #[test]
    fn the_picture_has_the_curves_in_their_colours_and_axis_text() {
        let mut c = Curves { name: "paper-run".into(), ..Default::default() };
        for s in 1..=40u64 {
            c.train_loss.insert(s * 10, 2.3 / (1.0 + s as f64 * 0.1));
            c.lr.insert(s * 10, if s <= 20 { 0.01 } else { 0.001 });
        }
        for e in 1..=4u64 {
            let acc = 0.05 + 0.15 * e as f64;
            c.val.insert(e, (e * 100, acc, acc + 0.3, 2.3 - 0.3 * e as f64));
        }
        let rgb = c.render().unwrap();
        assert_eq!(rgb.len(), (WIDTH * HEIGHT * 3) as usize);
        let count = |left: bool, f: &dyn Fn(&[u8]) -> bool| {
            rgb.chunks(3)
                .enumerate()
                .filter(|(i, _)| ((*i as u32 % WIDTH) < WIDTH / 2) == left)
                .filter(|(_, p)| f(p))
                .count()
        };
        let blue = |p: &[u8]| p[2] > 200 && p[0] < 60 && p[1] < 60;
        let red = |p: &[u8]| p[0] > 200 && p[1] < 60 && p[2] < 60;
        let green = |p: &[u8]| p[1] > 100 && p[0] < 60 && p[2] < 60;
        let dark = |p: &[u8]| p[0] < 80 && p[1] < 80 && p[2] < 80;
        assert!(count(true, &blue) > 500, "the train loss line is drawn on the left");
        assert!(count(false, &blue) == 0, "no train loss on the right");
        assert!(count(false, &red) > 300 && count(false, &green) > 300, "top-1 and top-5 error on the right");
        assert!(count(true, &dark) > 500 && count(false, &dark) > 500, "axes and their text on both");
        let magenta = |p: &[u8]| p[0] > 200 && p[2] > 200 && p[1] < 60;
        let lower = |i: usize| i as u32 / WIDTH > TITLE_HEIGHT + (HEIGHT - TITLE_HEIGHT) * 5 / 8;
        let in_lr_panel = rgb.chunks(3).enumerate().filter(|(i, p)| magenta(p) && lower(*i)).count();
        assert!(count(true, &magenta) > 300 && in_lr_panel == count(true, &magenta), "the rate, left, bottom");
        assert_eq!(count(false, &magenta), 0, "no rate on the right");
        let title = rgb.chunks(3).take((WIDTH * TITLE_HEIGHT) as usize).filter(|p| dark(p)).count();
        assert!(title > 200, "the title with the run's name");
    }
}
