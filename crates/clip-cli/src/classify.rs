//! `clip classify`: zero-shot labels for images. Unreadable images are reported in place and make the
//! exit status non-zero; the others are still classified.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use clip::zeroshot::{Templates, ZeroShotClassifier};
use clip::{ClipError, Pretrained};
use serde_json::{json, Value};

use crate::{progress, CliError};

pub struct Options {
    pub labels: Vec<String>,
    pub templates: Templates,
    pub top_k: usize,
    pub json: bool,
    pub scale: String,
    pub classifier: Option<PathBuf>,
    pub batch_size: usize,
}

fn classifier<B: Backend>(
    clip: &Pretrained<B>,
    o: &Options,
    device: &B::Device,
) -> Result<ZeroShotClassifier<B>, CliError> {
    let fingerprint = clip.fingerprint();
    if let Some(path) = o.classifier.as_ref().filter(|p| p.is_file()) {
        let loaded = ZeroShotClassifier::<B>::load(path, device).map_err(ClipError::from)?;
        match loaded.check_built_for(&fingerprint, &o.labels, &o.templates) {
            Ok(()) => return Ok(loaded),
            Err(why) => eprintln!("note: rebuilding {}: {why}", path.display()),
        }
    }
    let bar = progress(o.labels.len(), "classes");
    let built =
        clip.zero_shot_classifier(&o.labels, &o.templates, device, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    if let Some(path) = &o.classifier {
        built.save(path).map_err(ClipError::from)?;
    }
    Ok(built)
}

pub fn run<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    images: &[PathBuf],
    o: &Options,
) -> Result<(), CliError> {
    let clip = crate::load_model::<B>(model, device)?;
    let scale = match o.scale.as_str() {
        "model" => f64::from(clip.model.logit_scale.scale().into_scalar().elem::<f32>()),
        s => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--scale {s:?} is neither a positive number nor \"model\""
                ))
            })?,
    };
    let classifier = classifier(&clip, o, device)?;
    // SigLIP scores each label on its own with its learned scale and bias; CLIP takes a softmax
    let scoring = clip.model.zero_shot_scoring(scale);
    if let clip::zeroshot::Scoring::Sigmoid { scale, bias } = scoring {
        eprintln!(
            "note: a SigLIP model: each label is scored on its own, sigmoid(scale · cos + bias) with \
             its scale {scale:.2} and bias {bias:.2}; the scores need not sum to 100 %"
        );
    }

    // decoded on a pool of threads ahead of the model, batch by batch; a file that cannot be read is
    // reported in its place and does not stop the others
    let mut results: Vec<Result<Vec<(usize, f32)>, String>> =
        (0..images.len()).map(|_| Ok(Vec::new())).collect();
    let options = clip::data::prefetch::PrefetchOptions {
        batch_size: o.batch_size,
        ..Default::default()
    };
    let bar = progress(images.len(), "images");
    for batch in clip::data::prefetch::prefetch(images.to_vec(), clip.preprocess.clone(), options) {
        for (index, error) in &batch.failed {
            results[*index] = Err(error.to_string());
        }
        if let Some(embeds) = clip.embed_prepared(&batch, device) {
            for (index, ranked) in batch
                .decoded
                .iter()
                .zip(classifier.ranked_by(embeds, scoring))
            {
                results[*index] = Ok(ranked);
            }
        }
        bar.inc((batch.len() + batch.failed.len()) as u64);
    }
    bar.finish_and_clear();

    let failures = results.iter().filter(|r| r.is_err()).count();
    if o.json {
        let out: Vec<Value> = images
            .iter()
            .zip(&results)
            .map(|(path, r)| match r {
                Ok(ranked) => json!({
                    "image": path,
                    "scoring": scoring.name(),
                    "predictions": ranked.iter().map(|(i, p)| json!({"label": classifier.labels[*i], "prob": p})).collect::<Vec<_>>(),
                }),
                Err(e) => json!({"image": path, "error": e}),
            })
            .collect();
        println!("{}", Value::Array(out));
    } else {
        for (path, r) in images.iter().zip(&results) {
            println!("{}", path.display());
            match r {
                Ok(ranked) => {
                    for (i, p) in ranked.iter().take(o.top_k.max(1)) {
                        println!("  {:>6.2}%  {}", p * 100.0, classifier.labels[*i]);
                    }
                }
                Err(e) => println!("  error: {e}"),
            }
        }
    }
    if failures > 0 {
        return Err(CliError::Usage(format!(
            "{failures} of {} images could not be read",
            images.len()
        )));
    }
    Ok(())
}
