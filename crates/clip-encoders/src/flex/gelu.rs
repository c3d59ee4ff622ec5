//! GELU and QuickGELU on the `flex` backend as one branch-free pass that the compiler vectorizes.
//!
//! `flex` evaluates `erf` one element at a time with `libm::erff`, whose branches for |x| ≥ 0.84 and
//! |x| ≥ 1.25 get slower the wider the pre-activations spread: 15–19 % of ViT-B/32's encoding time.
//! PyTorch's CPU GELU (ATen's AVX2 / AVX-512 `Vectorized<float>::erf`) uses the Abramowitz–Stegun
//! 7.1.26 rational form, |error| ≤ 1.5e-7, with a vectorized `exp`; so does this pass, with its own
//! `exp`: the result stays as close to open_clip's as `libm::erff`'s (see the tests). QuickGELU
//! (`x·sigmoid(1.702·x)`, OpenAI's weights) is three passes of burn's ops there, one of them a scalar
//! `expf`: 15 % of ViT-B/32's image encoding; here it is one pass with the same `exp`.

use burn::tensor::{backend::Backend, DType, Tensor};

use super::tensor::{as_flex, as_flex_mut, covers_buffer};

/// Which of the two activations a pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gelu {
    /// `0.5·x·(1 + erf(x/√2))`.
    Exact,
    /// `x·sigmoid(1.702·x)`.
    Quick,
}

/// The activation of `x`, computed here when `x` is a contiguous f32 tensor of `flex` (in place
/// when it is not shared); otherwise `x` back, untouched, for burn's own ops.
pub(crate) fn gelu<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    kind: Gelu,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let mut primitive = x.into_primitive();
    let done = match as_flex_mut(&mut primitive) {
        Some(t) if t.dtype() == DType::F32 && covers_buffer(t) => {
            activate_in_place(t.storage_mut::<f32>(), kind);
            true
        }
        _ => false,
    };
    let x = Tensor::from_primitive(primitive);
    if done {
        Ok(x)
    } else {
        Err(x)
    }
}

/// `activation(x·weight + bias)` (`x`: `[m, k]`, `weight`: `[k, n]`, `bias`: `[n]`) for `flex` f32
/// tensors, the MLP's first layer: the product written without the bias (no fill of the output
/// first), and the bias added in the activation's pass, which reads and writes every element
/// anyway. `None` where an operand is not such a tensor.
pub(crate) fn linear_gelu<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: &Tensor<B, 1>,
    kind: Gelu,
) -> Option<Tensor<B, 2>> {
    let bias = bias.clone().into_primitive();
    let bias = as_flex(&bias)?;
    if bias.dtype() != DType::F32 || bias.layout().shape().to_vec() != [weight.dims()[1]] {
        return None;
    }
    let bias = bias.to_contiguous();
    let mut product = super::linear::linear(x, weight, None, None)?.into_primitive();
    let slot = as_flex_mut(&mut product)?;
    let n = bias.layout().num_elements();
    activate_rows_in_place(
        slot.storage_mut::<f32>(),
        bias.storage::<f32>().get(..n)?,
        kind,
    );
    Some(Tensor::from_primitive(product))
}

/// The activation of every element of `xs`, in place, in the CPU's widest vectors (the baseline
/// x86-64 build would use 4-wide SSE: 5 % of ViT-B/32's image encoding, against about 1.5 % in
/// AVX-512). Same bits on every path: each multiply-add is an explicit `mul_add`, rounded once
/// everywhere.
fn activate_in_place(xs: &mut [f32], kind: Gelu) {
    activate_rows_in_place(xs, &[], kind)
}

/// [`activate_in_place`] of `x + bias` for each row of `xs` (rows as long as `bias`; no bias when
/// it is empty).
fn activate_rows_in_place(xs: &mut [f32], bias: &[f32], kind: Gelu) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above)
            return unsafe { activate_avx512(xs, bias, kind) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above)
            return unsafe { activate_avx2(xs, bias, kind) };
        }
    }
    activate_loop(xs, bias, kind)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn activate_avx512(xs: &mut [f32], bias: &[f32], kind: Gelu) {
    activate_loop(xs, bias, kind)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn activate_avx2(xs: &mut [f32], bias: &[f32], kind: Gelu) {
    activate_loop(xs, bias, kind)
}

/// One loop per activation, so that each vectorizes on its own.
#[inline(always)]
fn activate_loop(xs: &mut [f32], bias: &[f32], kind: Gelu) {
    match kind {
        Gelu::Exact => map_rows(xs, bias, gelu_f32),
        Gelu::Quick => map_rows(xs, bias, quick_gelu_f32),
    }
}

#[inline(always)]
fn map_rows(xs: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
    if bias.is_empty() {
        xs.iter_mut().for_each(|x| *x = f(*x));
        return;
    }
    for row in xs.chunks_mut(bias.len()) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x = f(*x + b);
        }
    }
}

