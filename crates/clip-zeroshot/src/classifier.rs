//! The zero-shot classifier: for each class, every filled template is encoded and L2-normalized, the
//! embeddings are averaged and the mean renormalized; the class vectors are the columns of a
//! `[dim, classes]` matrix. Prediction is `softmax(s · norm(image) · W)` for CLIP, and
//! `sigmoid(s · norm(image) · W + b)` per class for SigLIP ([`Scoring`]).

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::templates::{check_labels, Templates};
use crate::ZeroShotError;

/// The multiplier of the reference notebooks, open_clip and CLIP_benchmark (instead of the model's
/// own learned scale).
pub const DEFAULT_SCALE: f64 = 100.0;

/// How image–class similarities become scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scoring {
    /// CLIP's: a softmax over the classes of `scale · cos` (scores sum to 1; `scale` usually
    /// [`DEFAULT_SCALE`]).
    Softmax {
        /// The multiplier of the cosine similarities.
        scale: f64,
    },
    /// SigLIP's: every class on its own, `sigmoid(scale · cos + bias)` with the model's learned scale
    /// and bias (scores need not sum to 1).
    Sigmoid {
        /// The model's `exp(logit_scale)`.
        scale: f64,
        /// The model's `logit_bias`.
        bias: f64,
    },
}

impl Scoring {
    /// `softmax` or `sigmoid`, as the CLI reports it.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Softmax { .. } => "softmax",
            Scoring::Sigmoid { .. } => "sigmoid",
        }
    }
}

/// Class vectors built from prompts, with what they were built from.
#[derive(Debug, Clone)]
pub struct ZeroShotClassifier<B: Backend> {
    /// `[dim, classes]`, unit-norm columns; column `i` is class `labels[i]`.
    pub weights: Tensor<B, 2>,
    /// The class names, in column order.
    pub labels: Vec<String>,
    /// The templates (class marker `{}`) whose prompts were averaged.
    pub templates: Vec<String>,
    /// Identifies the model the classifier was built with (see `clip::Pretrained::fingerprint`).
    pub model: String,
}

fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl<B: Backend> ZeroShotClassifier<B> {
    /// Builds the classifier, encoding `classes_per_batch` classes' prompts per call of `encode`
    /// (which maps texts to raw `[n, dim]` embeddings, one row per text, in order). `model` is stored
    /// as [`model`](Self::model); `progress` is called with the number of classes done after each
    /// call of `encode`.
    ///
    /// # Errors
    ///
    /// [`ZeroShotError::NoLabels`] / [`ZeroShotError::EmptyLabel`] for bad labels, and
    /// [`ZeroShotError::Encode`] with the message of an `encode` error.
    pub fn build<E>(
        labels: &[String],
        templates: &Templates,
        model: &str,
        classes_per_batch: usize,
        mut encode: impl FnMut(&[String]) -> Result<Tensor<B, 2>, E>,
        mut progress: impl FnMut(usize),
    ) -> Result<Self, ZeroShotError>
    where
        E: std::fmt::Display,
    {
        check_labels(labels)?;
        let per_class = templates.templates.len();
        let mut columns = Vec::with_capacity(labels.len());
        for chunk in labels.chunks(classes_per_batch.max(1)) {
            let prompts: Vec<String> = chunk.iter().flat_map(|c| templates.fill(c)).collect();
            let embeds = encode(&prompts).map_err(|e| ZeroShotError::Encode(e.to_string()))?;
            let [_, dim] = embeds.dims();
            let mean = l2_normalize(embeds)
                .reshape([chunk.len(), per_class, dim])
                .mean_dim(1)
                .reshape([chunk.len(), dim]);
            columns.push(l2_normalize(mean));
            progress(chunk.len());
        }
        Ok(Self {
            weights: Tensor::cat(columns, 0).transpose(),
            labels: labels.to_vec(),
            templates: templates.templates.clone(),
            model: model.to_string(),
        })
    }

    /// Class probabilities `[images, classes]` = softmax(scale · norm(image) · W) for raw
    /// `[images, dim]` image embeddings; `scale` is usually [`DEFAULT_SCALE`].
    pub fn probabilities(&self, image_embeds: Tensor<B, 2>, scale: f64) -> Tensor<B, 2> {
        self.scores(image_embeds, Scoring::Softmax { scale })
    }

    /// Class scores `[images, classes]` of raw `[images, dim]` image embeddings, by `scoring`.
    pub fn scores(&self, image_embeds: Tensor<B, 2>, scoring: Scoring) -> Tensor<B, 2> {
        // embeddings of a half-precision model meet the classifier in its dtype
        let image_embeds = if image_embeds.dtype() == self.weights.dtype() {
            image_embeds
        } else {
            image_embeds.cast(self.weights.dtype())
        };
        let cosines = l2_normalize(image_embeds).matmul(self.weights.clone());
        match scoring {
            Scoring::Softmax { scale } => softmax(cosines * scale, 1),
            Scoring::Sigmoid { scale, bias } => sigmoid(cosines * scale + bias),
        }
    }

    /// For each image, all classes as `(index, probability)` sorted by probability (highest first).
    pub fn ranked(&self, image_embeds: Tensor<B, 2>, scale: f64) -> Vec<Vec<(usize, f32)>> {
        self.ranked_by(image_embeds, Scoring::Softmax { scale })
    }

    /// For each image, all classes as `(index, score)` sorted by score (highest first).
    pub fn ranked_by(
        &self,
        image_embeds: Tensor<B, 2>,
        scoring: Scoring,
    ) -> Vec<Vec<(usize, f32)>> {
        let probs = self.scores(image_embeds, scoring);
        let classes = self.labels.len();
        let values = probs
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        values
            .chunks(classes)
            .map(|row| {
                let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                ranked
            })
            .collect()
    }

    /// Saves weights (f32) with the model fingerprint, labels and templates in the metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ZeroShotError> {
        let path = path.as_ref();
        let [dim, classes] = self.weights.dims();
        let values: Vec<f32> = self
            .weights
            .clone()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let write_err = |message: String| ZeroShotError::Write {
            path: path.display().to_string(),
            message,
        };
        let view = TensorView::new(Dtype::F32, vec![dim, classes], &bytes)
            .map_err(|e| write_err(e.to_string()))?;
        let metadata = HashMap::from([
            ("model".to_string(), self.model.clone()),
            (
                "labels".to_string(),
                serde_json::to_string(&self.labels).unwrap_or_default(),
            ),
            (
                "templates".to_string(),
                serde_json::to_string(&self.templates).unwrap_or_default(),
            ),
        ]);
        let data = safetensors::serialize([("classifier", view)], Some(metadata))
            .map_err(|e| write_err(e.to_string()))?;
        // temporary sibling, fsync, rename, directory fsync: a crash leaves the old file or the new
        // (clip::durable does the same; this crate sits below it)
        let tmp = path.with_extension("tmp");
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, &data)?;
                f.sync_all()
            })
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e.to_string()));
        }
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| write_err(e.to_string()))?;
        }
        Ok(())
    }

    /// Loads a classifier saved by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, ZeroShotError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bad = |message: String| ZeroShotError::BadFile {
            path: name.clone(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|source| ZeroShotError::Read {
            path: name.clone(),
            source,
        })?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("no {k} in the metadata")))
        };
        let labels: Vec<String> =
            serde_json::from_str(&field("labels")?).map_err(|e| bad(e.to_string()))?;
        let templates: Vec<String> =
            serde_json::from_str(&field("templates")?).map_err(|e| bad(e.to_string()))?;
        let model = field("model")?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let t = file.tensor("classifier").map_err(|e| bad(e.to_string()))?;
        let shape = t.shape().to_vec();
        if t.dtype() != Dtype::F32 || shape.len() != 2 || shape[1] != labels.len() {
            return Err(bad(format!(
                "classifier tensor {:?} {shape:?} does not fit {} labels",
                t.dtype(),
                labels.len()
            )));
        }
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Self {
            // f32 whatever the device's default dtype (the classifier is built from f32 embeddings)
            weights: Tensor::from_data(
                TensorData::new(values, [shape[0], shape[1]]),
                (device, burn::tensor::DType::F32),
            ),
            labels,
            templates,
            model,
        })
    }

    /// Whether this classifier was built from the same model, labels and templates: a
    /// [`ZeroShotError::Stale`] naming the first difference if not.
    pub fn check_built_for(
        &self,
        model: &str,
        labels: &[String],
        templates: &Templates,
    ) -> Result<(), ZeroShotError> {
        if self.model != model {
            return Err(ZeroShotError::Stale(format!(
                "it was built with model {}, not {model}",
                self.model
            )));
        }
        if self.labels != labels {
            return Err(ZeroShotError::Stale("it was built for other labels".into()));
        }
        if self.templates != templates.templates {
            return Err(ZeroShotError::Stale(
                "it was built with other templates".into(),
            ));
        }
        Ok(())
    }
}
