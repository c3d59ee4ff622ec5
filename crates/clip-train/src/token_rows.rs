//! AdamW on the rows of the token table that captions use.
//!
//! CLIP's token table has 49,408 rows, and a caption dataset uses a small part of them (the Fashion-MNIST
//! scenes about sixty). Left to autodiff and burn's AdamW, every step fills a dense table-sized gradient
//! on each thread, adds those, takes their norm and runs AdamW's element-wise passes over the whole
//! table, nearly all of it over zeros: on the CPU backends that was a sixth of a training step.
//!
//! Here the trainer looks tokens up in the rows it tracks (every token seen so far, in order of first
//! appearance), back-propagates into those rows only, and runs AdamW on them. That is the same update
//! as dense AdamW: a row that has never had a gradient has zero moments and so a zero update, and the
//! rows tracked here get every step's moment decay and bias correction, gradient or not. Token
//! embeddings are not weight-decayed (CLIP's rule), so there is no decay to apply to untracked rows.

use std::collections::HashMap;

use burn::module::Param;
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::TrainError;

/// AdamW's hyper-parameters, as the trainer configures burn's.
#[derive(Clone, Copy, Debug)]
pub struct AdamWSettings {
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment before dividing.
    pub eps: f32,
}

/// The tracked rows and their AdamW moments.
pub struct TokenRows<B: Backend> {
    /// Token id of each tracked row, in order of first appearance.
    ids: Vec<i64>,
    slot: HashMap<i64, usize>,
    width: usize,
    moments: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
    /// Steps taken (AdamW's bias-correction time).
    time: i32,
}

/// What a checkpoint keeps of [`TokenRows`].
#[derive(Record)]
pub struct TokenRowsRecord {
    /// Token id of each tracked row, in order of first appearance.
    pub ids: Vec<i64>,
    /// Width of the token table.
    pub width: usize,
    /// First moments, `[ids.len(), width]` row-major (empty before the first step).
    pub moment_1: Vec<f32>,
    /// Second moments, as `moment_1`.
    pub moment_2: Vec<f32>,
    /// Steps taken.
    pub time: i32,
}

impl<B: Backend> TokenRows<B> {
    /// No rows tracked yet, for a table `width` wide.
    pub fn new(width: usize) -> Self {
        Self {
            ids: Vec::new(),
            slot: HashMap::new(),
            width,
            moments: None,
            time: 0,
        }
    }

    /// Tracks the tokens of `ids` not tracked yet; returns each id's row among the tracked ones.
    pub fn track(&mut self, ids: &[i64]) -> Vec<i64> {
        ids.iter()
            .map(|&id| {
                let next = self.ids.len();
                let slot = *self.slot.entry(id).or_insert(next);
                if slot == next {
                    self.ids.push(id);
                }
                slot as i64
            })
            .collect()
    }

    /// How many rows are tracked.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no row is tracked yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The tracked ids as an index tensor.
    pub fn index(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        Tensor::from_data(TensorData::new(self.ids.clone(), [self.ids.len()]), device)
    }

    /// `t` (one row per tracked token when it had `t.dims()[0]` of them) with zero rows for the tokens
    /// tracked since.
    pub fn pad(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        let [rows, width] = t.dims();
        if rows == self.ids.len() {
            return t;
        }
        let zeros = Tensor::zeros([self.ids.len() - rows, width], &t.device());
        Tensor::cat(vec![t, zeros], 0)
    }

    /// One AdamW step of the tracked rows of `table` (`[vocab, width]`) with `grad` (`[tracked,
    /// width]`), in burn's `AdamW` arithmetic. Returns the updated table.
    pub fn step(
        &mut self,
        table: Tensor<B, 2>,
        grad: Tensor<B, 2>,
        lr: f64,
        adam: AdamWSettings,
    ) -> Tensor<B, 2> {
        let grad = self.pad(grad);
        let (m, v) = match self.moments.take() {
            Some((m, v)) => (
                self.pad(m).mul_scalar(adam.beta1) + grad.clone().mul_scalar(1.0 - adam.beta1),
                self.pad(v).mul_scalar(adam.beta2) + grad.square().mul_scalar(1.0 - adam.beta2),
            ),
            None => (
                grad.clone().mul_scalar(1.0 - adam.beta1),
                grad.square().mul_scalar(1.0 - adam.beta2),
            ),
        };
        self.time += 1;
        let m_hat = m.clone().div_scalar(1.0 - adam.beta1.powi(self.time));
        let v_hat = v.clone().div_scalar(1.0 - adam.beta2.powi(self.time));
        let delta = m_hat.div(v_hat.sqrt().add_scalar(adam.eps));
        self.moments = Some((m, v));
        // `t + (−lr·δ)` is `t − lr·δ` to the bit; burn's select-assign only adds
        let index = self.index(&table.device());
        table.select_assign(0, index, delta.mul_scalar(-lr), IndexingUpdateOp::Add)
    }

    /// The state for a checkpoint; fails ([`TrainError::Checkpoint`]) only if the moments cannot be
    /// read back as f32.
    pub fn to_record(&self) -> Result<TokenRowsRecord, TrainError> {
        let values = |t: &Tensor<B, 2>| {
            t.to_data()
                .to_vec::<f32>()
                .map_err(|e| TrainError::Checkpoint(format!("token-table moments: {e:?}")))
        };
        let (moment_1, moment_2) = match &self.moments {
            Some((m, v)) => (values(m)?, values(v)?),
            None => (Vec::new(), Vec::new()),
        };
        Ok(TokenRowsRecord {
            ids: self.ids.clone(),
            width: self.width,
            moment_1,
            moment_2,
            time: self.time,
        })
    }

