//! Reading images from disk into 8-bit RGB, as PIL's `Image.open(path).convert("RGB")` does for the
//! common cases (gray and palette expanded, alpha dropped, first GIF frame). 16-bit images are scaled to
//! 8 bits (v·255/65535); PIL instead clips them at 255, which turns most 16-bit photos white.

use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {format:?} images are not supported")]
    Unsupported { path: PathBuf, format: ImageFormat },
    #[error("cannot decode image {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("image {path} is empty ({width}x{height})")]
    Empty {
        path: PathBuf,
        width: u32,
        height: u32,
    },
}

/// A JPEG ends with EOI (FF D9), possibly followed by padding or appended metadata.
fn has_end_marker(bytes: &[u8]) -> bool {
    bytes.windows(2).skip(2).any(|w| w == [0xFF, 0xD9])
}

/// Decodes an image file (format from its content, not its name) into 8-bit RGB.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage, ImageError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb(&bytes, path)
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
        e => ImageError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
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
/// first check of a dataset; a file with a valid header and broken pixel data passes it.
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

/// Decodes in-memory image bytes into 8-bit RGB; `path` only names the image in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageError> {
    let (reader, format) = guess(std::io::Cursor::new(bytes), path)?;
    if format == ImageFormat::Jpeg && !has_end_marker(bytes) {
        // libjpeg fills a cut-off scan with gray and only warns; PIL refuses such files.
        return Err(ImageError::Decode {
            path: path.to_path_buf(),
            message: "the JPEG data is truncated (no end-of-image marker)".into(),
        });
    }
    #[cfg(feature = "libjpeg-turbo")]
    if format == ImageFormat::Jpeg {
        // libjpeg-turbo with its defaults (ISLOW IDCT, fancy upsampling) is what PIL decodes with.
        // CMYK and other layouts TurboJPEG cannot turn into RGB fall through to `image`.
        if let Ok(decoded) = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGB) {
            let (w, h) = (decoded.width as u32, decoded.height as u32);
            let packed: Vec<u8> = decoded
                .pixels
                .chunks(decoded.pitch)
                .flat_map(|row| &row[..decoded.width * 3])
                .copied()
                .collect();
            if let Some(image) = RgbImage::from_raw(w, h, packed).filter(|_| w > 0 && h > 0) {
                return Ok(image);
            }
        }
    }
    let image = reader.decode().map_err(|e| decode_error(e, path, format))?;
    non_empty(image.width(), image.height(), path)?;
    Ok(image.to_rgb8())
}
