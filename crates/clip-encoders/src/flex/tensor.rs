//! Reaching the `flex` tensor under a backend-generic `Tensor`, for the kernels beside this module.
//! Anything else — another backend, burn's autodiff wrapper,
//! a quantized tensor — is not a `FlexTensor`, so those callers fall back to burn's own ops.

use std::any::Any;

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{backend::Backend, Bytes, DType, Shape, Tensor, TensorPrimitive};

/// The `flex` float tensor `primitive` holds, if it holds one.
pub(crate) fn as_flex<B: Backend>(primitive: &TensorPrimitive<B>) -> Option<&FlexTensor> {
    match primitive {
        TensorPrimitive::Float(t) => (t as &dyn Any).downcast_ref::<FlexTensor>(),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// [`as_flex`], mutable.
pub(crate) fn as_flex_mut<B: Backend>(
    primitive: &mut TensorPrimitive<B>,
) -> Option<&mut FlexTensor> {
    match primitive {
        TensorPrimitive::Float(t) => (t as &mut dyn Any).downcast_mut::<FlexTensor>(),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// `f` of `x`'s `flex` tensor, as a tensor of `x`'s type; `None` where `x` is not a `flex` float
/// tensor or `f` gives nothing.
pub(crate) fn map_flex<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    f: impl FnOnce(&FlexTensor) -> Option<FlexTensor>,
) -> Option<Tensor<B, D>> {
    let mut primitive = x.clone().into_primitive();
    let slot = as_flex_mut(&mut primitive)?;
    *slot = f(slot)?;
    Some(Tensor::from_primitive(primitive))
}

/// Whether the tensor's f32 elements are its whole buffer, in order (so it can be worked on in place).
pub(crate) fn covers_buffer(t: &FlexTensor) -> bool {
    let layout = t.layout();
    layout.contiguous_offsets() == Some((0, layout.num_elements()))
        && t.bytes().len() == layout.num_elements() * size_of::<f32>()
}

/// `t` as a tensor of backend `B`, when `B`'s float tensors are `flex` ones.
pub(crate) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Option<Tensor<B, D>> {
    let t = (Box::new(t) as Box<dyn Any>).downcast::<B::FloatTensorPrimitive>();
    Some(Tensor::from_primitive(TensorPrimitive::Float(*t.ok()?)))
}

/// The four sizes of a rank-4 tensor; `None` for any other rank.
pub(crate) fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    let shape = t.layout().shape();
    (shape.num_dims() == 4).then(|| [shape[0], shape[1], shape[2], shape[3]])
}

/// A contiguous f32 `flex` tensor of shape `dims` holding `values` (a kernel's output).
pub(crate) fn f32_tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(dims)),
        DType::F32,
    )
}

/// A matrix operand of [`gemm_f32`]: its first element and the steps, in elements, from one row and
/// from one column to the next.
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    pub at: P,
    pub row: isize,
    pub col: isize,
}

/// `dst = lhs · rhs` (`[m, k] · [k, n]`), or `dst += lhs · rhs` with `accumulate`: the `gemm` crate
/// (the one `flex` uses) with its scalars fixed, so that each caller names only its operands.
///
/// # Safety
/// Every element (i, j) of each operand, at `at + i·row + j·col`, must lie inside its allocation,
/// and no two elements of `dst` may share an address, nor any with `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: Strided<*mut f32>,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's contract is gemm's
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.at,
            dst.col,
            dst.row,
            accumulate,
            lhs.at,
            lhs.col,
            lhs.row,
            rhs.at,
            rhs.col,
            rhs.row,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// A `flex` tensor of N(0, 1) values, the same for the same `seed`: the kernels' test inputs.
#[cfg(test)]
pub(crate) fn random<const D: usize>(
    shape: [usize; D],
    seed: u64,
) -> Tensor<burn::backend::Flex, D> {
    let device = Default::default();
    <burn::backend::Flex as Backend>::seed(&device, seed);
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), &device)
}
