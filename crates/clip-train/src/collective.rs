//! What a training process needs from the others of a data-parallel run, and what it does with it.
//!
//! Each process ("rank") trains on its own slice of every micro-batch. The loss is still the whole
//! global batch's: the ranks' embeddings are gathered (every rank writes its rows into a zero matrix
//! of the global batch and the matrices are summed, which is exact: x + 0 = x), each rank
//! back-propagates the global loss through its own rows only (the others are constants, open_clip's
//! `local_loss` with `gather_with_grad=False`), and the parameter gradients are summed over the ranks.
//! The sum is the gradient a single process would compute on the whole batch.
//!
//! [`Collective`] is the one operation that needs the other processes, a sum; the `clip-distributed`
//! crate implements it over the network. Nothing here knows about transports.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::TrainError;

/// The processes of a data-parallel run, seen from one of them.
pub trait Collective<B: Backend>: Send + Sync {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// How many processes train together.
    fn world_size(&self) -> usize;
    /// The element-wise sum of `values` over every rank; all ranks call it in the same order with
    /// the same length.
    fn sum(&self, values: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError>;
}

/// Every rank's `local` rows (all ranks pass the same shape), stacked in rank order.
pub(crate) fn gather_rows<B: Backend>(
    collective: &dyn Collective<B>,
    local: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, TrainError> {
    let (rank, world) = (collective.rank(), collective.world_size());
    if world == 1 {
        return Ok(local);
    }
    let [rows, width] = local.dims();
    let device = local.device();
    let mut parts = Vec::with_capacity(3);
    if rank > 0 {
        parts.push(Tensor::zeros([rank * rows, width], &device));
    }
    parts.push(local);
    if rank + 1 < world {
        parts.push(Tensor::zeros([(world - rank - 1) * rows, width], &device));
    }
    let padded = Tensor::cat(parts, 0).reshape([world * rows * width]);
    Ok(collective.sum(padded)?.reshape([world * rows, width]))
}

/// Takes each gradient out of `grads` in the model's parameter order, flattened, noting which
/// parameters had one.
struct Take<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Vec<Tensor<B::InnerBackend, 1>>,
    taken: Vec<bool>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = self.grads.remove::<B::InnerBackend, D>(param.id);
        self.taken.push(grad.is_some());
        if let Some(grad) = grad {
            let n = grad.shape().num_elements();
            self.flat.push(grad.reshape([n]));
        }
    }
}

/// Puts the summed gradients back, in the order [`Take`] took them.
struct Give<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    taken: &'a [bool],
    summed: Tensor<B::InnerBackend, 1>,
    at: usize,
    index: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Give<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let taken = self.taken.get(self.index).copied().unwrap_or(false);
        self.index += 1;
        if !taken {
            return;
        }
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        let grad = self.summed.clone().narrow(0, self.at, n).reshape(dims);
        self.at += n;
        self.grads.register::<B::InnerBackend, D>(param.id, grad);
    }
}

/// The gradients summed over the ranks, as one flat all-reduce in the model's parameter order (the
/// order is the same in every process; burn's `ParamId`s are not).
pub(crate) fn sum_gradients<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    mut grads: GradientsParams,
    collective: &dyn Collective<B::InnerBackend>,
) -> Result<GradientsParams, TrainError> {
    if collective.world_size() == 1 {
        return Ok(grads);
    }
    let mut take = Take::<B> {
        grads: &mut grads,
        flat: Vec::new(),
        taken: Vec::new(),
    };
    model.visit(&mut take);
    let (flat, taken) = (take.flat, take.taken);
    if flat.is_empty() {
        return Ok(grads);
    }
    let summed = collective.sum(Tensor::cat(flat, 0))?;
    let mut give = Give::<B> {
        grads: &mut grads,
        taken: &taken,
        summed,
        at: 0,
        index: 0,
    };
    model.visit(&mut give);
    Ok(grads)
}

