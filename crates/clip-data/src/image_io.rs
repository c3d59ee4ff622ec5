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

/// Decodes an image file (format from its content, not its name) into 8-bit RGB.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage, ImageError> {
    let path = path.as_ref();
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let reader = ImageReader::open(path)
        .map_err(read)?
        .with_guessed_format()
        .map_err(read)?;
    let format = reader.format().ok_or_else(|| ImageError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(_) => ImageError::Unsupported {
            path: path.to_path_buf(),
            format,
        },
        e => ImageError::Decode {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
            width: image.width(),
            height: image.height(),
        });
    }
    Ok(image.to_rgb8())
}
