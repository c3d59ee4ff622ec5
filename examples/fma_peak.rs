//! The fp32 fused-multiply-add rate this machine's cores actually sustain, as one JSON line: the
//! denominator of `scripts/compare.py`'s "% of peak" column.
//!
//!     cargo run --release --example fma_peak -- --threads 2
//!
//! A peak computed from the nominal clock in `/proc/cpuinfo` is not what the cores run at (turbo,
//! or a lower AVX-512 licence), so each thread here runs 16 independent chains of FMAs in the
//! widest vectors the CPU has — the most a matrix product could ever issue — and the rates add up.

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Threads (cores) measured at once.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Vector FMA instructions per chain and thread.
    #[arg(long, default_value_t = 100_000_000)]
    iters: u64,
}

fn main() {
    let args = Args::parse();
    let rates: Vec<(f64, &'static str)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.threads.max(1))
            .map(|_| s.spawn(|| fma_rate(args.iters)))
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let total: f64 = rates.iter().map(|(r, _)| r).sum();
    let report = serde_json::json!({
        "threads": rates.len(),
        "vectors": rates.first().map(|(_, v)| *v),
        "gflops": total,
        "gflops_per_thread": rates.iter().map(|(r, _)| r).collect::<Vec<_>>(),
    });
    println!("{report}");
}

/// GFLOP/s of one thread (an FMA counts two), and which vectors it used.
fn fma_rate(iters: u64) -> (f64, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above)
            return (unsafe { fma_avx512(iters) }, "avx512");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above)
            return (unsafe { fma_avx2(iters) }, "avx2");
        }
    }
    (fma_scalar(iters), "scalar")
}

/// 16 chains: enough to cover two FMA units' 4-cycle latency with room to spare.
const CHAINS: usize = 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-6));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    let start = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, b, c);
            // opaque to the optimizer, which would otherwise drop the unused chains; no instruction
            std::arch::asm!(
                "/* {0} */",
                inout(zmm_reg) * a,
                options(pure, nomem, nostack)
            );
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    black_box(acc);
    (iters * CHAINS as u64 * 16 * 2) as f64 / seconds / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-6));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    let start = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
            std::arch::asm!(
                "/* {0} */",
                inout(ymm_reg) * a,
                options(pure, nomem, nostack)
            );
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    black_box(acc);
    (iters * CHAINS as u64 * 8 * 2) as f64 / seconds / 1e9
}

/// Elsewhere: scalar `mul_add`, which the compiler turns into the target's FMA instruction.
fn fma_scalar(iters: u64) -> f64 {
    let mut acc = [1.0f32; CHAINS];
    let start = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(black_box(0.999_999), 1e-6);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    black_box(acc);
    (iters * CHAINS as u64 * 2) as f64 / seconds / 1e9
}
