//! Classification and retrieval metrics on plain scores, so they serve any backend and any source.

use burn::tensor::{backend::Backend, Tensor};

/// A `[n, d]` tensor as `n` rows of f32, the form the metrics take.
pub fn to_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    let values = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default();
    values.chunks(d.max(1)).map(<[f32]>::to_vec).collect()
}

/// Fraction of rows whose target is among the `k` highest scores.
pub fn top_k_accuracy(scores: &[Vec<f32>], targets: &[usize], k: usize) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    let hits = scores
        .iter()
        .zip(targets)
        .filter(|(row, &t)| {
            let Some(&target) = row.get(t) else {
                return false;
            };
            // rank = how many classes score strictly higher (ties resolved in the target's favour)
            row.iter().filter(|&&s| s > target).count() < k
        })
        .count();
    hits as f64 / targets.len() as f64
}

/// Index of the highest score of each row (lowest index on ties).
pub fn argmax(scores: &[Vec<f32>]) -> Vec<usize> {
    scores
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
                    if s > best.1 {
                        (i, s)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// `matrix[true][predicted]` counts.
pub fn confusion_matrix(
    predictions: &[usize],
    targets: &[usize],
    classes: usize,
) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (&p, &t) in predictions.iter().zip(targets) {
        if p < classes && t < classes {
            m[t][p] += 1;
        }
    }
    m
}

/// Mean over classes that occur in `targets` of their recall (balanced accuracy).
pub fn mean_per_class_recall(predictions: &[usize], targets: &[usize], classes: usize) -> f64 {
    let m = confusion_matrix(predictions, targets, classes);
    let recalls: Vec<f64> = m
        .iter()
        .enumerate()
        .filter_map(|(c, row)| {
            let total: usize = row.iter().sum();
            (total > 0).then(|| row[c] as f64 / total as f64)
        })
        .collect();
    if recalls.is_empty() {
        0.0
    } else {
        recalls.iter().sum::<f64>() / recalls.len() as f64
    }
}

/// Recall@k of image→text and text→image retrieval.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RetrievalRecall {
    /// The `k` values, in the order given.
    pub k: Vec<usize>,
    /// Fraction of images (that have a caption) with one of their captions in the top `k[j]` texts.
    pub image_to_text: Vec<f64>,
    /// Fraction of texts whose image is in the top `k[j]` images.
    pub text_to_image: Vec<f64>,
}

/// `similarity[i][t]` scores image i against text t; `text_image[t]` is the image text t describes
/// (an image may have several captions). Image→text counts a hit when any of the image's captions is
/// in its top k; text→image when the text's image is in its top k.
pub fn retrieval_recall(
    similarity: &[Vec<f32>],
    text_image: &[usize],
    ks: &[usize],
) -> RetrievalRecall {
    let images = similarity.len();
    let rank_of =
        |scores: &[f32], target: usize| scores.iter().filter(|&&s| s > scores[target]).count();
    let mut image_to_text = vec![0usize; ks.len()];
    for (i, row) in similarity.iter().enumerate() {
        let best = text_image
            .iter()
            .enumerate()
            .filter(|(_, &img)| img == i)
            .map(|(t, _)| rank_of(row, t))
            .min();
        if let Some(rank) = best {
            for (j, &k) in ks.iter().enumerate() {
                image_to_text[j] += usize::from(rank < k);
            }
        }
    }
    let mut text_to_image = vec![0usize; ks.len()];
    for (t, &img) in text_image.iter().enumerate() {
        let column: Vec<f32> = similarity.iter().map(|row| row[t]).collect();
        let rank = rank_of(&column, img);
        for (j, &k) in ks.iter().enumerate() {
            text_to_image[j] += usize::from(rank < k);
        }
    }
    let with_captions = (0..images)
        .filter(|i| text_image.contains(i))
        .count()
        .max(1);
    RetrievalRecall {
        k: ks.to_vec(),
        image_to_text: image_to_text
            .iter()
            .map(|&h| h as f64 / with_captions as f64)
            .collect(),
        text_to_image: text_to_image
            .iter()
            .map(|&h| h as f64 / text_image.len().max(1) as f64)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_recall_and_confusion_by_hand() {
        // 4 samples, 3 classes
        let scores = vec![
            vec![0.7, 0.2, 0.1], // true 0, predicted 0
            vec![0.5, 0.4, 0.1], // true 1, predicted 0, class 1 second
            vec![0.1, 0.3, 0.6], // true 2, predicted 2
            vec![0.2, 0.5, 0.3], // true 2, predicted 1, class 2 second
        ];
        let targets = [0, 1, 2, 2];
        assert_eq!(top_k_accuracy(&scores, &targets, 1), 0.5);
        assert_eq!(top_k_accuracy(&scores, &targets, 2), 1.0);
        let predictions = argmax(&scores);
        assert_eq!(predictions, vec![0, 0, 2, 1]);
        assert_eq!(
            confusion_matrix(&predictions, &targets, 3),
            vec![vec![1, 0, 0], vec![1, 0, 0], vec![0, 1, 1]]
        );
        // recalls: class 0 1/1, class 1 0/1, class 2 1/2 → mean 0.5
        assert_eq!(mean_per_class_recall(&predictions, &targets, 3), 0.5);
    }

    #[test]
    fn retrieval_by_hand() {
        // 3 images, 4 captions: captions 0,1 → image 0, caption 2 → image 1, caption 3 → image 2
        let sim = vec![
            vec![0.9, 0.1, 0.2, 0.3], // image 0: best caption 0 (its own) → rank 0
            vec![0.8, 0.1, 0.5, 0.2], // image 1: caption 2 has rank 1
            vec![0.1, 0.2, 0.3, 0.0], // image 2: caption 3 has rank 3
        ];
        let r = retrieval_recall(&sim, &[0, 0, 1, 2], &[1, 2, 5]);
        assert_eq!(r.image_to_text, vec![1.0 / 3.0, 2.0 / 3.0, 1.0]);
        // text→image ranks: caption0 col [.9,.8,.1] → image 0 rank 0; caption1 [.1,.1,.2] → image 0 rank 1;
        // caption2 [.2,.5,.3] → image 1 rank 0; caption3 [.3,.2,0] → image 2 rank 2
        assert_eq!(r.text_to_image, vec![0.5, 0.75, 1.0]);
    }
}
