//! `eval kernels`: the conv1 kernels as a picture (paper figure 3, "96 convolutional
//! kernels of size 11x11x3 learned by the first convolutional layer"). Each kernel is
//! scaled to 0..255 by its own minimum and maximum over its three channels (weights in
//! RGB order, as the input); the paper model's two towers are drawn as two blocks, the
//! first tower's kernels above the second's, as in the figure, each labelled, under a
//! title naming the checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use image::{Rgb, RgbImage};

use trainer::checkpoint::{Checkpoint, Overrides};
use trainer::model::Arch;

#[derive(Debug, Clone)]
pub struct KernelsConfig {
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    /// Pixels per weight.
    pub scale: u32,
    /// Kernels per row (default: 16 for the paper model, as figure 3; the square root
    /// otherwise).
    pub columns: Option<usize>,
}

/// conv1 weights of a checkpoint: ([K, 3, kh, kw] as f32, the shape, towers).
pub fn conv1(path: &Path) -> Result<(Vec<f32>, [usize; 4], usize)> {
    let shown = path.display();
    let ckpt = Checkpoint::open(path)?;
    let arch = match ckpt.meta() {
        Some(m) => m.model.arch,
        None => ckpt.infer_config(&Overrides { crop: Some(227), ..Default::default() })?.arch,
    };
    let (values, s) = ckpt.tensor_f32("features.0.weight")?;
    ensure!(s.len() == 4 && s[1] == 3, "{shown}: features.0.weight is {s:?}, expected [K, 3, h, w]");
    let towers = if arch == Arch::Paper && s[0] % 2 == 0 { 2 } else { 1 };
    Ok((values, [s[0], s[1], s[2], s[3]], towers))
}

/// Geometry of the grid: (columns, rows per tower, cell side in pixels, gap, tower gap).
pub struct Layout {
    pub columns: usize,
    pub rows_per_tower: usize,
    pub towers: usize,
    pub cell_w: u32,
    pub cell_h: u32,
    pub pad: u32,
    pub tower_gap: u32,
}

impl Layout {
    pub fn new(shape: [usize; 4], towers: usize, scale: u32, columns: Option<usize>) -> Self {
        let per_tower = shape[0] / towers;
        let columns = columns
            .unwrap_or(if towers == 2 { 16 } else { (per_tower as f64).sqrt().ceil() as usize })
            .clamp(1, per_tower.max(1));
        let rows_per_tower = per_tower.div_ceil(columns);
        Self {
            columns,
            rows_per_tower,
            towers,
            cell_w: shape[3] as u32 * scale,
            cell_h: shape[2] as u32 * scale,
            pad: scale.max(1),
            tower_gap: 3 * scale.max(1),
        }
    }

    pub fn size(&self) -> (u32, u32) {
        let w = self.pad + self.columns as u32 * (self.cell_w + self.pad);
        let rows = (self.rows_per_tower * self.towers) as u32;
        let h = self.pad + rows * (self.cell_h + self.pad) + (self.towers as u32 - 1) * self.tower_gap;
        (w, h)
    }

    /// Top-left pixel of kernel `k`'s cell.
    pub fn origin(&self, k: usize, kernels: usize) -> (u32, u32) {
        let per_tower = kernels / self.towers;
        let (tower, i) = (k / per_tower, k % per_tower);
        let (row, col) = (i / self.columns, i % self.columns);
        let x = self.pad + col as u32 * (self.cell_w + self.pad);
        let y = self.pad
            + (tower * self.rows_per_tower + row) as u32 * (self.cell_h + self.pad)
            + tower as u32 * self.tower_gap;
        (x, y)
    }
}

/// The picture of kernels `w` ([K, 3, kh, kw], row-major), on a black background.
pub fn kernel_grid(w: &[f32], shape: [usize; 4], towers: usize, scale: u32, columns: Option<usize>) -> RgbImage {
    let [k, c, kh, kw] = shape;
    let layout = Layout::new(shape, towers, scale, columns);
    let (width, height) = layout.size();
    let mut img = RgbImage::new(width, height);
    let per = c * kh * kw;
    for i in 0..k {
        let kernel = &w[i * per..(i + 1) * per];
        let (lo, hi) = kernel.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let range = if hi > lo { hi - lo } else { 1.0 };
        let (x0, y0) = layout.origin(i, k);
        for y in 0..kh {
            for x in 0..kw {
                let px = |ch: usize| (255.0 * (kernel[(ch * kh + y) * kw + x] - lo) / range).round() as u8;
                let rgb = Rgb([px(0), px(1), px(2)]);
                for dy in 0..scale {
                    for dx in 0..scale {
                        img.put_pixel(x0 + x as u32 * scale + dx, y0 + y as u32 * scale + dy, rgb);
                    }
                }
            }
        }
    }
    img
}

