//! CLIP's encoders: the ViT and ModifiedResNet image towers and the causal text transformer.
//! All transformers share [`ResidualAttentionBlock`]. Projections into the joint space are in
//! `clip-heads`.

pub mod activation;
pub mod attention;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod flex_attention;
#[cfg(feature = "flex")]
mod flex_conv;
#[cfg(feature = "flex")]
mod flex_gelu;
#[cfg(feature = "flex")]
mod flex_linear;
#[cfg(feature = "flex")]
mod flex_patches;
#[cfg(feature = "flex")]
mod flex_pool;
pub mod modified_resnet;
pub mod text_transformer;
pub mod transformer;
pub mod vision_transformer;

pub use activation::Activation;
pub use attention::{MultiheadAttention, MultiheadAttentionConfig};
pub use modified_resnet::{
    AttentionPool2d, Bottleneck, Downsample, ModifiedResNet, ModifiedResNetConfig,
};
pub use text_transformer::{TextTransformer, TextTransformerConfig, END_OF_TEXT};
pub use transformer::{
    Mlp, ResidualAttentionBlock, Transformer, TransformerConfig, LAYER_NORM_EPS,
};
pub use vision_transformer::{VisionTransformer, VisionTransformerConfig};
