//! What burn's AdamW leaves to us: CLIP's decay rule (no decay on gains, biases, embeddings and the
//! temperature), global-norm gradient clipping (burn clips per tensor), tower locking, and the
//! warmup + cosine learning rate.

use std::collections::HashSet;

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn_store::ModuleSnapshot;

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to 0 at `total`: the
/// learning rate of 0-based `step` (`peak · (step + 1) / warmup` during warmup).
pub fn learning_rate(step: usize, peak: f64, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        0.5 * peak * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

/// Parameter ids by role, read from the module's paths once.
pub struct ParamGroups {
    /// Parameters that are weight-decayed: tensors of rank ≥ 2 outside embeddings and locked towers.
    pub decay: HashSet<ParamId>,
    /// Parameters of a locked tower (`clip.visual…` or `clip.text…`): never updated nor decayed.
    pub locked: HashSet<ParamId>,
}

impl ParamGroups {
    /// Sorts the parameters of `model` (a [`TrainModel`](crate::TrainModel), whose paths start with
    /// `clip.`) into the groups, locking the image and/or text tower.
    pub fn new<B: Backend, M: ModuleSnapshot<B>>(
        model: &M,
        lock_image: bool,
        lock_text: bool,
    ) -> Self {
        let mut decay = HashSet::new();
        let mut locked = HashSet::new();
        for s in model.collect(None, None, true) {
            let Some(id) = s.tensor_id else { continue };
            let path = s.full_path();
            let image_side = path.starts_with("clip.visual");
            let text_side = path.starts_with("clip.text");
            if (lock_image && image_side) || (lock_text && text_side) {
                // a locked tower is neither updated nor decayed
                locked.insert(id);
                continue;
            }
            // matrices and kernels decay; gains, biases, embeddings, the temperature and BN stats do not
            if s.shape.len() >= 2 && !path.contains("embedding") {
                decay.insert(id);
            }
        }
        Self { decay, locked }
    }
}

/// Squared L2 norm of all gradients (and, in a second pass, their scaling / removal).
struct GradPass<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    locked: &'a HashSet<ParamId>,
    scale: Option<f64>,
    sum_squares: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradPass<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id = param.id;
        if self.locked.contains(&id) {
            self.grads.remove::<B::InnerBackend, D>(id);
            return;
        }
        match self.scale {
            None => {
                if let Some(g) = self.grads.get::<B::InnerBackend, D>(id) {
                    let s: f32 = g.square().sum().into_scalar().elem();
                    self.sum_squares += s as f64;
                }
            }
            Some(scale) => {
                if let Some(g) = self.grads.remove::<B::InnerBackend, D>(id) {
                    self.grads.register::<B::InnerBackend, D>(id, g * scale);
                }
            }
        }
    }
}

use burn::tensor::ElementConversion;

/// Drops the gradients of locked parameters, then scales the rest so that the global L2 norm, with
/// `other_squares` (the squared norm of gradients kept elsewhere: the token rows), is at most
/// `max_norm`. Returns the norm before clipping and the scale applied, if any (for those others).
pub fn clip_and_lock<B: AutodiffBackend, M: burn::module::AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    groups: &ParamGroups,
    max_norm: Option<f64>,
    other_squares: f64,
) -> (f64, Option<f64>) {
    let mut pass = GradPass::<B> {
        grads,
        locked: &groups.locked,
        scale: None,
        sum_squares: other_squares,
        _b: Default::default(),
    };
    model.visit(&mut pass);
    let norm = pass.sum_squares.sqrt();
    match max_norm {
        Some(max) if norm > max && norm.is_finite() => {
            let scale = max / (norm + 1e-6);
            pass.scale = Some(scale);
            model.visit(&mut pass);
            (norm, Some(scale))
        }
        _ => (norm, None),
    }
}

/// Decoupled weight decay `p ← p · (1 − lr·wd)` on the decaying parameters (AdamW's rule; burn's AdamW
/// runs with decay 0 so that gains, biases, embeddings and the temperature are spared).
pub struct DecayMapper<'a> {
    /// The parameters to decay ([`ParamGroups::decay`]); the others pass unchanged.
    pub decay: &'a HashSet<ParamId>,
    /// `1 − lr·weight_decay`, the factor the decaying parameters are multiplied by.
    pub factor: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for DecayMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !self.decay.contains(&param.id) {
            return param;
        }
        let factor = self.factor;
        param.map(|t| Tensor::from_inner(t.inner() * factor).require_grad())
    }
}

#[cfg(test)]
mod tests {
    use super::learning_rate;

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(learning_rate(0, 1.0, 10, 110), 0.1);
        assert_eq!(learning_rate(9, 1.0, 10, 110), 1.0);
        assert!((learning_rate(10, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(60, 1.0, 10, 110) - 0.5).abs() < 1e-12);
        assert!(learning_rate(110, 1.0, 10, 110).abs() < 1e-12);
    }
}
