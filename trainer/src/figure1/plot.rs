//! The picture of Figure 1: training error against epochs, the chosen ReLU run solid
//! and the chosen tanh run dashed (as the paper draws them), the target error as a
//! grey line, and a mark where each reached it.

use std::path::Path;

use anyhow::{Context, Result};
use image::ImageEncoder;
use plotters::prelude::*;

use super::{Figure1Report, Point};

pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 600;

/// The figure as RGB pixels, `WIDTH` x `HEIGHT`.
pub fn render(r: &Figure1Report) -> Result<Vec<u8>> {
    crate::curves::register_font();
    let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing Figure 1: {e}");
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let relu = &r.runs[r.relu.run];
        let tanh = &r.runs[r.tanh.run];
        let x_max = relu.epochs_run.max(tanh.epochs_run).max(1e-3);
        let y_max = relu.curve.iter().chain(&tanh.curve).map(|p| p.error).fold(r.config.target, f64::max);
        let y_max = (y_max * 1.05).min(1.0);
        let caption = format!("Figure 1: training error, four-layer net, {}x{}", r.side, r.side);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epochs")
            .y_desc("training error rate")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| err(&e))?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new([(0.0, r.config.target), (x_max, r.config.target)], 2, 4, grey.into()))
            .map_err(|e| err(&e))?;
        let pts = |c: &[Point]| -> Vec<(f64, f64)> { c.iter().map(|p| (p.epoch, p.error)).collect() };
        let solid = BLUE.stroke_width(2);
        let dashed = RED.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts(&relu.curve), solid))
            .map_err(|e| err(&e))?
            .label(format!("ReLU (lr {})", relu.lr))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], solid));
        chart
            .draw_series(DashedLineSeries::new(pts(&tanh.curve), 8, 5, dashed))
            .map_err(|e| err(&e))?
            .label(format!("tanh (lr {})", tanh.lr))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y), (x + 13, y), (x + 21, y)], dashed));
        for (run, color) in [(relu, BLUE), (tanh, RED)] {
            if let Some(e) = run.epochs_to_target {
                chart
                    .draw_series(std::iter::once(Circle::new((e, r.config.target), 5, color.filled())))
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(buf)
}

/// Renders and writes the PNG atomically.
pub fn write_png(r: &Figure1Report, path: &Path) -> Result<()> {
    let rgb = render(r)?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
        .context("encoding the Figure 1 PNG")?;
    alexnet_shared::atomic_write(path, &png)?;
    Ok(())
}