/// Refuses to start when another rank runs another config, naming the first field that differs
/// (each rank's per-field fingerprints are gathered and compared). Only `output` may differ: ranks
/// on separate machines write nowhere but rank 0 does.
pub(crate) fn check_same_config<B: Backend>(
    collective: &dyn Collective<B>,
    config: &crate::TrainConfig,
    device: &B::Device,
) -> Result<(), TrainError> {
    let world = collective.world_size();
    if world == 1 {
        return Ok(());
    }
    let fields = match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(TrainError::Config("the config cannot be serialized".into())),
    };
    let names: Vec<&String> = fields.keys().filter(|k| *k != "output").collect();
    // FNV-1a of each field's JSON, cut to 24 bits (exact in f32), and the number of fields
    let fingerprint = |text: &str| -> f32 {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in text.bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        (hash & 0x00ff_ffff) as f32
    };
    let mut mine: Vec<f32> = names
        .iter()
        .map(|name| fingerprint(&fields[name.as_str()].to_string()))
        .collect();
    mine.push(names.len() as f32);
    if let Some((other, row)) = first_other_row(collective, &mine, device)? {
        let field = (0..mine.len()).find(|&i| row[i] != mine[i]).unwrap_or(0);
        let name = names.get(field).map_or("the set of fields", |n| n.as_str());
        return Err(TrainError::Config(format!(
            "rank {other} runs another config than rank {}: `{name}` differs (every rank must run \
             the same config)",
            collective.rank()
        )));
    }
    Ok(())
}

/// Every rank's `mine` (the same length on all) gathered; the first rank whose row differs from
/// this one's, with its row.
fn first_other_row<B: Backend>(
    collective: &dyn Collective<B>,
    mine: &[f32],
    device: &B::Device,
) -> Result<Option<(usize, Vec<f32>)>, TrainError> {
    let width = mine.len();
    let local = Tensor::<B, 2>::from_data(
        burn::tensor::TensorData::new(mine.to_vec(), [1, width]),
        device,
    );
    let all: Vec<f32> = gather_rows(collective, local)?
        .into_data()
        .to_vec()
        .map_err(|e| TrainError::Collective(format!("{e:?}")))?;
    Ok(all
        .chunks(width)
        .enumerate()
        .find(|(_, row)| *row != mine)
        .map(|(rank, row)| (rank, row.to_vec())))
}

/// Every float parameter of `model`, flattened in module order; rank 0's values, zeros elsewhere.
struct Flatten<B: AutodiffBackend> {
    lead: bool,
    flat: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let values = param.val().inner();
        let n = values.shape().num_elements();
        let flat = values.reshape([n]);
        self.flat.push(if self.lead { flat } else { flat * 0.0 });
    }
}

/// Puts the broadcast values back, in the order [`Flatten`] took them.
struct Replace<B: AutodiffBackend> {
    values: Tensor<B::InnerBackend, 1>,
    at: usize,
}

impl<B: AutodiffBackend> burn::module::ModuleMapper<B> for Replace<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let tracked = t.is_require_grad();
            let t = Tensor::from_inner(self.values.clone().narrow(0, self.at, n).reshape(dims));
            self.at += n;
            if tracked {
                t.require_grad()
            } else {
                t
            }
        })
    }
}

/// The model with rank 0's parameters on every rank (one sum of rank 0's values and the others'
/// zeros): a fresh run does not depend on every machine's random initialization agreeing, nor a
/// resumed one on every rank having read the same checkpoint file.
pub(crate) fn broadcast_parameters<B: AutodiffBackend, M: Module<B>>(
    model: M,
    collective: &dyn Collective<B::InnerBackend>,
) -> Result<M, TrainError> {
    if collective.world_size() == 1 {
        return Ok(model);
    }
    let mut flatten = Flatten::<B> {
        lead: collective.rank() == 0,
        flat: Vec::new(),
    };
    model.visit(&mut flatten);
    if flatten.flat.is_empty() {
        return Ok(model);
    }
    let values = collective.sum(Tensor::cat(flatten.flat, 0))?;
    Ok(model.map(&mut Replace::<B> { values, at: 0 }))
}

/// Refuses to go on when the ranks do not stand at the same point: the step they resume from and
/// the token-table rows their optimizer state tracks (a rank that resumed another checkpoint, or
/// none, would otherwise train another model in silence).
pub(crate) fn check_same_start<B: Backend>(
    collective: &dyn Collective<B>,
    step: usize,
    rows: usize,
    device: &B::Device,
) -> Result<(), TrainError> {
    if collective.world_size() == 1 {
        return Ok(());
    }
    let mine = [step as f32, rows as f32];
    if let Some((other, row)) = first_other_row(collective, &mine, device)? {
        return Err(TrainError::Checkpoint(format!(
            "rank {other} starts at step {} with {} token rows, rank {} at step {step} with {rows}: \
             every rank must resume the same checkpoint (rank 0 writes them; give every rank its \
             directory, with --resume DIR or a shared output)",
            row[0],
            row[1],
            collective.rank(),
        )));
    }
    Ok(())
}
