//! The approximate index against exact search on synthetic unit vectors: build time, memory, query
//! latency and recall@10, plus exact-search latency at smaller sizes.
//!
//!     cargo run --release -p clip-search --features ann --example ann_bench -- 1000000
//!     cargo run --release -p clip-search --features ann --example ann_bench -- 5000000 --exact-sizes 10000,100000,1000000
//!
//! A build longer than one sitting can be split: `--checkpoint FILE --time-limit SECONDS` saves the
//! graph built so far to FILE (and its build time to FILE.json) once the limit has passed, and the same
//! command run again continues from it; the build time reported is the sum of the sittings.
//!
//! Two kinds of synthetic vectors (`--data`), queries being new points drawn the same way:
//! - `latent` (default): embeddings live near a low-dimensional manifold, so each vector is a random
//!   linear map of a 32-d Gaussian point into 512-d, plus a little isotropic noise, normalized.
//! - `clusters`: a random one of 10,000 unit centres plus heavy Gaussian noise (cosine about 0.75 to
//!   the centre), normalized: within a cluster the neighbours differ by noise alone, in all 512
//!   dimensions — close to uniform on the sphere, the worst case for any graph index.

use std::time::Instant;

use clip_search::ann::{Ann, AnnParams};
use clip_search::exact::{dot, normalize};
use clip_search::VectorSet;
use rayon::prelude::*;

const DIM: usize = 512;
const CENTRES: usize = 10_000;
const NOISE: f32 = 0.04;
const QUERIES: usize = 200;

/// xorshift64* with Box–Muller: reproducible normals without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// Intrinsic dimension of the `latent` vectors, and their isotropic noise.
const LATENT: usize = 32;
const LATENT_NOISE: f32 = 0.02;

fn latent_point(map: &[f32], seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let z: Vec<f32> = (0..LATENT).map(|_| rng.normal()).collect();
    normalize(
        map.chunks_exact(LATENT)
            .map(|row| {
                row.iter().zip(&z).map(|(a, b)| a * b).sum::<f32>() + LATENT_NOISE * rng.normal()
            })
            .collect(),
    )
}

