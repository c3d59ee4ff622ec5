//! The towers read one row of the last block (the class token, the end-of-text token), and compute
//! only that row there (`Transformer::forward_at`). It must equal the full stack's output at that
//! row, forward and backward, with and without the causal mask.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clip::encoders::transformer::TransformerConfig;

type B = Flex;
type A = Autodiff<Flex>;

fn rows_of<Bk: burn::tensor::backend::Backend>(x: Tensor<Bk, 3>, at: &[i64]) -> Tensor<Bk, 3> {
    let [batch, _, width] = x.dims();
    let index = Tensor::<Bk, 1, Int>::from_data(TensorData::from(at), &x.device());
    x.gather(1, index.reshape([batch, 1, 1]).expand([batch, 1, width]))
}

fn max_diff<Bk: burn::tensor::backend::Backend>(a: Tensor<Bk, 3>, b: Tensor<Bk, 3>) -> f32 {
    (a - b).abs().max().into_scalar().elem()
}

use burn::tensor::ElementConversion;

#[test]
fn last_block_at_one_row_equals_the_full_stack() {
    let device = Default::default();
    let transformer = TransformerConfig::new(32, 3, 4).init::<B>(&device);
    let x = Tensor::<B, 3>::random([3, 9, 32], Distribution::Normal(0.0, 1.0), &device);
    for causal in [false, true] {
        for at in [[0i64, 0, 0], [8, 3, 0], [2, 8, 5]] {
            let full = rows_of(transformer.forward(x.clone(), causal), &at);
            let index = Tensor::<B, 1, Int>::from_data(TensorData::from(at), &device);
            let row = transformer.forward_at(x.clone(), index, causal);
            assert_eq!(row.dims(), [3, 1, 32]);
            let diff = max_diff(full.clone(), row);
            assert!(diff < 1e-5, "causal {causal}, rows {at:?}: {diff}");
            // discriminative: the rows differ from each other and from the input
            assert!(max_diff(full.clone(), rows_of(x.clone(), &at)) > 0.1);
        }
    }
}

#[test]
fn gradients_through_one_row_equal_the_full_stacks() {
    let device = Default::default();
    let transformer = TransformerConfig::new(16, 2, 2).init::<A>(&device);
    let x = Tensor::<A, 3>::random([2, 7, 16], Distribution::Normal(0.0, 1.0), &device);
    let weights = Tensor::<A, 3>::random([2, 1, 16], Distribution::Normal(0.0, 1.0), &device);
    let at = [6i64, 2];
    for causal in [false, true] {
        let grads = |pooled: Tensor<A, 3>| {
            let x_grad = (pooled * weights.clone()).sum().backward();
            let g = transformer.resblocks[0].attn.in_proj.weight.grad(&x_grad);
            let g = g.map(|g| g.into_data().to_vec::<f32>().unwrap_or_default());
            g.unwrap_or_default()
        };
        let full = grads(rows_of(transformer.forward(x.clone(), causal), &at));
        let index = Tensor::<A, 1, Int>::from_data(TensorData::from(at), &device);
        let row = grads(transformer.forward_at(x.clone(), index, causal));
        assert_eq!(full.len(), 16 * 48);
        let diff = full
            .iter()
            .zip(&row)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = full.iter().map(|a| a.abs()).fold(0.0f32, f32::max);
        assert!(
            scale > 1e-3 && diff < 1e-5 * scale.max(1.0),
            "causal {causal}: {diff} of {scale}"
        );
    }
}
