//! bf16 parity against open_clip / transformers under `torch.autocast(dtype=torch.bfloat16)`; see
//! `precision/check.rs`.

#[path = "precision/check.rs"]
mod check;
mod common;

use check::check_half;
use clip::Precision::Bf16;

// The tolerance is the issue's: cosine ≥ 0.999 per embedding. Measured on flex: see docs/gpu.md.
#[test]
fn flex_vit() {
    check_half::<burn::backend::Flex>("vit_tiny", Bf16, 0.999);
}

#[test]
fn flex_modified_resnet() {
    check_half::<burn::backend::Flex>("rn_tiny", Bf16, 0.999);
}

#[test]
fn flex_hugging_face() {
    check_half::<burn::backend::Flex>("hf_tiny", Bf16, 0.999);
}

/// wgpu has no bf16: the typed error, before any work.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_refuses_bf16() {
    let device = Default::default();
    let err = clip::set_precision::<burn::backend::Wgpu>(&device, Bf16).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, clip::ClipError::Precision { dtype: "bf16", .. }),
        "{text}"
    );
    assert!(text.contains("cannot run in bf16"), "{text}");
    // lavapipe and most GPUs have f16 in shaders; f32 everywhere
    assert!(text.contains("it has: f32"), "{text}");
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_vit() {
    check_half::<burn::backend::Cuda>("vit_tiny", Bf16, 0.999);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_modified_resnet() {
    check_half::<burn::backend::Cuda>("rn_tiny", Bf16, 0.999);
}
