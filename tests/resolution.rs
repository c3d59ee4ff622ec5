//! Other input sizes: a ViT at other resolutions against open_clip's `resize_pos_embed`
//! (scripts/gen_resize_fixtures.py), and a shorter text context.

mod common;

use burn::backend::Flex;
use clip::Pretrained;
use common::*;

#[test]
fn a_vit_at_other_sizes_matches_open_clips_resized_model() {
    let device = Default::default();
    let reference = Reference::open("reference/vit_tiny_resized.safetensors");
    for size in [96usize, 48] {
        let clip = Pretrained::<Flex>::load(fixture("vit_tiny"), &device)
            .unwrap()
            .with_image_size(size)
            .unwrap();
        assert_eq!(
            (clip.config.image_size(), clip.preprocess.size),
            (size, size)
        );
        let (want_pos, shape) = reference.f32(&format!("pos_{size}"));
        let clip::ImageEncoder::Vit(vit) = &clip.model.visual else {
            panic!("vit_tiny is a ViT")
        };
        let pos = vit.positional_embedding.val();
        assert_eq!(pos.dims().to_vec(), shape);
        let e_pos = relative_error(&values(pos), &want_pos);
        let image = clip
            .model
            .encode_image(reference.tensor4::<Flex>(&format!("pixels_{size}"), &device));
        let (want, _) = reference.f32(&format!("image_{size}"));
        let e = relative_error(&values(image), &want);
        println!("{size} px: positions relative error {e_pos:.2e}, image embeds {e:.2e}");
        assert!(e_pos < 1e-6 && e < 1e-5, "{size}: {e_pos} {e}");
    }
}

#[test]
fn sizes_that_cannot_work_are_refused() {
    let device = Default::default();
    let vit = || Pretrained::<Flex>::load(fixture("vit_tiny"), &device).unwrap();
    let err = vit().with_image_size(50).err().unwrap().to_string();
    assert!(err.contains("50") && err.contains("patch size 16"), "{err}");
    let err = Pretrained::<Flex>::load(fixture("rn_tiny"), &device)
        .unwrap()
        .with_image_size(96)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ViT"), "{err}");
    let err = vit().with_context_length(78).err().unwrap().to_string();
    assert!(err.contains("78") && err.contains("77"), "{err}");
}

#[test]
fn a_shorter_context_gives_the_same_embeddings_for_texts_that_fit() {
    let device = Default::default();
    let full = Pretrained::<Flex>::load(fixture("vit_tiny"), &device).unwrap();
    let short = Pretrained::<Flex>::load(fixture("vit_tiny"), &device)
        .unwrap()
        .with_context_length(12)
        .unwrap();
    let texts = ["a photo of a cat", "a rocket on its launch pad", "coffee"];
    let ids = short.tokenize(&texts, &device).unwrap();
    assert_eq!(ids.dims(), [3, 12]);
    let a = values(full.embed_texts(&texts, &device).unwrap());
    let b = values(short.model.encode_text(ids));
    let e = relative_error(&b, &a);
    assert!(e < 1e-6, "{e}");
    // a text longer than the context is cut there, as open_clip's tokenizer cuts it
    let long = "a very long caption that goes on and on about a cat sitting on a mat in the sun";
    let cut = short.tokenize(&[long], &device).unwrap();
    assert_eq!(cut.dims(), [1, 12]);
}
