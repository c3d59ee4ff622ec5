//! Values and gradients against open_clip's ClipLoss / SigLipLoss and PyTorch's cross-entropy for the
//! λ-weighted and label-smoothed forms (fixtures/reference/loss.safetensors, float64 in PyTorch).

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use clip_loss::*;
use safetensors::SafeTensors;

type AD = Autodiff<Flex>;

struct Fixture(Vec<u8>);

impl Fixture {
    fn load() -> Self {
        Self(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/reference/loss.safetensors"
            ))
            .unwrap(),
        )
    }
    fn get(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap_or_else(|_| panic!("{name}"));
        (
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            t.shape().to_vec(),
        )
    }
    fn tensor2(&self, name: &str) -> Tensor<AD, 2> {
        let (v, s) = self.get(name);
        Tensor::from_data(TensorData::new(v, [s[0], s[1]]), &Default::default())
    }
}

fn close(got: &[f32], expected: &[f32], tol: f32, what: &str) -> f32 {
    let scale = expected.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(err < tol, "{what}: relative error {err}");
    err
}

fn vals<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn check(fx: &Fixture, n: usize, case: &str) {
    let device = Default::default();
    let image = fx.tensor2(&format!("n{n}.image")).require_grad();
    let text = fx.tensor2(&format!("n{n}.text")).require_grad();
    let siglip = case == "siglip";
    let init = if siglip {
        SIGLIP_LOGIT_SCALE_INIT
    } else {
        CLIP_LOGIT_SCALE_INIT
    };
    let scale = Tensor::<AD, 1>::from_floats([init as f32], &device).require_grad();
    let bias =
        Tensor::<AD, 1>::from_floats([SIGLIP_LOGIT_BIAS_INIT as f32], &device).require_grad();
    let loss = match case {
        "siglip" => siglip_loss(image.clone(), text.clone(), scale.clone(), bias.clone()),
        "clip" => contrastive_loss(
            image.clone(),
            text.clone(),
            scale.clone(),
            ContrastiveWeights::default(),
        ),
        "smooth0.1" => contrastive_loss(
            image.clone(),
            text.clone(),
            scale.clone(),
            ContrastiveWeights {
                lambda: 0.5,
                label_smoothing: 0.1,
            },
        ),
        lam => {
            let lambda: f64 = lam.trim_start_matches("lambda").parse().unwrap();
            contrastive_loss(
                image.clone(),
                text.clone(),
                scale.clone(),
                ContrastiveWeights {
                    lambda,
                    label_smoothing: 0.0,
                },
            )
        }
    }
    .unwrap();
    let grads = loss.backward();
    let p = |k: &str| fx.get(&format!("n{n}.{case}.{k}")).0;
    let tag = format!("n{n} {case}");
    let e1 = close(
        &vals(loss.inner()),
        &p("loss"),
        1e-5,
        &format!("{tag} loss"),
    );
    let e2 = close(
        &vals(image.grad(&grads).unwrap()),
        &p("grad_image"),
        1e-5,
        &format!("{tag} d/dimage"),
    );
    let e3 = close(
        &vals(text.grad(&grads).unwrap()),
        &p("grad_text"),
        1e-5,
        &format!("{tag} d/dtext"),
    );
    let e4 = close(
        &vals(scale.grad(&grads).unwrap()),
        &p("grad_scale"),
        1e-5,
        &format!("{tag} d/dscale"),
    );
    if siglip {
        close(
            &vals(bias.grad(&grads).unwrap()),
            &p("grad_bias"),
            1e-5,
            &format!("{tag} d/dbias"),
        );
    }
    println!("{tag}: relative errors loss {e1:.1e}, grads {e2:.1e} {e3:.1e} {e4:.1e}");
}

#[test]
fn clip_loss_matches_open_clip() {
    let fx = Fixture::load();
    check(&fx, 8, "clip");
    check(&fx, 1, "clip");
}

#[test]
fn lambda_weighting_matches_the_formula() {
    let fx = Fixture::load();
    for n in [8, 1] {
        check(&fx, n, "lambda0.3");
        check(&fx, n, "lambda0.9");
    }
}

#[test]
fn label_smoothing_matches_pytorch() {
    let fx = Fixture::load();
    check(&fx, 8, "smooth0.1");
}

#[test]
fn siglip_matches_open_clip() {
    let fx = Fixture::load();
    check(&fx, 8, "siglip");
    check(&fx, 1, "siglip");
}

