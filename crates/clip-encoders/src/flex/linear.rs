//! Linear layers on the `flex` backend as one accumulated matrix product.
//!
//! `flex` runs `x·W + b` as a matrix product into a zero-filled output, then a second pass that adds
//! the bias, and the transformer block adds its residual in a third. Here the output buffer is
//! filled once with the bias (plus the residual, where there is one) and `gemm` accumulates the
//! product onto it: no zero fill and no extra passes over the activations (2 % of the text
//! encoding was the zero fill alone).

use burn::backend::flex::FlexTensor;
use burn::tensor::{backend::Backend, DType, Tensor};

use super::tensor::{as_flex, f32_tensor, gemm_f32, map_flex, Strided};

/// `x·weight + bias` (`x`: `[m, k]`, `weight`: `[k, n]`, `bias`: `[n]`), plus `residual` (`[m, n]`)
/// when given, for `flex` f32 tensors; `None` otherwise (the caller then uses burn's ops).
///
/// With a residual, the output starts as `residual + bias` and the product is added to that, so
/// the sum is rounded in that order rather than as `residual + (product + bias)`: the results
/// differ by at most an ulp or so of the sum.
pub(crate) fn linear<B: Backend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
    residual: Option<&Tensor<B, 2>>,
) -> Option<Tensor<B, 2>> {
    let weight = weight.clone().into_primitive();
    let bias = bias.map(|b| b.clone().into_primitive());
    let residual = residual.map(|r| r.clone().into_primitive());
    let weight = as_flex(&weight)?;
    let bias = match &bias {
        Some(b) => Some(as_flex(b)?),
        None => None,
    };
    let residual = match &residual {
        Some(r) => Some(as_flex(r)?),
        None => None,
    };
    map_flex(x, |x| linear_f32(x, weight, bias, residual))
}

fn linear_f32(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    residual: Option<&FlexTensor>,
) -> Option<FlexTensor> {
    let others = bias.iter().chain(residual.iter());
    if x.dtype() != DType::F32
        || weight.dtype() != DType::F32
        || others.clone().any(|t| t.dtype() != DType::F32)
    {
        return None;
    }
    let lhs = Operand::of(x)?;
    let rhs = Operand::of(weight)?;
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || m * n * k == 0 {
        return None; // burn's matmul reports (or handles) these
    }
    let bias = bias.map(FlexTensor::to_contiguous);
    let residual = residual.map(FlexTensor::to_contiguous);
    let bias = match &bias {
        Some(b) if b.layout().shape().num_elements() != n => return None,
        Some(b) => Some(b.storage::<f32>().get(..n)?),
        None => None,
    };
    let residual = match &residual {
        Some(r) if r.layout().shape().to_vec() != [m, n] => return None,
        Some(r) => Some(r.storage::<f32>().get(..m * n)?),
        None => None,
    };

    let mut out = Vec::with_capacity(m * n);
    match (residual, bias) {
        (Some(residual), Some(bias)) => {
            for row in residual.chunks_exact(n) {
                out.extend(row.iter().zip(bias).map(|(r, b)| r + b));
            }
        }
        (Some(residual), None) => out.extend_from_slice(residual),
        (None, Some(bias)) => (0..m).for_each(|_| out.extend_from_slice(bias)),
        // `gemm` without `accumulate` writes every element before it reads any (it reads none on
        // the first block of k and accumulates onto its own writes after): no zero fill needed
        (None, None) => {}
    }
    let accumulate = residual.is_some() || bias.is_some();
    // as `flex` does: products this small are not worth splitting over threads
    let parallelism = if m * n * k >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `Operand::of` checked that every element (i, j) of either operand, at
    // `start + i·row_stride + j·col_stride`, lies inside its storage; `out` has room for m·n
    // elements, written at `i·n + j`
    unsafe {
        gemm_f32(
            m,
            n,
            k,
            Strided {
                at: out.as_mut_ptr(),
                row: n as isize,
                col: 1,
            },
            lhs.strided(),
            rhs.strided(),
            accumulate,
            parallelism,
        );
        // SAFETY: all m·n elements are written: by the fill above, or by `gemm` (see there)
        out.set_len(m * n);
    }
    Some(f32_tensor(out, vec![m, n]))
}

/// A 2-D f32 matrix as `gemm` reads it: storage, first element and strides (views read in place).
struct Operand<'a> {
    data: &'a [f32],
    start: usize,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Operand<'a> {
    fn strided(&self) -> Strided<*const f32> {
        Strided {
            at: self.data[self.start..].as_ptr(),
            row: self.row_stride,
            col: self.col_stride,
        }
    }

    /// `None` unless `t` is 2-D with non-negative strides and every element inside its storage.
    fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let (rows, cols, row_stride, col_stride) = layout.as_2d_strides()?;
        if row_stride < 0 || col_stride < 0 {
            return None;
        }
        let data = t.storage::<f32>();
        let start = layout.start_offset();
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(row_stride as usize)?
                .checked_add((cols - 1).checked_mul(col_stride as usize)?)?
                .checked_add(start)?;
            if last >= data.len() {
                return None;
            }
        }
        Some(Self {
            data,
            start,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use crate::flex::tensor::random;

    /// Against `flex`'s matmul + add, with and without bias and residual, on contiguous inputs, a
    /// transposed weight view and a column block of a wider weight (as the packed q/k/v projection is
    /// read), at sizes below and above the threading threshold.
    #[test]
    fn matches_flex_matmul_and_adds() {
        for (m, k, n) in [(1, 3, 5), (7, 33, 65), (300, 200, 260)] {
            let x = random([m, k], 1);
            let wide = random([k, 3 * n], 2);
            let transposed = random([n, k], 3);
            let bias = random([n], 4);
            let residual = random([m, n], 5);
            let weights = [
                random([k, n], 6),
                wide.narrow(1, n, n),
                transposed.transpose(),
            ];
            for weight in weights {
                let product = x.clone().matmul(weight.clone());
                let cases = [
                    (None, None, product.clone()),
                    (
                        Some(&bias),
                        None,
                        product.clone() + bias.clone().unsqueeze(),
                    ),
                    (
                        Some(&bias),
                        Some(&residual),
                        residual.clone() + (product.clone() + bias.clone().unsqueeze()),
                    ),
                    (None, Some(&residual), residual.clone() + product.clone()),
                ];
                for (b, r, want) in cases {
                    let got = super::linear(&x, &weight, b, r).expect("flex f32 operands");
                    got.into_data()
                        .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(2e-5));
                }
            }
        }
    }

    #[test]
    fn mismatched_operands_fall_back() {
        let x = random([4, 3], 1);
        assert!(super::linear(&x, &random([4, 5], 2), None, None).is_none());
        assert!(super::linear(&x, &random([3, 5], 2), Some(&random([4], 3)), None).is_none());
        assert!(super::linear(&x, &random([3, 5], 2), None, Some(&random([5, 4], 3))).is_none());
    }
}
