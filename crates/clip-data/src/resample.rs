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

/// For each output index: the first input index and the normalized f64 weights of the inputs it
/// reads (Pillow's `precompute_coeffs`, and PyTorch's antialiased interpolation, which follows it).
fn float_coefficients(in_size: usize, out_size: usize, filter: Filter) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; both values are ≥ −0.5 + 0.5 here or clamped below
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut k: Vec<f64> = (0..xmax.saturating_sub(xmin))
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = k.iter().sum();
            if total != 0.0 {
                k.iter_mut().for_each(|w| *w /= total);
            }
            (xmin, k)
        })
        .collect()
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let ksize = (filter.support() * scale.max(1.0)).ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    for (xx, (xmin, k)) in float_coefficients(in_size, out_size, filter)
        .into_iter()
        .enumerate()
    {
        for (x, w) in k.iter().enumerate() {
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if *w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, k.len()));
    }
    Coefficients {
        bounds,
        weights,
        ksize,
    }
}

/// The four taps of PyTorch's bicubic interpolation (A = −0.75, `align_corners=False`, no
/// antialiasing) for each of `out` positions over `len` inputs: (first input index, may be −1 or
/// past the end and is clamped by the caller; weights).
fn torch_cubic_taps(len: usize, out: usize) -> Vec<(isize, [f64; 4])> {
    const A: f64 = -0.75;
    let near = |t: f64| ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let far = |t: f64| ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A;
    let scale = len as f64 / out as f64;
    (0..out)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let first = src.floor();
            let t = src - first;
            (
                first as isize - 1,
                [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)],
            )
        })
        .collect()
}

/// Resizes `planes` stacked planes of `from = (height, width)` f32 values (`[planes, height, width]`,
/// row-major) to `to` as PyTorch's `F.interpolate(x, size, mode="bicubic", align_corners=False)`
/// without antialiasing does (cubic convolution with A = −0.75, edge indices clamped), computed in f64.
/// This is how transformers' `interpolate_pos_encoding` resizes SigLIP's position grid.
pub fn interpolate_planes_bicubic(
    values: &[f32],
    planes: usize,
    from: (usize, usize),
    to: (usize, usize),
) -> Vec<f32> {
    let ((in_h, in_w), (out_h, out_w)) = (from, to);
    let (horiz, vert) = (torch_cubic_taps(in_w, out_w), torch_cubic_taps(in_h, out_h));
    let clamp = |i: isize, len: usize| i.clamp(0, len as isize - 1) as usize;
    let mut out = Vec::with_capacity(planes * out_h * out_w);
    for plane in values.chunks_exact(in_h * in_w).take(planes) {
        for (y0, wy) in &vert {
            for (x0, wx) in &horiz {
                let mut sum = 0f64;
                for (dy, wy) in wy.iter().enumerate() {
                    let row = clamp(y0 + dy as isize, in_h) * in_w;
                    for (dx, wx) in wx.iter().enumerate() {
                        sum += wy * wx * plane[row + clamp(x0 + dx as isize, in_w)] as f64;
                    }
                }
                out.push(sum as f32);
            }
        }
    }
    out
}

/// Resizes `planes` stacked planes of `from = (height, width)` f32 values (`[planes, height, width]`,
/// row-major) to `to = (height, width)` with Keys' cubic (a = −0.5), the support widened when
/// shrinking: PyTorch's `F.interpolate(x, size, mode="bicubic", antialias=True, align_corners=False)`
/// on a float tensor, computed in f64 (PyTorch accumulates in f32: they agree to f32 rounding). This is
/// how open_clip's `resize_pos_embed` resizes a ViT's position grid.
pub fn resize_planes_bicubic(
    values: &[f32],
    planes: usize,
    from: (usize, usize),
    to: (usize, usize),
) -> Vec<f32> {
    let ((in_h, in_w), (out_h, out_w)) = (from, to);
    let horiz = float_coefficients(in_w, out_w, Filter::Bicubic);
    let vert = float_coefficients(in_h, out_h, Filter::Bicubic);
    let mut out = Vec::with_capacity(planes * out_h * out_w);
    let mut rows = vec![0f64; in_h * out_w];
    for plane in values.chunks_exact(in_h * in_w).take(planes) {
        // along the width, then the height
        for y in 0..in_h {
            let line = &plane[y * in_w..(y + 1) * in_w];
            for (xx, (xmin, k)) in horiz.iter().enumerate() {
                rows[y * out_w + xx] = k
                    .iter()
                    .enumerate()
                    .map(|(x, w)| line[xmin + x] as f64 * w)
                    .sum();
            }
        }
        for (ymin, k) in &vert {
            for xx in 0..out_w {
                let v: f64 = k
                    .iter()
                    .enumerate()
                    .map(|(y, w)| rows[(ymin + y) * out_w + xx] * w)
                    .sum();
                out.push(v as f32);
            }
        }
    }
    out
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
