//! Pillow's `Image.resize` convolution resampling, reproduced operation for operation: coefficients in
//! f64 with the support widened by the downscale factor, normalized, then rounded to 22-bit fixed point;
//! a horizontal pass into an 8-bit intermediate image, then a vertical pass. CLIP models were trained on
//! images resized this way (torchvision hands PIL images to Pillow), so matching it to the bit matters.
//! (`fast_image_resize` uses the same kernels but runs the vertical pass first for 8-bit images, which
//! rounds differently by up to several levels.)

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Filter {
    /// Keys' cubic with a = −0.5 (Pillow's BICUBIC), support 2.
    Bicubic,
    /// Triangle (Pillow's BILINEAR), support 1.
    Bilinear,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Bilinear => (1.0 - x).max(0.0),
        }
    }
}

/// For each output index: the first input index, and fixed-point weights of the inputs it reads.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero; both values are ≥ −0.5 + 0.5 here or clamped below
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate().take(count) {
            *w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            total += *w;
        }
        for x in 0..ksize {
            let w = if x < count && total != 0.0 {
                k[x] / total
            } else if x < count {
                k[x]
            } else {
                0.0
            };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coefficients {
        bounds,
        weights,
        ksize,
    }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like `PIL.Image.resize((width, height), BICUBIC | BILINEAR)` on an RGB image.
pub(crate) fn pil_resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    let horiz = coefficients(in_w, out_w, filter);
    let vert = coefficients(in_h, out_h, filter);
    let src = image.as_raw();

    // Horizontal pass over just the rows the vertical pass will read.
    let (first_row, last_row) = if need_vertical {
        let (start, _) = vert.bounds[0];
        let (last_start, last_count) = vert.bounds[out_h - 1];
        (start, last_start + last_count)
    } else {
        (0, in_h)
    };
    let (temp, temp_w, row_offset) = if need_horizontal {
        let rows = last_row - first_row;
        let mut temp = vec![0u8; out_w * rows * 3];
        for y in 0..rows {
            let line = &src[(y + first_row) * in_w * 3..(y + first_row + 1) * in_w * 3];
            for (xx, &(xmin, count)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + count];
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &line[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += p[c] as i64 * w as i64;
                    }
                }
                let o = (y * out_w + xx) * 3;
                for c in 0..3 {
                    temp[o + c] = clip8(ss[c]);
                }
            }
        }
        (temp, out_w, first_row)
    } else {
        (src.clone(), in_w, 0)
    };
    if !need_vertical {
        return RgbImage::from_raw(width, height, temp).unwrap_or_default();
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    for (yy, &(ymin, count)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + count];
        for xx in 0..temp_w {
            let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
            for (y, &w) in k.iter().enumerate() {
                let o = ((ymin + y - row_offset) * temp_w + xx) * 3;
                for c in 0..3 {
                    ss[c] += temp[o + c] as i64 * w as i64;
                }
            }
            let o = (yy * out_w + xx) * 3;
            for c in 0..3 {
                out[o + c] = clip8(ss[c]);
            }
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_default()
}
