//! `clip similarity`: the cosine matrix between texts and images.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clip::heads::l2_normalize;

use crate::CliError;
use clip::zeroshot::to_rows;

pub fn run<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    images: &[PathBuf],
    texts: &[String],
    plot: Option<&Path>,
) -> Result<(), CliError> {
    let clip = crate::load_model::<B>(model, device)?;
    let decoded = images
        .iter()
        .map(clip::data::load_rgb)
        .collect::<Result<Vec<_>, _>>()
        .map_err(clip::ClipError::from)?;
    let image_embeds = clip.embed_images(&decoded, device)?;
    let text_embeds = clip.embed_texts(texts, device)?;
    // [texts, images], as the notebook's figure draws it
    let cosine = to_rows(l2_normalize(text_embeds).matmul(l2_normalize(image_embeds).transpose()));
    let names: Vec<String> = images
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        })
        .collect();
    let width = texts
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    print!("{:width$}", "");
    for name in &names {
        print!("  {:>12}", name.chars().take(12).collect::<String>());
    }
    println!();
    for (text, row) in texts.iter().zip(&cosine) {
        print!("{:width$}", text.chars().take(width).collect::<String>());
        for v in row {
            print!("  {v:>12.4}");
        }
        println!();
    }
    if let Some(path) = plot {
        crate::heatmap::render(&decoded, texts, &cosine, path).map_err(CliError::Usage)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