    /// Restores a checkpoint's rows onto `device`; refuses ([`TrainError::Architecture`]) one whose
    /// shapes do not fit a table `width` wide.
    pub fn from_record(
        record: TokenRowsRecord,
        width: usize,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let rows = record.ids.len();
        let fits = |m: &Vec<f32>| m.len() == rows * width || (m.is_empty() && record.time == 0);
        if record.width != width || !fits(&record.moment_1) || !fits(&record.moment_2) {
            return Err(TrainError::Architecture(format!(
                "the checkpoint's token-table state has {rows} rows of width {} ({} moment values), \
                 the model's table is {width} wide",
                record.width,
                record.moment_1.len()
            )));
        }
        let mut state = Self::new(width);
        state.track(&record.ids);
        state.time = record.time;
        if record.time > 0 {
            let tensor = |m: Vec<f32>| Tensor::from_data(TensorData::new(m, [rows, width]), device);
            state.moments = Some((tensor(record.moment_1), tensor(record.moment_2)));
        }
        Ok(state)
    }
}

/// A fresh leaf holding rows `index` of `table`: the tokens of a step are looked up in it, so the
/// gradient is `[rows, width]` instead of table-sized.
pub fn tracked_rows<B: AutodiffBackend>(
    table: &Param<Tensor<B, 2>>,
    index: Tensor<B::InnerBackend, 1, Int>,
) -> Tensor<B, 2> {
    Tensor::from_inner(table.val().inner().select(0, index)).require_grad()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Embedding, EmbeddingConfig};
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};

    type Ad = Autodiff<Flex>;

    fn ids<B: Backend>(values: &[i64], device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
    }

    /// Tracked-row AdamW against burn's AdamW on the whole table, over steps whose batches bring in
    /// new tokens, repeat old ones and leave some out (those rows still move on their momentum).
    #[test]
    fn tracked_rows_take_burns_adamw_steps() {
        let device = Default::default();
        let adam = AdamWSettings {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
        };
        let mut dense: Embedding<Ad> = EmbeddingConfig::new(12, 4).init(&device);
        let mut table: Tensor<<Ad as AutodiffBackend>::InnerBackend, 2> =
            dense.weight.val().inner();
        let mut optim = AdamWConfig::new()
            .with_beta_1(adam.beta1)
            .with_beta_2(adam.beta2)
            .with_epsilon(adam.eps)
            .with_weight_decay(0.0)
            .init::<Ad, Embedding<Ad>>();
        let mut rows = TokenRows::new(4);
        let target =
            Tensor::<Ad, 3>::random([1, 3, 4], burn::tensor::Distribution::Default, &device);
        let batches: [&[i64]; 5] = [&[3, 5, 3], &[7, 5, 11], &[0, 0, 0], &[2, 3, 9], &[4, 4, 4]];
        for (step, batch) in batches.iter().enumerate() {
            let lr = 0.05 / (step + 1) as f64;
            let loss = |x: Tensor<Ad, 3>| (x - target.clone()).powi_scalar(2).sum();

            let grads = loss(dense.forward(ids(batch, &device))).backward();
            let grads = GradientsParams::from_grads(grads, &dense);
            dense = optim.step(lr, dense, grads);

            let slots = rows.track(batch);
            let leaf = tracked_rows::<Ad>(
                &Param::from_tensor(Tensor::from_inner(table.clone())),
                rows.index(&device),
            );
            let x = burn::tensor::module::embedding(leaf.clone(), ids(&slots, &device)).unsqueeze();
            let grad = leaf
                .grad(&loss(x).backward())
                .expect("the rows have a gradient");
            table = rows.step(table, grad, lr, adam);

            let want: Vec<f32> = dense.weight.val().into_data().to_vec().unwrap();
            let got: Vec<f32> = table.to_data().to_vec().unwrap();
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() <= 1e-6, "step {step}: {w} vs {g}");
            }
        }
        // rows 1, 6, 8 and 10 never appeared: still their initial values, and never tracked
        assert_eq!(rows.len(), 8);
    }

    #[test]
    fn a_record_round_trips_and_a_wrong_width_is_refused() {
        let device = Default::default();
        let mut rows = TokenRows::<Flex>::new(2);
        rows.track(&[4, 1]);
        let table = Tensor::<Flex, 2>::zeros([6, 2], &device);
        let grad = Tensor::<Flex, 2>::from_data([[1.0, -2.0], [0.5, 0.0]], &device);
        let adam = AdamWSettings {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
        };
        let table = rows.step(table, grad, 0.1, adam);
        let restored =
            TokenRows::<Flex>::from_record(rows.to_record().unwrap(), 2, &device).unwrap();
        assert_eq!(restored.ids, vec![4, 1]);
        assert_eq!(restored.time, 1);
        assert_eq!(
            restored.to_record().unwrap().moment_2,
            rows.to_record().unwrap().moment_2
        );
        // the first step moves each row by lr against its gradient's sign
        let moved: Vec<f32> = table.into_data().to_vec().unwrap();
        assert!((moved[8] + 0.1).abs() < 1e-5 && (moved[9] - 0.1).abs() < 1e-5);
        assert!((moved[2] + 0.1).abs() < 1e-5 && moved[3].abs() < 1e-6);
        let err = TokenRows::<Flex>::from_record(rows.to_record().unwrap(), 3, &device);
        assert!(matches!(err, Err(TrainError::Architecture(_))));
    }
}
