//! Reading images from disk into 8-bit RGB, as PIL's `Image.open(path).convert("RGB")` does for the
//! common cases (gray and palette expanded, alpha dropped, first GIF frame). 16-bit images are scaled to
//! 8 bits (v·255/65535); PIL instead clips them at 255, which turns most 16-bit photos white.

use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// What one image may cost to decode. Both are checked before the pixels are: the pixel count from
/// the header, the file's size from the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most pixels (width × height) an image may have. Default: 178,956,970, PIL's own refusal
    /// (`Image.MAX_IMAGE_PIXELS` × 2, where its decompression-bomb warning becomes an error), about
    /// 13,377 × 13,377: whatever PIL opens, this opens.
    pub max_pixels: u64,
    /// Most bytes a decoder may allocate, and the largest file read. Default: 8 bytes for each of
    /// `max_pixels` (a 16-bit RGBA image at the pixel limit), 1.43 GB.
    pub max_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        let max_pixels = 2 * 89_478_485;
        Self {
            max_pixels,
            max_bytes: 8 * max_pixels,
        }
    }
}

/// Why an image could not be turned into RGB pixels. Every variant names the image by `path` (for
/// in-memory bytes, the name the caller passed).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file (or the in-memory reader) could not be read.
    #[error("cannot read image {path}: {source}")]
    Read {
        /// The image.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content matches none of the formats compiled in (PNG, JPEG, WebP, GIF, BMP, TIFF).
    #[error("{path} is not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)")]
    UnknownFormat {
        /// The image.
        path: PathBuf,
    },
    /// A recognised format, in a variant the decoder does not support.
    #[error("{path}: {format:?} images are not supported")]
    Unsupported {
        /// The image.
        path: PathBuf,
        /// The format recognised from the content.
        format: ImageFormat,
    },
    /// The data is corrupt or cut short (a JPEG without its end-of-image marker lands here, as in PIL).
    #[error("cannot decode image {path}: {message}")]
    Decode {
        /// The image.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The header declares more pixels than [`ImageLimits::max_pixels`], or the file is larger than
    /// [`ImageLimits::max_bytes`]: refused before decoding.
    #[error("image {path} is too large: {what}")]
    TooLarge {
        /// The image.
        path: PathBuf,
        /// Its size against the limit, e.g. "16384x16384 is 268435456 pixels, more than 178956970".
        what: String,
    },
    /// The header declares a zero width or height.
    #[error("image {path} is empty ({width}x{height})")]
    Empty {
        /// The image.
        path: PathBuf,
        /// Declared width in pixels.
        width: u32,
        /// Declared height in pixels.
        height: u32,
    },
}

/// A JPEG ends with EOI (FF D9), possibly followed by padding or appended metadata.
fn has_end_marker(bytes: &[u8]) -> bool {
    bytes.windows(2).skip(2).any(|w| w == [0xFF, 0xD9])
}

/// Decodes an image file (format from its content, not its name) into 8-bit RGB, within the default
/// [`ImageLimits`].
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage, ImageError> {
    load_rgb_within(path, &ImageLimits::default())
}

/// [`load_rgb`] within `limits`: a file larger than `max_bytes` is refused before it is read.
pub fn load_rgb_within(
    path: impl AsRef<Path>,
    limits: &ImageLimits,
) -> Result<RgbImage, ImageError> {
    let path = path.as_ref();
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > limits.max_bytes {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            what: format!("the file is {size} bytes, more than {}", limits.max_bytes),
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    decode_rgb_within(&bytes, path, limits)
}

/// A reader for `bytes` with its format guessed from the content.
fn guess<R: std::io::BufRead + std::io::Seek>(
    bytes: R,
    path: &Path,
) -> Result<(ImageReader<R>, ImageFormat), ImageError> {
    let reader = ImageReader::new(bytes)
        .with_guessed_format()
        .map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let format = reader.format().ok_or_else(|| ImageError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    Ok((reader, format))
}

fn decode_error(e: image::ImageError, path: &Path, format: ImageFormat) -> ImageError {
    match e {
        image::ImageError::Unsupported(_) => ImageError::Unsupported {
            path: path.to_path_buf(),
            format,
        },
        image::ImageError::Limits(e) => ImageError::TooLarge {
            path: path.to_path_buf(),
            what: e.to_string(),
        },
        e => ImageError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
}

/// [`ImageError::TooLarge`] when `width × height` is over `max_pixels`.
fn within_pixels(width: u32, height: u32, max_pixels: u64, path: &Path) -> Result<(), ImageError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            what: format!("{width}x{height} is {pixels} pixels, more than {max_pixels}"),
        });
    }
    Ok(())
}

