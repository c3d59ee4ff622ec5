//! `clip eval zeroshot` and `clip eval retrieval`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clip::heads::l2_normalize;
use clip::zeroshot::{
    argmax, confusion_matrix, mean_per_class_recall, retrieval_recall, top_k_accuracy, Templates,
    DEFAULT_SCALE,
};
use serde_json::json;

use crate::{embed_images, embed_texts, progress, CliError};
use clip::zeroshot::to_rows;

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
            .contains(&e.to_ascii_lowercase().as_str())
    })
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    Ok(entries)
}

pub fn zeroshot<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    data: &Path,
    templates: &Templates,
    as_json: bool,
    batch: usize,
) -> Result<(), CliError> {
    let classes: Vec<PathBuf> = list_dir(data)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(CliError::Usage(format!(
            "{} has no class sub-folders",
            data.display()
        )));
    }
    let labels: Vec<String> = classes
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().replace('_', " "))
                .unwrap_or_default()
        })
        .collect();
    let mut paths = Vec::new();
    let mut targets = Vec::new();
    for (c, dir) in classes.iter().enumerate() {
        for file in list_dir(dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
        {
            paths.push(file);
            targets.push(c);
        }
    }
    if paths.is_empty() {
        return Err(CliError::Usage(format!(
            "no images under {}",
            data.display()
        )));
    }
    let clip = crate::load_model::<B>(model, device)?;
    let bar = progress(labels.len(), "classes");
    let classifier =
        clip.zero_shot_classifier(&labels, templates, device, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let embeds = embed_images(&clip, &paths, batch, device)?;
    let probs = to_rows(classifier.probabilities(embeds, DEFAULT_SCALE));
    let predictions = argmax(&probs);
    let top1 = top_k_accuracy(&probs, &targets, 1);
    let top5 = top_k_accuracy(&probs, &targets, 5);
    let balanced = mean_per_class_recall(&predictions, &targets, labels.len());
    let confusion = confusion_matrix(&predictions, &targets, labels.len());
    if as_json {
        let report = json!({
            "images": paths.len(), "classes": labels, "templates": templates.name,
            "top1": top1, "top5": top5, "mean_per_class_recall": balanced, "confusion_matrix": confusion,
        });
        println!("{report}");
    } else {
        println!(
            "{} images, {} classes, templates: {}",
            paths.len(),
            labels.len(),
            templates.name
        );
        println!("top-1 accuracy          {:.2}%", top1 * 100.0);
        println!("top-5 accuracy          {:.2}%", top5 * 100.0);
        println!("mean per-class recall   {:.2}%", balanced * 100.0);
        println!("confusion (rows: true, columns: predicted)");
        for (label, row) in labels.iter().zip(&confusion) {
            println!(
                "  {:>20} {}",
                label.chars().take(20).collect::<String>(),
                row.iter().map(|v| format!("{v:>5}")).collect::<String>()
            );
        }
    }
    Ok(())
}

pub fn retrieval<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    data: &Path,
    as_json: bool,
    batch: usize,
) -> Result<(), CliError> {
    // the same captions files training reads: JSONL or CSV, image paths relative to the file
    let pairs = clip::data::captions::read_caption_file(data)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut images: Vec<PathBuf> = Vec::new();
    let mut captions = Vec::new();
    let mut text_image = Vec::new();
    for pair in pairs {
        let path = pair.image.path();
        let index = match images.iter().position(|p| *p == path) {
            Some(i) => i,
            None => {
                images.push(path);
                images.len() - 1
            }
        };
        captions.push(pair.caption);
        text_image.push(index);
    }
    if captions.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no pairs",
            data.display()
        )));
    }
    let clip = crate::load_model::<B>(model, device)?;
    let image_embeds = embed_images(&clip, &images, batch, device)?;
    let text_embeds = embed_texts(&clip, &captions, batch, device)?;
    let similarity =
        to_rows(l2_normalize(image_embeds).matmul(l2_normalize(text_embeds).transpose()));
    let recall = retrieval_recall(&similarity, &text_image, &[1, 5, 10]);
    if as_json {
        println!(
            "{}",
            json!({"images": images.len(), "captions": captions.len(), "recall": recall})
        );
    } else {
        println!("{} images, {} captions", images.len(), captions.len());
        for (j, k) in recall.k.iter().enumerate() {
            println!(
                "recall@{k:<2}  image→text {:>6.2}%   text→image {:>6.2}%",
                recall.image_to_text[j] * 100.0,
                recall.text_to_image[j] * 100.0
            );
        }
    }
    Ok(())
}
