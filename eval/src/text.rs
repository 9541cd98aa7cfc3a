//! Text on the pictures (class names, distances, titles): DejaVu Sans embedded in the
//! binary (no system fonts), drawn with plotters onto an [`RgbImage`].

use std::sync::Once;

use anyhow::Result;
use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One piece of text: top-left corner, pixel height, colour.
pub struct Label {
    pub x: i32,
    pub y: i32,
    pub text: String,
    pub size: u32,
    pub color: Rgb<u8>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid; a failure would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws `labels` onto `img`.
pub fn draw(img: &mut RgbImage, labels: &[Label]) -> Result<()> {
    register_font();
    let (w, h) = img.dimensions();
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    for l in labels {
        let [r, g, b] = l.color.0;
        let style = ("sans-serif", l.size).into_font().color(&RGBColor(r, g, b));
        root.draw_text(&l.text, &style, (l.x, l.y)).map_err(|e| anyhow::anyhow!("drawing text: {e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("drawing text: {e}"))?;
    Ok(())
}

/// `text` cut to at most `width` pixels at `size` (an estimate: DejaVu Sans averages
/// about 0.55 em per character), with an ellipsis where cut.
pub fn fit(text: &str, width: u32, size: u32) -> String {
    let max = ((width as f64) / (0.58 * size as f64)).floor().max(1.0) as usize;
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// A frame `t` pixels thick just inside the rectangle (x, y, w, h).
pub fn frame(img: &mut RgbImage, (x, y, w, h): (u32, u32, u32, u32), t: u32, color: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            if yy < y + t || yy >= y + h - t || xx < x + t || xx >= x + w - t {
                img.put_pixel(xx, yy, color);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_and_long_names_are_cut() {
        let mut img = RgbImage::from_pixel(120, 30, Rgb([255, 255, 255]));
        draw(&mut img, &[Label { x: 2, y: 2, text: "tench".into(), size: 14, color: Rgb([200, 0, 0]) }]).unwrap();
        let red = img.pixels().filter(|p| p.0[0] > 150 && p.0[1] < 100).count();
        assert!(red > 10, "no text drawn ({red} red pixels)");
        // Only where the text is: the right half stays white.
        assert!(img.enumerate_pixels().filter(|(x, _, _)| *x > 80).all(|(_, _, p)| p.0 == [255, 255, 255]));
        assert_eq!(fit("tench", 100, 12), "tench");
        let cut = fit("goldfish, Carassius auratus", 60, 12);
        assert!(cut.ends_with('…') && cut.chars().count() < 12, "{cut}");
    }
}