/// `x·sigmoid(1.702·x)` as open_clip's `QuickGELU` computes it (the product `1.702·x` rounded to
/// f32 first), with `sigmoid(z) = 1/(1 + e^−z)` for `z ≥ 0` and `e^z/(1 + e^z)` below, so that
/// `exp_neg` only ever sees `|z|`.
#[inline(always)]
fn quick_gelu_f32(x: f32) -> f32 {
    let z = 1.702 * x;
    let e = exp_neg(z.abs());
    let d = 1.0 / (1.0 + e);
    let sigmoid = if z >= 0.0 { d } else { e * d };
    x * sigmoid
}

/// `0.5·x·(1 + erf(x/√2))` with erf from Abramowitz–Stegun 7.1.26:
/// `erf(u) = 1 − t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·exp(−u²)`, `t = 1/(1 + p·u)`, `u ≥ 0`.
/// Every multiply-add is one fused `mul_add`: a third fewer instructions than separate multiplies
/// and adds, and one rounding each, the same on every path (AVX-512, AVX2 + FMA, aarch64, and the
/// software `fmaf` of a CPU without FMA).
#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let u = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / P.mul_add(u, 1.0);
    let poly = t.mul_add(A[4], A[3]);
    let poly = t.mul_add(poly, A[2]);
    let poly = t.mul_add(poly, A[1]);
    let poly = t.mul_add(poly, A[0]);
    let erf_abs = (-t * poly).mul_add(exp_neg(u * u), 1.0);
    let erf = f32::from_bits(erf_abs.to_bits() | (x.to_bits() & 0x8000_0000));
    let half = 0.5 * x;
    half.mul_add(erf, half)
}

