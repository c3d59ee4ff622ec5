//! The float precision a model runs in: f32, or half precision (f16, bf16) on backends and devices
//! that compute in it.
//!
//! burn 0.21 keeps a default float dtype per device: tensors created on it (weights as they load,
//! pixels, masks) take that dtype. [`set_precision`] sets it, once, before anything else runs on the
//! device; [`Pretrained::load`](crate::Pretrained::load) then converts the weights to it, whatever
//! dtype the file stores. A backend type with a half element does the same from its type:
//! `burn::backend::Cuda<burn::tensor::bf16>`, `burn::backend::Wgpu<burn::tensor::f16>`.
//!
//! | backend | f32 | f16 | bf16 |
//! |---|---|---|---|
//! | `flex` (CPU) | ✓ | ✓ (burn's kernels, slower than f32) | ✓ (computed through f32) |
//! | `ndarray` | ✓ | ✗ | ✗ |
//! | `wgpu`, `vulkan`, `metal` | ✓ | where the GPU has 16-bit floats in shaders | ✗ |
//! | `cuda` | ✓ | ✓ | ✓ |
//!
//! Embeddings come out in the working precision; [`Pretrained`](crate::Pretrained)'s `embed_*`
//! methods return them as f32.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::{get_device_settings, set_default_float_dtype, Backend};
use burn::tensor::{DType, FloatDType};

use crate::ClipError;

/// The float type a model computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit IEEE floats: the reference's numbers (the default).
    #[default]
    F32,
    /// IEEE half precision (10-bit mantissa, range ±65504).
    F16,
    /// bfloat16 (8-bit mantissa, f32's range): what `torch.autocast` uses on CPUs and most GPUs.
    Bf16,
}

impl Precision {
    /// Every precision, in order of width.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// burn's float dtype for it.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// Its name on the command line: `f32`, `f16`, `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The precision tensors created on `device` take (`f32` unless set, or unless the backend type
    /// has a half element); `None` for another dtype (f64, flex32).
    pub fn of_device<B: Backend>(device: &B::Device) -> Option<Self> {
        match get_device_settings::<B>(device).float_dtype {
            FloatDType::F32 => Some(Precision::F32),
            FloatDType::F16 => Some(Precision::F16),
            FloatDType::BF16 => Some(Precision::Bf16),
            _ => None,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = ClipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(ClipError::Input(format!(
                "unknown dtype {s:?} (f32, f16 or bf16)"
            ))),
        }
    }
}

/// Makes `precision` the float type of every tensor created on `device` from now on, so that a model
/// loaded or built there afterwards runs in it. Call it before anything else uses the device.
///
/// Errors ([`ClipError::Precision`]) when the backend or device cannot compute in that dtype (f16 on
/// a GPU without 16-bit shader floats, bf16 on wgpu or `ndarray`), or when the device already runs
/// in another one (burn fixes a device's dtype at its first use).
pub fn set_precision<B: Backend>(
    device: &B::Device,
    precision: Precision,
) -> Result<(), ClipError> {
    let unsupported = |reason: String| ClipError::Precision {
        backend: B::name(device),
        device: format!("{device:?}"),
        dtype: precision.name(),
        reason,
    };
    let dtype: DType = precision.dtype().into();
    if !B::supports_dtype(device, dtype) {
        let usable: Vec<&str> = Precision::ALL
            .iter()
            .filter(|p| B::supports_dtype(device, p.dtype().into()))
            .map(|p| p.name())
            .collect();
        return Err(unsupported(format!(
            "the backend has no {} arithmetic on this device (it has: {})",
            precision.name(),
            usable.join(", ")
        )));
    }
    match set_default_float_dtype::<B>(device, precision.dtype()) {
        Ok(()) => Ok(()),
        // already in use: fine if it is already in that precision
        Err(_) if Precision::of_device::<B>(device) == Some(precision) => Ok(()),
        Err(e) => Err(unsupported(format!(
            "{e}; set the precision before the device's first use"
        ))),
    }
}