#[test]
fn gradient_matches_finite_differences() {
    // central differences of the forward pass (no autodiff) against the autodiff gradient
    let fx = Fixture::load();
    let (img, s) = fx.get("n8.image");
    let (txt, _) = fx.get("n8.text");
    let device = Default::default();
    let loss_at = |img: &[f32], scale: f32, lambda: f64| -> f64 {
        let i = Tensor::<Flex, 2>::from_data(TensorData::new(img.to_vec(), [s[0], s[1]]), &device);
        let t = Tensor::<Flex, 2>::from_data(TensorData::new(txt.clone(), [s[0], s[1]]), &device);
        let sc = Tensor::<Flex, 1>::from_floats([scale], &device);
        let w = ContrastiveWeights {
            lambda,
            label_smoothing: 0.0,
        };
        contrastive_loss(i, t, sc, w).unwrap().into_scalar() as f64
    };
    for lambda in [0.5, 0.2] {
        let image = Tensor::<AD, 2>::from_data(TensorData::new(img.clone(), [s[0], s[1]]), &device)
            .require_grad();
        let text = fx.tensor2("n8.text");
        let scale = Tensor::<AD, 1>::from_floats([2.0], &device).require_grad();
        let loss = contrastive_loss(
            image.clone(),
            text,
            scale.clone(),
            ContrastiveWeights {
                lambda,
                label_smoothing: 0.0,
            },
        )
        .unwrap();
        let grads = loss.backward();
        let g = vals(image.grad(&grads).unwrap());
        let h = 1e-2f32;
        for idx in [0, 5, 17, 40, 127] {
            let (mut plus, mut minus) = (img.clone(), img.clone());
            plus[idx] += h;
            minus[idx] -= h;
            let numeric =
                (loss_at(&plus, 2.0, lambda) - loss_at(&minus, 2.0, lambda)) / (2.0 * h as f64);
            assert!(
                (numeric - g[idx] as f64).abs() < 2e-3,
                "λ={lambda} d/dimage[{idx}]: numeric {numeric}, autodiff {}",
                g[idx]
            );
        }
        let numeric =
            (loss_at(&img, 2.0 + h, lambda) - loss_at(&img, 2.0 - h, lambda)) / (2.0 * h as f64);
        let analytic = vals(scale.grad(&grads).unwrap())[0] as f64;
        assert!(
            (numeric - analytic).abs() < 2e-3,
            "λ={lambda} d/dscale: numeric {numeric}, autodiff {analytic}"
        );
    }
}

#[test]
fn bad_batches_are_typed_errors() {
    let device = Default::default();
    let a = Tensor::<Flex, 2>::ones([4, 8], &device);
    let s = Tensor::<Flex, 1>::from_floats([1.0], &device);
    let w = ContrastiveWeights::default();
    assert_eq!(
        contrastive_loss(a.clone(), Tensor::ones([3, 8], &device), s.clone(), w).unwrap_err(),
        LossError::BatchMismatch {
            images: 4,
            texts: 3
        }
    );
    assert_eq!(
        contrastive_loss(a.clone(), Tensor::ones([4, 6], &device), s.clone(), w).unwrap_err(),
        LossError::DimMismatch {
            image_dim: 8,
            text_dim: 6
        }
    );
    let nan = Tensor::<Flex, 2>::from_data(TensorData::new(vec![f32::NAN; 32], [4, 8]), &device);
    assert_eq!(
        contrastive_loss(nan.clone(), a.clone(), s.clone(), w).unwrap_err(),
        LossError::NonFinite("the image embeddings")
    );
    let inf = Tensor::<Flex, 1>::from_floats([f32::INFINITY], &device);
    assert_eq!(
        siglip_loss(a.clone(), a.clone(), inf, s.clone()).unwrap_err(),
        LossError::NonFinite("the logit scale")
    );
    let bad = ContrastiveWeights {
        lambda: 1.5,
        label_smoothing: 0.0,
    };
    assert_eq!(
        contrastive_loss(a.clone(), a.clone(), s.clone(), bad).unwrap_err(),
        LossError::Lambda(1.5)
    );
    assert_eq!(
        contrastive_loss(
            Tensor::ones([0, 8], &device),
            Tensor::ones([0, 8], &device),
            s.clone(),
            w
        )
        .unwrap_err(),
        LossError::EmptyBatch
    );
}

#[test]
fn temperature_clamp() {
    let device = Default::default();
    let t = Tensor::<Flex, 1>::from_floats([-1.0, 2.0, 9.0], &device);
    assert_eq!(
        vals(clamp_logit_scale(t)),
        vec![0.0, 2.0, MAX_LOGIT_SCALE as f32]
    );
}
