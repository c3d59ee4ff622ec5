//! CLIP's encoders: the two image towers, the [`VisionTransformer`] (ViT) and OpenAI's
//! [`ModifiedResNet`], and the causal [`TextTransformer`]. All transformers share
//! [`ResidualAttentionBlock`]. Parameters carry open_clip's names, so the root crate `clip` loads
//! pretrained weights into them by name; the projections into the joint embedding space are in
//! `clip-heads`.
//!
//! Every tower is generic over the burn [`Backend`](burn::tensor::backend::Backend): the same code
//! runs inference on the CPU or a GPU and trains under autodiff. A tower maps normalized images
//! `[batch, 3, size, size]` or token ids `[batch, seq]` to pooled features `[batch, width]` (the
//! ResNet: `[batch, output_dim]`).
//!
//! Feature `flex` (turned on by the facade's `flex` feature) adds CPU kernels for burn's `flex`
//! backend: at inference there, GELU, attention, linear layers with their bias and residual, patch
//! extraction and the ResNet's convolutions and pools run on the crate's own vectorized code instead
//! of burn's ops. Other backends, and autodiff (training), use burn's ops; the results agree up to float
//! rounding.
//!
//! ```
//! use burn::tensor::{backend::Backend, Int, Tensor};
//! use clip_encoders::{Activation, TextTransformerConfig, VisionTransformerConfig};
//!
//! /// Pooled features of two blank images and one text from tiny, randomly initialized towers.
//! fn encode<B: Backend>(device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
//!     // 32×32 images in 8×8 patches (a 4×4 grid), width 64, 2 layers of 4 heads
//!     let vision = VisionTransformerConfig::new(32, 8, 64, 2, 4)
//!         .with_activation(Activation::QuickGelu)
//!         .init::<B>(device);
//!     let images = Tensor::<B, 4>::zeros([2, 3, 32, 32], device);
//!
//!     // width 48, 4 heads, 2 layers; a 10-token vocabulary whose id 9 ends a text
//!     let text = TextTransformerConfig::new(48, 4, 2)
//!         .with_context_length(8)
//!         .with_vocab_size(10)
//!         .with_end_of_text(9)
//!         .init::<B>(device);
//!     let ids = Tensor::<B, 2, Int>::from_ints([[8, 3, 4, 9, 0, 0]], device);
//!
//!     (vision.forward(images), text.forward(ids))
//! }
//!
//! let (images, texts) = encode::<burn::backend::Flex>(&Default::default());
//! assert_eq!((images.dims(), texts.dims()), ([2, 64], [1, 48]));
//! // the two blank images give the same features; random weights make them non-zero
//! let rows = images.into_data().to_vec::<f32>()?;
//! assert_eq!(rows[..64], rows[64..]);
//! assert!(rows.iter().any(|v| v.abs() > 1e-3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod activation;
pub mod attention;
#[cfg(feature = "flex")]
mod flex;
pub mod linear;
pub mod map_head;
pub mod modified_resnet;
pub mod siglip_vision;
pub mod text_transformer;
pub mod transformer;
pub mod vision_transformer;

pub use activation::Activation;
pub use attention::{MultiheadAttention, MultiheadAttentionConfig};
pub use map_head::{map_head, MapHead};
pub use modified_resnet::{
    AttentionPool2d, Bottleneck, Downsample, ModifiedResNet, ModifiedResNetConfig,
};
pub use siglip_vision::{SiglipVisionConfig, SiglipVisionTransformer, SIGLIP_NORM_EPS};
pub use text_transformer::{TextPool, TextTransformer, TextTransformerConfig, END_OF_TEXT};
pub use transformer::{
    Mlp, ResidualAttentionBlock, Transformer, TransformerConfig, LAYER_NORM_EPS,
};
pub use vision_transformer::{VisionTransformer, VisionTransformerConfig, VitPool};
