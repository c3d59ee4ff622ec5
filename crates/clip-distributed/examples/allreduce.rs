//! Times all-reduces between processes: `RANK=r WORLD_SIZE=n MASTER_PORT=p cargo run --release -p
//! clip-distributed --example allreduce -- [FLOATS ...]` on every rank. Each size is summed 5 times
//! (the first, warm-up, not counted); rank 0 prints the median and the rate. It also checks the sums.
use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use clip_train::Collective;

fn main() {
    let launch = clip_distributed::Launch::from_env()
        .expect("RANK, WORLD_SIZE, MASTER_PORT")
        .expect("WORLD_SIZE is not set");
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number of floats"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1 << 20]
    } else {
        sizes
    };
    let device = Default::default();
    let ranks = clip_distributed::join::<Flex>(&launch, &device).expect("join");
    let world = launch.world_size as f32;
    for n in sizes {
        let mut ms = Vec::new();
        for round in 0..5 {
            let values = vec![launch.rank as f32 + 1.0; n];
            let t = Tensor::<Flex, 1>::from_data(TensorData::new(values, [n]), &device);
            let start = Instant::now();
            let sum: Vec<f32> = ranks
                .sum(t)
                .expect("all-reduce")
                .into_data()
                .to_vec()
                .unwrap();
            if round > 0 {
                ms.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            let expected = world * (world + 1.0) / 2.0;
            assert!(sum.iter().all(|&v| v == expected), "wrong sum");
        }
        ms.sort_by(f64::total_cmp);
        if launch.rank == 0 {
            let median = ms[ms.len() / 2];
            let mb = (n * 4) as f64 / 1e6;
            println!(
                "{n} floats ({mb:.1} MB): {median:.1} ms median, {:.0} MB/s of tensor",
                mb / (median / 1000.0)
            );
        }
    }
}
