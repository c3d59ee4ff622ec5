//! The similarity figure of OpenAI's notebook: image thumbnails along the top, texts down the left,
//! one coloured cell per (text, image) cosine similarity with its value printed.

use std::path::Path;

use font8x8::UnicodeFonts;
use image::{imageops, Rgb, RgbImage};

const CELL: u32 = 96;
const SCALE: u32 = 2; // 8x8 glyphs drawn at 16x16
const PAD: u32 = 8;

fn draw_text(canvas: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, color: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(c)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i as u32 * 8 + col) * scale + dx;
                            let py = y + row as u32 * scale + dy;
                            if px < canvas.width() && py < canvas.height() {
                                canvas.put_pixel(px, py, color);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Viridis-like ramp over [lo, hi].
fn colour(v: f32, lo: f32, hi: f32) -> Rgb<u8> {
    const RAMP: [[f32; 3]; 5] = [
        [68., 1., 84.],
        [59., 82., 139.],
        [33., 145., 140.],
        [94., 201., 98.],
        [253., 231., 37.],
    ];
    let t = if hi > lo {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.5
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f32;
    let c: Vec<u8> = (0..3)
        .map(|k| (RAMP[i][k] * (1.0 - f) + RAMP[i + 1][k] * f).round() as u8)
        .collect();
    Rgb([c[0], c[1], c[2]])
}

fn truncate(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        text.to_string()
    } else {
        chars[..max - 1].iter().collect::<String>() + "~"
    }
}

/// `similarity[t][i]`: text t against image i.
pub fn render(
    images: &[RgbImage],
    texts: &[String],
    similarity: &[Vec<f32>],
    path: &Path,
) -> Result<(), String> {
    let label_chars = texts
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    let label_w = label_chars as u32 * 8 * SCALE + 2 * PAD;
    let top = CELL + 2 * PAD;
    let width = label_w + images.len() as u32 * CELL + PAD;
    let height = top + texts.len() as u32 * CELL + 3 * PAD + 8 * SCALE;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (i, img) in images.iter().enumerate() {
        let (w, h) = img.dimensions();
        let s = (CELL - 4) as f32 / w.max(h) as f32;
        let thumb = imageops::resize(
            img,
            ((w as f32 * s) as u32).max(1),
            ((h as f32 * s) as u32).max(1),
            imageops::FilterType::Triangle,
        );
        let x = label_w + i as u32 * CELL + (CELL - thumb.width()) / 2;
        let y = PAD + (CELL - thumb.height()) / 2;
        imageops::overlay(&mut canvas, &thumb, x as i64, y as i64);
    }
    let (lo, hi) = similarity
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    for (t, text) in texts.iter().enumerate() {
        let y = top + t as u32 * CELL;
        draw_text(
            &mut canvas,
            &truncate(text, 40),
            PAD,
            y + (CELL - 8 * SCALE) / 2,
            SCALE,
            Rgb([0, 0, 0]),
        );
        for (i, &v) in similarity[t].iter().enumerate() {
            let x = label_w + i as u32 * CELL;
            let c = colour(v, lo, hi);
            for dy in 1..CELL - 1 {
                for dx in 1..CELL - 1 {
                    canvas.put_pixel(x + dx, y + dy, c);
                }
            }
            let ink = if (c[0] as u32 + c[1] as u32 + c[2] as u32) > 380 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            };
            let value = format!("{v:.2}");
            let text_w = value.len() as u32 * 8 * SCALE;
            draw_text(
                &mut canvas,
                &value,
                x + (CELL - text_w.min(CELL)) / 2,
                y + (CELL - 8 * SCALE) / 2,
                SCALE,
                ink,
            );
        }
    }
    draw_text(
        &mut canvas,
        "cosine similarity between text and image features",
        PAD,
        height - PAD - 8 * SCALE / 2,
        1,
        Rgb([60, 60, 60]),
    );
    canvas
        .save(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
