//! The config of a tiny `clip train` run on the committed Fashion-MNIST subset, shared by the tests
//! that start training processes (distributed, kill).

use std::path::{Path, PathBuf};

const FASHION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/fashion-mnist");

/// A tiny run of `steps` steps on Fashion-MNIST scenes, writing under `output`.
pub fn config(dir: &Path, output: &str, loss: &str, steps: usize, extra: &str) -> PathBuf {
    let loss = match loss {
        "siglip" => "kind = \"siglip\"",
        _ => "kind = \"info_nce\"\nlambda = 0.5\nlabel_smoothing = 0.0",
    };
    let text = format!(
        r#"output = "{output}"
seed = 5
steps = {steps}
batch_size = 16
accumulation = 1
lr = 3e-3
warmup_steps = 1
weight_decay = 0.2
beta1 = 0.9
beta2 = 0.98
eps = 1e-6
grad_clip_norm = 1.0
checkpoint_every = 1
eval_every = 0
eval_samples = 100
lock_image = false
lock_text = false
patch_dropout = 0.0
threads = 1
half_precision_model = false
{extra}

[loss]
{loss}

[data]
kind = "fashion_scenes"
dir = "{FASHION}"

[augment]
brightness = 0.2
contrast = 0.2

[model]
embed_dim = 32
projection_bias = false

[model.vision]
type = "vit"
image_size = 24
patch_size = 8
width = 32
layers = 1
heads = 1
mlp_ratio = 2.0
activation = "gelu"

[model.text]
context_length = 24
vocab_size = 49408
width = 32
heads = 1
layers = 1
mlp_ratio = 2.0
activation = "gelu"
"#,
        output = dir.join(output).display(),
    );
    let path = dir.join(format!("{output}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
