//! Helpers shared by the integration tests: fixture paths, reading reference tensors, comparisons.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use safetensors::SafeTensors;

pub type B = burn::backend::Flex;

pub fn fixture(rel: &str) -> PathBuf {
    // test binaries built on one machine and run on another (scripts/gpu-check.sh)
    if let Some(dir) = std::env::var_os("CLIP_FIXTURES") {
        return PathBuf::from(dir).join(rel);
    }
    // this file is shared by the facade's tests and clip-cli's
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("fixtures").is_dir() {
        dir = dir
            .parent()
            .expect("fixtures/ above the crate")
            .to_path_buf();
    }
    dir.join("fixtures").join(rel)
}

pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn open(rel: &str) -> Self {
        Self {
            bytes: std::fs::read(fixture(rel)).unwrap(),
        }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    pub fn metadata(&self, key: &str) -> String {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        meta.metadata().as_ref().unwrap()[key].clone()
    }

    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let view = self.view();
        let t = view.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (v, t.shape().to_vec())
    }

    pub fn u8(&self, name: &str) -> (Vec<u8>, Vec<usize>) {
        let view = self.view();
        let t = view.tensor(name).unwrap();
        (t.data().to_vec(), t.shape().to_vec())
    }

    pub fn i64(&self, name: &str) -> (Vec<i64>, Vec<usize>) {
        let view = self.view();
        let t = view.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (v, t.shape().to_vec())
    }

    pub fn tensor4<Be: Backend>(&self, name: &str, device: &Be::Device) -> Tensor<Be, 4> {
        let (v, s) = self.f32(name);
        Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device)
    }

    /// `model`'s image and text embeddings of this reference's `pixel_values` and `text_ids`, on flex.
    pub fn embeddings_of(&self, model: &clip::Clip<B>) -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let image = model.encode_image(self.tensor4::<B>("pixel_values", &device));
        let text = model.encode_text(self.ids::<B>("text_ids", &device));
        (values(image), values(text))
    }

    /// The relative errors of `model`'s image and text embeddings against this reference's.
    pub fn errors_of(&self, model: &clip::Clip<B>) -> (f32, f32) {
        let (image, text) = self.embeddings_of(model);
        (
            relative_error(&image, &self.f32("image_embeds").0),
            relative_error(&text, &self.f32("text_embeds").0),
        )
    }

    pub fn ids<Be: Backend>(&self, name: &str, device: &Be::Device) -> Tensor<Be, 2, Int> {
        let (v, s) = self.i64(name);
        Tensor::from_data(TensorData::new(v, [s[0], s[1]]), device)
    }
}

pub fn values<Be: Backend, const D: usize>(t: Tensor<Be, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// max |a − b| / max |b|.
pub fn relative_error(got: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(got.len(), expected.len(), "length");
    let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = got
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

pub fn images(rel_dir: &str, meta: &str) -> Vec<PathBuf> {
    let names: Vec<String> = serde_json::from_str(meta).unwrap();
    names.iter().map(|n| fixture(rel_dir).join(n)).collect()
}