fn non_empty(width: u32, height: u32, path: &Path) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    Ok(())
}

/// Reads only an image's header: its format and dimensions, without decoding the pixels. A cheap
/// first check of a dataset; a file with a valid header and broken pixel data passes it. Returns
/// `(width, height)` in pixels, both non-zero; `path` only names the image in errors.
pub fn probe_image(
    bytes: impl std::io::BufRead + std::io::Seek,
    path: &Path,
) -> Result<(u32, u32), ImageError> {
    let (reader, format) = guess(bytes, path)?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| decode_error(e, path, format))?;
    non_empty(width, height, path)?;
    Ok((width, height))
}

/// Decodes in-memory image bytes (format from the content) into 8-bit RGB within the default
/// [`ImageLimits`]; `path` only names the image in errors. With feature `exact-jpeg` (the default) or
/// `system-libjpeg-turbo`, JPEGs go through libjpeg and come out bit-identical to PIL's (CMYK/YCCK
/// ones fall back to `image`).
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageError> {
    decode_rgb_within(bytes, path, &ImageLimits::default())
}

/// [`decode_rgb`] within `limits`: the header's dimensions are checked before any pixel is decoded,
/// and no decoder may allocate more than `max_bytes`.
pub fn decode_rgb_within(
    bytes: &[u8],
    path: &Path,
    limits: &ImageLimits,
) -> Result<RgbImage, ImageError> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            what: format!("{} bytes, more than {}", bytes.len(), limits.max_bytes),
        });
    }
    let (mut reader, format) = guess(std::io::Cursor::new(bytes), path)?;
    if format == ImageFormat::Jpeg && !has_end_marker(bytes) {
        // libjpeg fills a cut-off scan with gray and only warns; PIL refuses such files.
        return Err(ImageError::Decode {
            path: path.to_path_buf(),
            message: "the JPEG data is truncated (no end-of-image marker)".into(),
        });
    }
    if format == ImageFormat::Jpeg {
        // libjpeg with its defaults (ISLOW IDCT, fancy upsampling) is what PIL decodes with; it
        // reads the header itself (it parses more JPEGs than `image` does) and the size is checked
        // before any pixel is decoded. CMYK and other layouts libjpeg cannot turn into RGB fall
        // through to `image`.
        if let Some(image) = decode_jpeg_exact(bytes, path, limits.max_pixels)? {
            return Ok(image);
        }
    }
    // the header's dimensions, before any pixel is decoded
    let (width, height) = probe_image(std::io::Cursor::new(bytes), path)?;
    within_pixels(width, height, limits.max_pixels, path)?;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_alloc = Some(limits.max_bytes);
    reader.limits(decoder_limits);
    // the decoders size their output from the header just checked
    let image = reader.decode().map_err(|e| decode_error(e, path, format))?;
    non_empty(image.width(), image.height(), path)?;
    Ok(image.to_rgb8())
}

