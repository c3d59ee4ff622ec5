//! The linear probe: multinomial logistic regression on frozen image features, trained with burn,
//! the L2 strength picked on a validation split (the paper's protocol with a small grid).

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use crate::ZeroShotError;

#[derive(Module, Debug)]
struct Probe<B: Backend> {
    linear: Linear<B>,
}

/// A fitted probe: `softmax(x · W + b)` with `W` `[dim, classes]`.
#[derive(Debug)]
pub struct LinearProbe<B: Backend> {
    linear: Linear<B>,
    /// The L2 strength chosen from the grid (the penalty is `l2 · ‖W‖²`, added to the mean
    /// cross-entropy).
    pub l2: f64,
    /// Accuracy on the validation split with that strength, in `[0, 1]`.
    pub val_accuracy: f64,
}

fn labels<B: Backend>(y: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let ids: Vec<i64> = y.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(ids, [y.len()]), device)
}

fn accuracy<B: Backend>(linear: &Linear<B>, x: Tensor<B, 2>, y: &[usize]) -> f64 {
    let predicted = linear
        .forward(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap_or_default();
    let hits = predicted
        .iter()
        .zip(y)
        .filter(|(p, t)| **p as usize == **t)
        .count();
    hits as f64 / y.len().max(1) as f64
}

fn train<B: AutodiffBackend>(
    x: &Tensor<B, 2>,
    y: &[usize],
    classes: usize,
    l2: f64,
    steps: usize,
) -> Linear<B> {
    let device = x.device();
    let [_, dim] = x.dims();
    let mut probe = Probe {
        linear: LinearConfig::new(dim, classes)
            .with_initializer(Initializer::Zeros)
            .init(&device),
    };
    let mut optim = AdamConfig::new().init();
    let targets = labels::<B>(y, &device);
    let ce = CrossEntropyLossConfig::new().init(&device);
    for _ in 0..steps {
        let logits = probe.linear.forward(x.clone());
        let loss =
            ce.forward(logits, targets.clone()) + probe.linear.weight.val().square().sum() * l2;
        let grads = GradientsParams::from_grads(loss.backward(), &probe);
        probe = optim.step(0.05, probe, grads);
    }
    probe.linear
}

impl<B: Backend> LinearProbe<B> {
    /// Fits one probe per L2 strength on `train`, keeps the best on `val` (the strongest L2 on ties).
    ///
    /// `train_x` `[n, dim]` and `val_x` are features, `train_y` / `val_y` their class indices (below
    /// `classes`); each fit is `steps` full-batch Adam steps (learning rate 0.05) from zero weights.
    ///
    /// # Errors
    ///
    /// [`ZeroShotError::Probe`] if rows and labels do not match, a split is empty, a label is out of
    /// range or `l2_grid` is empty.
    pub fn fit<AD: AutodiffBackend<InnerBackend = B>>(
        train_x: Tensor<AD, 2>,
        train_y: &[usize],
        val_x: Tensor<B, 2>,
        val_y: &[usize],
        classes: usize,
        l2_grid: &[f64],
        steps: usize,
    ) -> Result<Self, ZeroShotError> {
        let [n, _] = train_x.dims();
        if n == 0 || n != train_y.len() || val_x.dims()[0] != val_y.len() || val_y.is_empty() {
            return Err(ZeroShotError::Probe(format!(
                "{n} training rows for {} labels, {} validation rows for {} labels",
                train_y.len(),
                val_x.dims()[0],
                val_y.len()
            )));
        }
        if let Some(bad) = train_y.iter().chain(val_y).find(|&&y| y >= classes) {
            return Err(ZeroShotError::Probe(format!(
                "label {bad} is not below the {classes} classes"
            )));
        }
        let mut best: Option<Self> = None;
        let mut grid = l2_grid.to_vec();
        grid.sort_by(|a, b| b.total_cmp(a));
        for l2 in grid {
            let linear = train(&train_x, train_y, classes, l2, steps).valid();
            let val_accuracy = accuracy(&linear, val_x.clone(), val_y);
            if best.as_ref().is_none_or(|b| val_accuracy > b.val_accuracy) {
                best = Some(Self {
                    linear,
                    l2,
                    val_accuracy,
                });
            }
        }
        best.ok_or_else(|| ZeroShotError::Probe("the L2 grid is empty".into()))
    }

    /// Logits `[n, classes]`.
    pub fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear.forward(x)
    }

    /// Fraction of the rows of `x` `[n, dim]` whose highest logit is their label in `y`.
    pub fn accuracy(&self, x: Tensor<B, 2>, y: &[usize]) -> f64 {
        accuracy(&self.linear, x, y)
    }
}