/// The band above the grid (its title) and, with two towers, the column left of it
/// (each tower's name): [`annotate`]'s margins.
pub const TITLE_BAND: u32 = 28;
pub const TOWER_COLUMN: u32 = 64;

impl Layout {
    /// (left, top) margins of the annotated picture.
    pub fn margins(&self) -> (u32, u32) {
        (if self.towers == 2 { TOWER_COLUMN } else { 0 }, TITLE_BAND)
    }
}

/// The grid with a title on top and, for the paper's two towers, each block labelled
/// with its tower (the paper's GPU 1 above, GPU 2 below).
pub fn annotate(grid: &RgbImage, layout: &Layout, kernels: usize, title: &str) -> Result<RgbImage> {
    use crate::text::{fit, Label};
    let (left, top) = layout.margins();
    let mut img = RgbImage::new(grid.width() + left, grid.height() + top);
    image::imageops::replace(&mut img, grid, left as i64, top as i64);
    let white = Rgb([255, 255, 255]);
    let mut labels =
        vec![Label { x: 4, y: 7, text: fit(title, img.width().saturating_sub(8), 14), size: 14, color: white }];
    if layout.towers == 2 {
        let per = kernels / 2;
        for t in 0..2 {
            let (_, y0) = layout.origin(t * per, kernels);
            let block = layout.rows_per_tower as u32 * (layout.cell_h + layout.pad);
            let y = (top + y0 + block / 2) as i32 - 14;
            labels.push(Label { x: 4, y, text: format!("tower {}", t + 1), size: 12, color: white });
            labels.push(Label { x: 4, y: y + 15, text: format!("(GPU {})", t + 1), size: 12, color: white });
        }
    }
    crate::text::draw(&mut img, &labels)?;
    Ok(img)
}

/// Writes the picture; returns its size and the number of kernels.
pub fn run(cfg: &KernelsConfig) -> Result<(u32, u32, usize)> {
    ensure!((1..=64).contains(&cfg.scale), "--scale must be in 1..=64");
    let (w, shape, towers) = conv1(&cfg.checkpoint)?;
    let grid = kernel_grid(&w, shape, towers, cfg.scale, cfg.columns);
    let layout = Layout::new(shape, towers, cfg.scale, cfg.columns);
    let name = cfg
        .checkpoint
        .file_name()
        .map_or_else(|| cfg.checkpoint.display().to_string(), |n| n.to_string_lossy().into_owned());
    let title = format!("conv1 of {name}: {} kernels, {}x{}x3", shape[0], shape[2], shape[3]);
    let img = annotate(&grid, &layout, shape[0], &title)?;
    write_png(&img, &cfg.out)?;
    Ok((img.width(), img.height(), shape[0]))
}

/// Writes `img` as a PNG to `out` (atomically for a regular file; through symlinks;
/// in place into a FIFO: see [`alexnet_shared::OutputFile`]).
pub fn write_png(img: &RgbImage, out: &Path) -> Result<()> {
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).with_context(|| format!("encoding {}", out.display()))?;
    alexnet_shared::atomic_write(out, png.get_ref()).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kernel_is_scaled_by_its_own_range_and_towers_stack() {
        // 4 kernels of 3x2x3 (h=2, w=3), 2 towers: kernel i has values i*100 + j.
        let shape = [4, 3, 2, 3];
        let w: Vec<f32> = (0..4).flat_map(|i| (0..18).map(move |j| (i * 100 + j) as f32)).collect();
        let img = kernel_grid(&w, shape, 2, 2, None);
        // 2 per tower -> 2 columns, 1 row each; cells 6x4 px, pad 2, tower gap 6.
        assert_eq!(img.dimensions(), (2 + 2 * (6 + 2), 2 + 2 * (4 + 2) + 6));
        // Kernel 0, weight (y=0, x=0): R = value 0 -> 0, G = value 6 -> 255*6/17, B = 12 -> 255*12/17.
        assert_eq!(img.get_pixel(2, 2).0, [0, 90, 180]);
        // Kernel 3 (tower 1, column 1), weight (y=1, x=2), upper-left pixel of its 2x2 block:
        // R index 5 -> 75, G 11 -> 165, B 17 -> 255.
        let (x, y) = (2 + 8 + 2 * 2, 2 + 6 + 6 + 2);
        assert_eq!(img.get_pixel(x, y).0, [75, 165, 255]);
        assert_eq!(img.get_pixel(x + 1, y + 1).0, [75, 165, 255]);
        // The gap between kernels stays black.
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
    }
}