/// Decodes a JPEG with the system's libjpeg-turbo. `None`: anything TurboJPEG fails on, left to
/// `image`: CMYK/YCCK layouts, corrupt files, and also files libjpeg only warns about (extraneous
/// bytes before a marker, say), because TurboJPEG reports a warning as a failure without saying
/// which it was. Those files may then be a few levels from PIL; `exact-jpeg` has no such gap.
#[cfg(feature = "system-libjpeg-turbo")]
fn decode_jpeg_exact(
    bytes: &[u8],
    path: &Path,
    max_pixels: u64,
) -> Result<Option<RgbImage>, ImageError> {
    if let Ok(header) = turbojpeg::read_header(bytes) {
        within_pixels(header.width as u32, header.height as u32, max_pixels, path)?;
    }
    let decoded = match turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGB) {
        Ok(decoded) => decoded,
        Err(_) => return Ok(None),
    };
    let (w, h) = (decoded.width as u32, decoded.height as u32);
    non_empty(w, h, path)?;
    let packed: Vec<u8> = decoded
        .pixels
        .chunks(decoded.pitch)
        .flat_map(|row| &row[..decoded.width * 3])
        .copied()
        .collect();
    Ok(RgbImage::from_raw(w, h, packed))
}

/// Decodes a JPEG with mozjpeg's libjpeg (the libjpeg-turbo decoder, built from C without SIMD; its
/// integer IDCT and upsampling give the same bytes as the SIMD paths PIL uses). `None`: a colour
/// space libjpeg cannot convert to RGB (CMYK, YCCK), left to `image`.
#[cfg(all(feature = "exact-jpeg", not(feature = "system-libjpeg-turbo")))]
fn decode_jpeg_exact(
    bytes: &[u8],
    path: &Path,
    max_pixels: u64,
) -> Result<Option<RgbImage>, ImageError> {
    use mozjpeg::ColorSpace;

    /// What libjpeg made of the data.
    enum Decoded {
        Pixels(usize, usize, Vec<u8>),
        /// CMYK or YCCK: left to `image`.
        NotRgb,
        /// The header's size, over the limit: nothing decoded.
        TooLarge(u32, u32),
    }
    // mozjpeg's error handler unwinds out of the C code with the libjpeg message; catch it here so
    // a corrupt file is an `ImageError`, never a panic in the caller.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Decoded> {
        let decompress = mozjpeg::Decompress::new_mem(bytes)?;
        // the header is read: an image over the limit is refused before its pixels are decoded
        let (width, height) = (decompress.width() as u32, decompress.height() as u32);
        if u64::from(width) * u64::from(height) > max_pixels {
            return Ok(Decoded::TooLarge(width, height));
        }
        if matches!(
            decompress.color_space(),
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
        ) {
            return Ok(Decoded::NotRgb);
        }
        let mut started = decompress.rgb()?;
        let (width, height) = (started.width(), started.height());
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(Decoded::Pixels(width, height, pixels))
    });
    let message = match decoded {
        Ok(Ok(Decoded::Pixels(width, height, pixels))) => {
            let (w, h) = (width as u32, height as u32);
            non_empty(w, h, path)?;
            return Ok(RgbImage::from_raw(w, h, pixels));
        }
        Ok(Ok(Decoded::NotRgb)) => return Ok(None),
        Ok(Ok(Decoded::TooLarge(w, h))) => {
            within_pixels(w, h, max_pixels, path)?;
            return Ok(None);
        }
        Ok(Err(e)) => e.to_string(),
        Err(payload) => match (
            payload.downcast_ref::<String>(),
            payload.downcast_ref::<&str>(),
        ) {
            (Some(m), _) => m.clone(),
            (None, Some(m)) => m.to_string(),
            (None, None) => "libjpeg failed".to_string(),
        },
    };
    Err(ImageError::Decode {
        path: path.to_path_buf(),
        message,
    })
}

/// No exact JPEG decoder compiled in: every JPEG goes to the pure-Rust `image` decoder.
#[cfg(not(any(feature = "exact-jpeg", feature = "system-libjpeg-turbo")))]
fn decode_jpeg_exact(
    _bytes: &[u8],
    _path: &Path,
    _max_pixels: u64,
) -> Result<Option<RgbImage>, ImageError> {
    Ok(None)
}
