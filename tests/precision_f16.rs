//! f16 parity against open_clip / transformers under `torch.autocast(dtype=torch.float16)`; see
//! `precision/check.rs`.

#[path = "precision/check.rs"]
mod check;
mod common;

use check::check_half;
use clip::Precision::F16;

// Tighter than the 0.999: f16 keeps 10 mantissa bits, and measured cosines are ≥ 0.999994.

#[test]
fn flex_vit() {
    check_half::<burn::backend::Flex>("vit_tiny", F16, 0.99999);
}

#[test]
fn flex_modified_resnet() {
    check_half::<burn::backend::Flex>("rn_tiny", F16, 0.99999);
}

#[test]
fn flex_hugging_face() {
    check_half::<burn::backend::Flex>("hf_tiny", F16, 0.99999);
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_vit() {
    check_half::<burn::backend::Wgpu>("vit_tiny", F16, 0.99999);
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_modified_resnet() {
    check_half::<burn::backend::Wgpu>("rn_tiny", F16, 0.99999);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_vit() {
    check_half::<burn::backend::Cuda>("vit_tiny", F16, 0.99999);
}