fn cluster_point(centres: &[f32], seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let c = (rng.uniform() * CENTRES as f32) as usize % CENTRES;
    normalize(
        centres[c * DIM..(c + 1) * DIM]
            .iter()
            .map(|x| x + NOISE * rng.normal())
            .collect(),
    )
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(Ok(1_000_000), |a| a.parse())?;
    let exact_sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--exact-sizes")
        .and_then(|i| args.get(i + 1))
        .map_or("10000,100000".to_string(), Clone::clone)
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;

    let kind = args
        .iter()
        .position(|a| a == "--data")
        .and_then(|i| args.get(i + 1))
        .map_or("latent", String::as_str)
        .to_string();
    let start = Instant::now();
    // the latent map: DIM rows of LATENT Gaussian entries scaled to unit expected row norm
    let map: Vec<f32> = {
        let mut rng = Rng::new(7);
        (0..DIM * LATENT)
            .map(|_| rng.normal() / (LATENT as f32).sqrt())
            .collect()
    };
    let centres: Vec<f32> = (0..CENTRES)
        .flat_map(|c| {
            let mut rng = Rng::new(1 << 40 | c as u64);
            normalize((0..DIM).map(|_| rng.normal()).collect())
        })
        .collect();
    let point = |seed: u64| match kind.as_str() {
        "clusters" => cluster_point(&centres, seed),
        _ => latent_point(&map, seed),
    };
    if !matches!(kind.as_str(), "latent" | "clusters") {
        return Err(format!("--data {kind}: latent or clusters").into());
    }
    let mut data = vec![0f32; n * DIM];
    data.par_chunks_mut(DIM)
        .enumerate()
        .for_each(|(i, row)| row.copy_from_slice(&point(i as u64)));
    let vectors = VectorSet::from_parts(DIM, (0..n as i64).collect(), data);
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|q| point((1 << 50) + q as u64)).collect();
    eprintln!(
        "{n} vectors generated in {:.1} s, RSS {:.0} MiB",
        start.elapsed().as_secs_f64(),
        rss_mib()
    );

    // approximate: build (in sittings, with --checkpoint), memory, save/load, latency, recall@10
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let checkpoint = value_of("--checkpoint").map(std::path::PathBuf::from);
    let time_limit: Option<f64> = value_of("--time-limit").map(|s| s.parse()).transpose()?;
    let rss_before = rss_mib();
    let params = AnnParams::default();
    let progress_file = checkpoint.as_ref().map(|c| {
        let mut name = c.as_os_str().to_owned();
        name.push(".json");
        std::path::PathBuf::from(name)
    });
    let (ann, earlier_s) = match (&checkpoint, &progress_file) {
        (Some(c), Some(p)) if c.exists() => {
            let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p)?)?;
            if saved["n"] != n || saved["data"] != kind.as_str() {
                return Err(
                    format!("{}: a checkpoint of another run ({saved})", c.display()).into(),
                );
            }
            let ann = Ann::open(c, false)?;
            eprintln!("continuing from {} vectors in {}", ann.len(), c.display());
            (ann, saved["build_s"].as_f64().unwrap_or(0.0))
        }
        _ => (Ann::new(DIM, params)?, 0.0),
    };
    let t = Instant::now();
    let mut last = Instant::now();
    const SITTING_STEP: usize = 100_000;
    let mut at = ann.len();
    while at < n {
        let end = (at + SITTING_STEP).min(n);
        let part = VectorSet::from_parts(
            DIM,
            vectors.ids()[at..end].to_vec(),
            vectors.data()[at * DIM..end * DIM].to_vec(),
        );
        ann.add(&part, &mut |_| {})?;
        at = end;
        if last.elapsed().as_secs() >= 30 {
            eprintln!(
                "  {at}/{n} added, {:.0} s (this sitting {:.0} s)",
                earlier_s + t.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
        if let (Some(limit), Some(c), Some(p)) = (time_limit, &checkpoint, &progress_file) {
            if at < n && start.elapsed().as_secs_f64() > limit {
                ann.save(c)?;
                let build_s = earlier_s + t.elapsed().as_secs_f64();
                let saved =
                    serde_json::json!({"n": n, "data": kind, "added": at, "build_s": build_s});
                std::fs::write(p, saved.to_string())?;
                eprintln!(
                    "stopped at {at}/{n} after {build_s:.0} s of building; run the same command to continue"
                );
                return Ok(());
            }
        }
    }
    let build_s = earlier_s + t.elapsed().as_secs_f64();
    if let (Some(c), Some(p)) = (&checkpoint, &progress_file) {
        std::fs::remove_file(c).ok();
        std::fs::remove_file(p).ok();
    }

    // exact: ground truth, and latency at each size
    let time_exact = |set: &VectorSet| -> (Vec<Vec<i64>>, Vec<f64>) {
        let mut truth = Vec::new();
        let mut ms = Vec::new();
        for q in &queries {
            let t = Instant::now();
            let hits = set.top_k(q, 10, -1.0);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            truth.push(hits.iter().map(|h| h.id).collect());
        }
        ms.sort_by(f64::total_cmp);
        (truth, ms)
    };
    let mut exact_latency = Vec::new();
    for &size in exact_sizes.iter().filter(|&&s| s < n) {
        let part = VectorSet::from_parts(
            DIM,
            vectors.ids()[..size].to_vec(),
            vectors.data()[..size * DIM].to_vec(),
        );
        let (_, ms) = time_exact(&part);
        exact_latency.push((size, percentile(&ms, 0.5), percentile(&ms, 0.99)));
    }
    let (truth, ms) = time_exact(&vectors);
    exact_latency.push((n, percentile(&ms, 0.5), percentile(&ms, 0.99)));
    let (ann_bytes, rss_after) = (ann.memory_usage(), rss_mib());
    let file = std::env::temp_dir().join(format!("ann_bench_{n}.usearch"));
    let t = Instant::now();
    ann.save(&file)?;
    let save_s = t.elapsed().as_secs_f64();
    let file_mib = std::fs::metadata(&file)?.len() as f64 / (1 << 20) as f64;
    drop(ann);
    let t = Instant::now();
    let ann = Ann::open(&file, true)?;
    let view_s = t.elapsed().as_secs_f64();
    // each ef: the graph's own top 10, and the top 10 of its best 21 re-scored exactly (what
    // `clip search` does with the stored f32 vectors)
    let mut sweeps = Vec::new();
    for ef in [64, 128, 256, 512, 1024] {
        ann.set_expansion_search(ef);
        let (mut ms, mut raw, mut reranked) = (Vec::new(), 0, 0);
        for (q, truth) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let hits = ann.search(q, 21)?;
            let mut rescored: Vec<(f32, i64)> = hits
                .iter()
                .map(|h| (dot(&vectors.data()[h.id as usize * DIM..][..DIM], q), h.id))
                .collect();
            rescored.sort_by(|a, b| b.0.total_cmp(&a.0));
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            raw += hits
                .iter()
                .take(10)
                .filter(|h| truth.contains(&h.id))
                .count();
            reranked += rescored
                .iter()
                .take(10)
                .filter(|(_, id)| truth.contains(id))
                .count();
        }
        ms.sort_by(f64::total_cmp);
        let total = (10 * queries.len()) as f64;
        sweeps.push((
            ef,
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            raw as f64 / total,
            reranked as f64 / total,
        ));
    }
    std::fs::remove_file(&file).ok();

    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("# {n} vectors of dimension {DIM} ({kind}), {QUERIES} queries, {cores} cores");
    println!("| search | vectors | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (size, p50, p99) in &exact_latency {
        println!("| exact | {size} | {p50:.2} | {p99:.2} |");
    }
    for (ef, p50, p99, raw, reranked) in &sweeps {
        println!(
            "| approximate (M {}, ef {ef}), recall@10 {raw:.4} (graph) / {reranked:.4} (21 re-scored) | {n} | {p50:.3} | {p99:.3} |",
            params.connectivity
        );
    }
    println!(
        "approximate: built in {build_s:.1} s ({:.0} vectors/s), {:.0} MiB in memory (RSS +{:.0} MiB), \
         file {file_mib:.0} MiB saved in {save_s:.1} s, memory-mapped in {view_s:.3} s",
        n as f64 / build_s,
        ann_bytes as f64 / (1 << 20) as f64,
        rss_after - rss_before
    );
    println!(
        "{}",
        serde_json::json!({
            "n": n, "dim": DIM, "data": kind, "queries": QUERIES, "cores": cores, "exact": exact_latency,
            "ann": {"build_s": build_s, "memory_mib": ann_bytes as f64 / (1 << 20) as f64,
                    "rss_growth_mib": rss_after - rss_before, "file_mib": file_mib, "save_s": save_s,
                    "view_s": view_s,
                    "search": sweeps.iter().map(|(ef, p50, p99, raw, reranked)| serde_json::json!({
                        "ef": ef, "p50_ms": p50, "p99_ms": p99, "recall_at_10": raw,
                        "recall_at_10_rescored": reranked})).collect::<Vec<_>>(),
                    "params": {"connectivity": params.connectivity, "expansion_add": params.expansion_add,
                               "expansion_search": params.expansion_search}},
        })
    );
    Ok(())
}