/// `exp(−y)` for `y ≥ 0` without branches: `2^n · e^r` with `n = round(−y/ln 2)`, `|r| ≤ ln2/2`, and
/// `e^r` by its Taylor series to r⁷ (relative error below 1e-8 there), in fused multiply-adds. Below
/// e^−87 it returns ≈1e-38 instead of smaller numbers, which the caller multiplies by at most 1.
#[inline(always)]
pub(crate) fn exp_neg(y: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer, and the integer sits in the low mantissa bits
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75; // ln 2 split so that n·LN2_HI is exact for |n| < 2⁸
    const LN2_LO: f32 = 1.428_606_8e-6;
    const TAYLOR: [f32; 8] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    let x = -y.min(87.0);
    let shifted = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let e = TAYLOR[..7]
        .iter()
        .rev()
        .fold(TAYLOR[7], |acc, &c| acc.mul_add(r, c));
    // the low bits of `shifted` hold n (two's complement), n ∈ [−126, 0]: 2^n by its exponent bits
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits(((n_bits + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact GELU in f64 (libm's double-precision erf, within an ulp of f64).
    fn gelu_f64(x: f32) -> f64 {
        let x = x as f64;
        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }

    #[test]
    fn exp_neg_matches_f64_exp() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let y = i as f32 * 1e-4;
            let want = (-(y as f64)).exp();
            worst = worst.max(((exp_neg(y) as f64) - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
    }

    /// Largest `|ours − exact|` and `|ours − exact| / |x|` over `xs`.
    fn errors(xs: impl Iterator<Item = f32>) -> (f64, f64) {
        xs.fold((0.0, 0.0), |(abs, rel), x| {
            let err = ((gelu_f32(x) as f64) - gelu_f64(x)).abs();
            (abs.max(err), rel.max(err / (x.abs() as f64).max(1e-3)))
        })
    }

    #[test]
    fn gelu_is_within_pytorchs_own_error_of_exact() {
        // PyTorch 2.15's CPU GELU on this grid: 1.13e-6 at most, 3.5e-7·|x|; libm::erff's: 4.5e-7, 1.1e-7
        let (abs, rel) = errors((-200_000..=200_000).map(|i| i as f32 * 5e-5));
        assert!(
            abs < 5e-7 && rel < 3.2e-7,
            "|error| up to {abs:e}, {rel:e}·|x|"
        );
    }

    /// Tensor `name` of the PyTorch fixture (`scripts/gen_fixtures.py gelu`).
    fn fixture(name: &str) -> Vec<f32> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/reference/gelu.safetensors"
        );
        let bytes = std::fs::read(path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let data = file.tensor(name).unwrap().data().to_vec();
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Largest difference of `kind` on the fixture's inputs from PyTorch's `name` output, after
    /// checking that the CPU's widest path gives the bits of the baseline one.
    fn worst_difference(kind: Gelu, name: &str, scalar: fn(f32) -> f32) -> f32 {
        let (xs, want) = (fixture("x"), fixture(name));
        assert_eq!((xs.len(), want.len()), (8001, 8001));
        let mut ours = xs.clone();
        activate_in_place(&mut ours, kind);
        let baseline: Vec<f32> = xs.iter().map(|&x| scalar(x)).collect();
        assert_eq!(ours, baseline);
        let spread = want.iter().fold(0.0f32, |m, y| m.max(y.abs()));
        assert!(spread > 9.0, "outputs up to {spread}");
        let worst = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("{name}: largest difference from PyTorch {worst:e} (outputs up to {spread})");
        worst
    }

    #[test]
    fn gelu_matches_pytorch() {
        let worst = worst_difference(Gelu::Exact, "gelu", gelu_f32);
        assert!(worst < 1.3e-6, "{worst:e}");
    }

    #[test]
    fn quick_gelu_matches_open_clip() {
        let worst = worst_difference(Gelu::Quick, "quick_gelu", quick_gelu_f32);
        assert!(worst < 1.3e-6, "{worst:e}");
        // and against x·sigmoid(1.702·x) in f64, relative to |x|
        let rel = (-200_000..=200_000)
            .map(|i| i as f32 * 5e-5)
            .map(|x| {
                let z = (1.702 * x) as f64;
                let exact = x as f64 / (1.0 + (-z).exp());
                ((quick_gelu_f32(x) as f64) - exact).abs() / (x.abs() as f64).max(1e-3)
            })
            .fold(0.0, f64::max);
        assert!(rel < 2.5e-7, "{rel:e}·|x|");
    }

    #[test]
    fn flex_tensors_take_this_pass_and_views_burns() {
        use crate::Activation;
        use burn::tensor::TensorData;
        type B = burn::backend::Flex;
        let xs: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) * 2e-3).collect();
        let tensor = || {
            Tensor::<B, 2>::from_data(TensorData::new(xs.clone(), [64, 64]), &Default::default())
        };
        for (activation, kind) in [
            (Activation::Gelu, Gelu::Exact),
            (Activation::QuickGelu, Gelu::Quick),
        ] {
            let mut want = xs.clone();
            activate_in_place(&mut want, kind);
            let ours = activation.forward(tensor()).into_data();
            // bit for bit: burn's erf and sigmoid (libm) differ from these in many of them
            assert_eq!(ours.to_vec::<f32>().unwrap(), want);
            let burns = activation.forward(tensor().transpose()).transpose();
            let burns = burns.into_data().to_vec::<f32>().unwrap();
            assert_ne!(burns, want, "{kind:?}");
            assert!(burns.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
        }
    }

    /// Against burn's matmul + bias + activation, for both activations, on a contiguous weight and
    /// a column block of a wider one, below and above `gemm`'s threading threshold.
    #[test]
    fn linear_gelu_matches_burns_ops() {
        use crate::flex::tensor::random;
        use crate::Activation;
        use burn::tensor::Tolerance;
        for (m, k, n) in [(3, 5, 7), (300, 200, 260)] {
            let x = random([m, k], 1);
            let bias = random([n], 2);
            let weights = [random([k, n], 3), random([k, 2 * n], 4).narrow(1, n, n)];
            for weight in weights {
                for (activation, kind) in [
                    (Activation::Gelu, Gelu::Exact),
                    (Activation::QuickGelu, Gelu::Quick),
                ] {
                    let got = linear_gelu(&x, &weight, &bias, kind).expect("flex f32 operands");
                    let want = activation
                        .forward(x.clone().matmul(weight.clone()) + bias.clone().unsqueeze());
                    got.into_data()
                        .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(2e-5));
                }
            }
        }
        let (x, weight) = (random([4, 3], 1), random([3, 5], 2));
        assert!(linear_gelu(&x, &weight, &random([4], 3), Gelu::Exact).is_none());
    }

    #[test]
    fn gelu_edges() {
        assert_eq!(gelu_f32(0.0), 0.0);
        assert_eq!(gelu_f32(30.0), 30.0);
        assert_eq!(gelu_f32(-30.0), 0.0);
        assert!(gelu_f32(f32::NAN).is_nan());
        assert_eq!(quick_gelu_f32(0.0), 0.0);
        assert_eq!(quick_gelu_f32(60.0), 60.0);
        assert!(quick_gelu_f32(-60.0).abs() < 1e-35);
        assert!(quick_gelu_f32(f32::NAN).is_nan());
    }
}
