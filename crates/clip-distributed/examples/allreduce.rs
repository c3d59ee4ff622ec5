//! Two or more processes summing tensors of several sizes: `RANK=r WORLD_SIZE=n MASTER_PORT=p cargo run
//! -p clip-distributed --example allreduce`.
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use clip_train::Collective;

fn main() {
    let launch = clip_distributed::Launch::from_env().unwrap().unwrap();
    let device = Default::default();
    let ranks = clip_distributed::join::<Flex>(&launch, &device).unwrap();
    for (i, n) in [40usize, 384, 1000, 6, 100_000].into_iter().enumerate() {
        let values: Vec<f32> = (0..n).map(|j| (launch.rank * 1000 + j) as f32).collect();
        let t = Tensor::<Flex, 1>::from_data(TensorData::new(values, [n]), &device);
        let sum = ranks.sum(t).unwrap();
        let v: Vec<f32> = sum.into_data().to_vec().unwrap();
        eprintln!(
            "rank {} op {i} n {n}: first {} last {}",
            launch.rank,
            v[0],
            v[n - 1]
        );
    }
}
