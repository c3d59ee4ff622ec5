"""Generates the reference fixtures under fixtures/ from open_clip and transformers.

Random-init tiny models (no hub access), real photos from scikit-image (CC0 / public domain),
varied texts. Run from the repository root:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch open_clip_torch transformers \
        safetensors pillow scikit-image ftfy
    /tmp/venv/bin/python scripts/gen_fixtures.py            # or: … gen_fixtures.py hf_tiny

Outputs (all small):
  fixtures/images/*            real photos at odd sizes in several formats
  fixtures/preprocess.safetensors   PIL/torchvision/HF resize+crop results (uint8) at 224
  fixtures/vit_tiny/           open_clip dir: QuickGELU ViT, weights stored fp16 (safetensors)
  fixtures/rn_tiny/            open_clip dir: ModifiedResNet, BN stats calibrated on real photos,
                               a legacy-format torch checkpoint {"state_dict": {"module.…": …}}
  fixtures/hf_tiny/            transformers CLIPModel dir with HF preprocessing, ReLU text tower
  fixtures/reference/<model>.safetensors  pixel_values, image_embeds, text_ids, text_embeds,
                               logits_per_image; metadata: the images and texts encoded
  fixtures/reference/gelu.safetensors   PyTorch's CPU GELU and open_clip's QuickGELU on a grid and random inputs
  fixtures/tokenizer_corpus.jsonl   1000+ texts with open_clip's ids
  fixtures/architectures.json  key → shape of open_clip ViT-B-32 and RN50, and parameter counts
"""
import html
import io
import json
import os
import pathlib
import random
import sys

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
IMAGES = FIX / "images"
torch.manual_seed(0)
random.seed(0)
np.random.seed(0)
torch.set_num_threads(2)

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def write_images():
    IMAGES.mkdir(parents=True, exist_ok=True)
    out = {}
    chelsea = Image.fromarray(skdata.chelsea())  # 300x451 cat
    chelsea.save(IMAGES / "chelsea.jpg", quality=92)
    coffee = Image.fromarray(skdata.coffee()).crop((3, 5, 3 + 583, 5 + 397))
    coffee.save(IMAGES / "coffee.png")
    rocket = Image.fromarray(skdata.rocket())  # 427x640
    rocket.save(IMAGES / "rocket.jpg", quality=90)
    astronaut = Image.fromarray(skdata.astronaut()).resize((289, 333), Image.LANCZOS)
    astronaut.save(IMAGES / "astronaut.webp", lossless=True)
    camera = Image.fromarray(skdata.camera()).resize((301, 257), Image.LANCZOS)
    camera.save(IMAGES / "camera_gray.png")
    hubble = np.asarray(skdata.hubble_deep_field())[100:350, 200:517]
    alpha = np.full(hubble.shape[:2] + (1,), 200, dtype=np.uint8)
    Image.fromarray(np.concatenate([hubble, alpha], axis=2), "RGBA").save(IMAGES / "hubble_rgba.png")
    # a palette GIF made from the cat photo (first frame is what is read)
    chelsea.resize((150, 113)).quantize(64).save(IMAGES / "chelsea_palette.gif")
    # 16-bit grayscale and its exact 8-bit twin (v16 = v8 · 257): decoders must agree on them.
    coins = np.asarray(skdata.coins())[:201, :163]
    Image.fromarray(coins).save(IMAGES / "coins8.png")
    Image.fromarray(coins.astype(np.uint16) * 257).save(IMAGES / "coins16.png")
    # not an image, and a truncated one, for error tests
    (IMAGES / "not_an_image.jpg").write_bytes(b"this is a text file, not a JPEG\n")
    raw = (IMAGES / "chelsea.jpg").read_bytes()
    (IMAGES / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    return [
        "chelsea.jpg",
        "coffee.png",
        "rocket.jpg",
        "astronaut.webp",
        "camera_gray.png",
        "hubble_rgba.png",
        "chelsea_palette.gif",
    ]


def load_rgb(name):
    return Image.open(IMAGES / name).convert("RGB")


def preprocess_fixture(names):
    """uint8 results of resize(shortest=224, PIL bicubic) + center crop, both crop conventions."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize
    # transformers 5's default CLIPImageProcessor resizes with torchvision tensors; the PIL backend is
    # the processor CLIP checkpoints were published with (transformers 4) and what PIL users get.
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as CLIPImageProcessor

    tv = [CenterCrop(224)(Resize(224, interpolation=InterpolationMode.BICUBIC)(load_rgb(n))) for n in names]
    hf = CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
        do_rescale=False, do_normalize=False,
    )
    hf_out = hf([load_rgb(n) for n in names], return_tensors="np")["pixel_values"]
    def open_clip_mode(mode):
        t = open_clip.image_transform(224, is_train=False, resize_mode=mode)
        pil_steps = [s for s in t.transforms if type(s).__name__ not in ("MaybeToTensor", "ToTensor", "Normalize")]
        out = []
        for n in names:
            img = load_rgb(n)
            for step in pil_steps:
                img = step(img)
            out.append(np.asarray(img.convert("RGB")))
        return torch.from_numpy(np.stack(out))

    tensors = {
        "open_clip_longest": open_clip_mode("longest"),
        "open_clip_squash": open_clip_mode("squash"),
        "open_clip": torch.from_numpy(np.stack([np.asarray(i) for i in tv])),
        "hf": torch.from_numpy(np.round(hf_out).astype(np.uint8)).permute(0, 2, 3, 1).contiguous(),
    }
    save_file(tensors, FIX / "preprocess.safetensors", metadata={"images": json.dumps(names)})


TEXTS = [
    "a photo of a cat",
    "a diagram",
    "A “curly” café &amp; a ﬁne ＷＩＤＥ dog\tat\nnight 🐶",
    "一只猫坐在桌子上",
    "Спутник на орбите Земли",
    " ".join(["an extremely long caption that keeps going"] * 12),
]


def reference(model, preprocess, tokenize, names, directory, text_fn=None):
    pixel_values = torch.stack([preprocess(load_rgb(n)) for n in names])
    ids = tokenize(TEXTS)
    with torch.no_grad():
        image = model.encode_image(pixel_values)
        text = model.encode_text(ids) if text_fn is None else text_fn(ids)
        ni = image / image.norm(dim=-1, keepdim=True)
        nt = text / text.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * ni @ nt.T
    save_file(
        {
            "pixel_values": pixel_values.contiguous(),
            "image_embeds": image.contiguous(),
            "text_ids": ids.to(torch.int64).contiguous(),
            "text_embeds": text.contiguous(),
            "logits_per_image": logits.contiguous(),
        },
        FIX / "reference" / f"{directory.name}.safetensors",
        metadata={"images": json.dumps(names), "texts": json.dumps(TEXTS, ensure_ascii=False)},
    )
    spread = torch.cdist(ni, ni)
    print(f"{directory.name}: image embeds pairwise distance min {spread[spread > 0].min():.3f}")


ZEROSHOT_CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def zeroshot_reference(model, preprocess, name, names):
    """open_clip's build_zero_shot_classifier with the 18 CIFAR templates, and 100 · logits probabilities."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    templates = [l.rstrip("\n") for l in (ROOT / "crates/clip-zeroshot/data/cifar_templates.txt").read_text().splitlines()]
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        classifier = build_zero_shot_classifier(
            model, tok, ZEROSHOT_CLASSES, templates, num_classes_per_batch=4
        )
        images = torch.stack([preprocess(load_rgb(n)) for n in names])
        features = model.encode_image(images, normalize=True)
        probs = (100.0 * features @ classifier).softmax(dim=-1)
    save_file(
        {"classifier": classifier.contiguous(), "probs": probs.contiguous()},
        FIX / "reference" / f"{name}_zeroshot.safetensors",
        metadata={"images": json.dumps(names), "classes": json.dumps(ZEROSHOT_CLASSES), "templates": "cifar"},
    )
    print(f"{name}: zero-shot top-1 per image {probs.argmax(-1).tolist()}, max prob {probs.max():.3f}")


def gelu_reference():
    """PyTorch's CPU GELU (exact form; ATen's vectorized erf) and open_clip's QuickGELU
    (`x * sigmoid(1.702 * x)`) on a grid over [-10, 10] and on N(0, 2²) samples."""
    from open_clip.transformer import QuickGELU

    g = torch.Generator().manual_seed(11)
    x = torch.cat([torch.linspace(-10, 10, 4001), 2 * torch.randn(4000, generator=g)])
    y = torch.nn.functional.gelu(x)
    quick = QuickGELU()(x)
    meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    tensors = {"x": x.contiguous(), "gelu": y.contiguous(), "quick_gelu": quick.contiguous()}
    save_file(tensors, FIX / "reference" / "gelu.safetensors", metadata=meta)
    print("gelu:", meta)


def loss_reference():
    """open_clip's ClipLoss / SigLipLoss values and gradients, and the λ-weighted form for λ ≠ ½."""
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss, SigLipLoss

    g = torch.Generator().manual_seed(7)
    out = {}
    for n in [8, 1]:
        img = torch.randn(n, 16, generator=g, dtype=torch.float64)
        txt = 0.4 * img + torch.randn(n, 16, generator=g, dtype=torch.float64)
        out[f"n{n}.image"], out[f"n{n}.text"] = img.float(), txt.float()
        cases = {
            "clip": lambda i, t, s: ClipLoss()(F.normalize(i, dim=-1), F.normalize(t, dim=-1), s.exp()),
            "siglip": lambda i, t, s: SigLipLoss()(F.normalize(i, dim=-1), F.normalize(t, dim=-1), s.exp(), bias),
        }
        for lam in [0.3, 0.9]:
            def weighted(i, t, s, lam=lam, smoothing=0.0):
                logits = s.exp() * F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).T
                labels = torch.arange(i.shape[0])
                return lam * F.cross_entropy(logits, labels, label_smoothing=smoothing) + (1 - lam) * F.cross_entropy(
                    logits.T, labels, label_smoothing=smoothing)
            cases[f"lambda{lam}"] = weighted
        cases["smooth0.1"] = lambda i, t, s: ClipLoss()(F.normalize(i, dim=-1), F.normalize(t, dim=-1), s.exp()) * 0 + (
            0.5 * F.cross_entropy(s.exp() * F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).T, torch.arange(i.shape[0]), label_smoothing=0.1)
            + 0.5 * F.cross_entropy(s.exp() * F.normalize(t, dim=-1) @ F.normalize(i, dim=-1).T, torch.arange(i.shape[0]), label_smoothing=0.1))
        for case, fn in cases.items():
            i = img.clone().requires_grad_()
            t = txt.clone().requires_grad_()
            scale = torch.tensor(np.log(10.0) if case == "siglip" else np.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
            bias = torch.tensor(-10.0, dtype=torch.float64, requires_grad=True)
            loss = fn(i, t, scale)
            loss.backward()
            out[f"n{n}.{case}.loss"] = loss.detach().float().reshape(1)
            out[f"n{n}.{case}.grad_image"] = i.grad.float()
            out[f"n{n}.{case}.grad_text"] = t.grad.float()
            out[f"n{n}.{case}.grad_scale"] = scale.grad.float().reshape(1)
            if case == "siglip":
                out[f"n{n}.{case}.grad_bias"] = bias.grad.float().reshape(1)
    save_file({k: v.contiguous() for k, v in out.items()}, FIX / "reference" / "loss.safetensors")
    print("loss: n8 clip", out["n8.clip.loss"].item(), "siglip", out["n8.siglip.loss"].item())


def vit_tiny(names):
    cfg = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    d = FIX / "vit_tiny"
    d.mkdir(parents=True, exist_ok=True)
    model = open_clip.CLIP(**cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(np.log(1 / 0.07))
    # stored fp16 (as OpenAI's files are); references computed from the fp16-rounded weights in f32
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, d / "open_clip_model.safetensors")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    preprocess_cfg = {"size": 64, "mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess_cfg}, indent=2))
    preprocess = open_clip.image_transform(64, is_train=False, mean=MEAN, std=STD)
    tok = open_clip.get_tokenizer("ViT-B-32")
    reference(model, preprocess, tok, names, d)
    zeroshot_reference(model, preprocess, "vit_tiny", names)


def calibrate_batch_norm(model, names):
    """Random BN statistics collapse every image to one embedding; measure real ones on photos."""
    from torchvision.transforms import RandomResizedCrop

    preprocess = open_clip.image_transform(64, is_train=False, mean=MEAN, std=STD)
    crops = []
    for n in names:
        img = load_rgb(n)
        for _ in range(8):
            crops.append(preprocess(RandomResizedCrop(96, scale=(0.3, 1.0))(img)))
    batch = torch.stack(crops)
    for m in model.visual.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.visual.train()
    with torch.no_grad():
        model.visual(batch)
    model.eval()


def rn_tiny(names):
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
    }
    d = FIX / "rn_tiny"
    d.mkdir(parents=True, exist_ok=True)
    model = open_clip.CLIP(**cfg).eval()
    calibrate_batch_norm(model, names)
    with torch.no_grad():
        model.logit_scale.fill_(np.log(1 / 0.07))
    # An open_clip training checkpoint: nested, DDP-prefixed, legacy (non-zip) torch format.
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "name": "rn_tiny", "state_dict": state}, d / "epoch_3.pt",
               _use_new_zipfile_serialization=False)
    preprocess_cfg = {"size": 64, "mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess_cfg}, indent=2))
    preprocess = open_clip.image_transform(64, is_train=False, mean=MEAN, std=STD)
    tok = open_clip.get_tokenizer("RN50")
    reference(model, preprocess, tok, names, d)
    zeroshot_reference(model, preprocess, "rn_tiny", names)


def hf_tiny(names):
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as CLIPImageProcessor

    # its own seed, so this fixture can be regenerated alone; the towers use different activations
    # (ReLU text, GELU image) so both, and the per-tower choice, are checked
    torch.manual_seed(3)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                     "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "relu",
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1},
        vision_config={"hidden_size": 48, "intermediate_size": 192, "num_attention_heads": 3, "num_hidden_layers": 2,
                       "image_size": 48, "patch_size": 12, "hidden_act": "gelu"},
        projection_dim=24,
    )
    d = FIX / "hf_tiny"
    d.mkdir(parents=True, exist_ok=True)
    model = CLIPModel(config).eval()
    # HF inits logit_scale at 2.6592 already; perturb the tower LNs so gains/biases are exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(d, safe_serialization=True)
    processor = CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    processor.save_pretrained(d)

    def preprocess(img):
        return torch.from_numpy(processor(img, return_tensors="np")["pixel_values"][0])

    tok = open_clip.get_tokenizer("ViT-B-32")

    def features(out):
        return out.pooler_output if hasattr(out, "pooler_output") else out

    class Wrapper:
        logit_scale = model.logit_scale

        @staticmethod
        def encode_image(x):
            return features(model.get_image_features(pixel_values=x))

        @staticmethod
        def encode_text(ids):
            return features(model.get_text_features(input_ids=ids))

    reference(Wrapper, preprocess, tok, names, d)


def configs():
    """open_clip's own model configs (MIT) and transformers' default CLIPConfig (= ViT-B/32)."""
    from transformers import CLIPConfig

    d = FIX / "configs"
    d.mkdir(parents=True, exist_ok=True)
    src = pathlib.Path(open_clip.__file__).parent / "model_configs"
    for name in ["ViT-B-32-quickgelu", "RN50-quickgelu", "RN101-quickgelu", "RN50x4", "RN50x64",
                 "ViT-B-16", "ViT-L-14-336", "ViT-H-14", "coca_ViT-B-32", "ViT-B-16-SigLIP"]:
        (d / f"{name}.json").write_text((src / f"{name}.json").read_text())
    CLIPConfig().to_json_file(d / "hf-clip-vit-base-patch32.json")


def architectures():
    out = {}
    for name in ["ViT-B-32-quickgelu", "RN50-quickgelu", "ViT-B-16", "ViT-L-14"]:
        model = open_clip.create_model(name, pretrained=None)
        sd = model.state_dict()
        out[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "shapes": {k: list(v.shape) for k, v in sd.items()},
        }
        del model
    (FIX / "architectures.json").write_text(json.dumps(out))


def corpus_texts():
    """1000+ varied texts: stdlib prose, many scripts, emoji, entities, quotes, ligatures, layout."""
    import pydoc
    import textwrap

    prose = []
    for mod in ["json", "html", "textwrap", "random", "pathlib", "argparse", "logging", "typing",
                "collections", "itertools", "functools", "subprocess", "unittest", "email", "http.client",
                "csv", "sqlite3", "decimal", "fractions", "datetime", "string", "re", "zipfile", "tarfile"]:
        m = __import__(mod, fromlist=["x"])
        for obj in [m] + [getattr(m, a) for a in dir(m) if not a.startswith("_")]:
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str):
                for para in doc.split("\n\n"):
                    para = " ".join(para.split())
                    if 20 < len(para) < 600 and para not in prose:
                        prose.append(para)
    random.shuffle(prose)
    scripts = [
        "Der schnelle braune Fuchs springt über den faulen Hund.",
        "Le cœur a ses raisons que la raison ne connaît point.",
        "¿Dónde está la biblioteca? ¡Está allí, señor!",
        "Ελληνικά: ο γρήγορος καφέ αλεπού ΠΗΔΆΕΙ ΠΆΝΩ ΑΠΌ ΣΚΎΛΟ ΟΔΟΣ",
        "Быстрая коричневая лиса прыгает через ленивую собаку.",
        "日本語のテキスト、カタカナとひらがなと漢字。",
        "ｶﾀｶﾅ ﾊﾝｶｸ ｽﾍﾟｰｽ",
        "한국어 문장은 이렇게 보입니다.",
        "中文句子：一只敏捷的棕色狐狸跳过了懒狗。",
        "עברית: השועל החום המהיר קופץ מעל הכלב העצלן",
        "العربية: الثعلب البني السريع يقفز فوق الكلب الكسول",
        "हिन्दी: तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है",
        "ภาษาไทย สุนัขจิ้งจอกสีน้ำตาล",
        "Tiếng Việt: Con cáo nâu nhanh nhẹn nhảy qua con chó lười.",
        "Türkçe: Hızlı kahverengi tilki tembel köpeğin üzerinden atlar. İstanbul IĞDIR",
        "Polski: Zażółć gęślą jaźń.",
        "Ελληνικό σίγμα στο τέλος: ΟΔΥΣΣΕΥΣ",
        "Emoji: 🐶🐱🐭 👩‍👩‍👧‍👦 🇫🇷 👍🏽 ❤️ 🤖",
        "Maths: ∑ᵢ xᵢ² ≤ ∞, ∀ε>0 ∃δ, √2 ≈ 1.41421356, ½ ¾ ⅞",
        "Digits: ١٢٣ ४५६ ๗๘๙ 0123456789 ①②③ Ⅻ",
        "Ligatures: ﬁnance ﬂower oﬃce baﬄe ﬀ ﬅ ﬆ Ĳssel ǅemal",
        "Fullwidth: ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ！＂＃＄％＆",
        "Quotes: “double” ‘single’ „low“ ‹angle› «guillemets» ‛reversed‟ ʼapostrophe",
        "Dashes – and — and ‒ and ― and … ellipsis",
        "Combining: e\u0301 a\u0308 n\u0303 A\u030a — and Å ñ é precomposed",
        "Zero width: a\u200bb c\u200dd e\ufefff soft\u00adhyphen",
        "Control: a\x07b\x1bc\x7fd \x1b[31mred\x1b[0m text",
        "C1 controls: \x93quoted\x94 \x85 next \x80 euro",
        "NBSP:\u00a0non\u00a0breaking\u2003em\u3000ideographic",
        "Tabs\tand\nnewlines\r\nand\rcarriage\u2028line\u2029para",
        "Special tokens inline: <start_of_text> x <end_of_text> y <|endoftext|>",
        "Contractions: it's we'll they've I'm you'd don't IT'S WE'LL",
        "Code: fn main() { println!(\"{}\", x[0] + y->z); } // <b>bold</b> && ||",
        "URL: https://example.com/path?q=1&lang=en#frag and user@example.org",
        "Currency: $100 €200 £300 ¥400 ₹500 ₿0.01",
    ]
    entities = [
        "Tom &amp; Jerry", "5 &lt; 6 &gt; 4", "&quot;quoted&quot; &apos;single&apos;", "caf&eacute; na&iuml;ve",
        "&copy; 2021 &reg; &trade;", "&#8220;smart&#8221; &#x2018;quotes&#x2019;", "&amp;amp; double", "&ampx &notit; &notin;",
        "&NTILDE; &EACUTE; uppercase", "&#0; &#128; &#x80; &#150;", "&nbsp;&nbsp;spaced", "&hellip; &mdash; &ndash;",
        "<p>Tom &amp; Jerry</p>", "a &lt;b&gt; tag", "&#99999999; big", "&bogus; entity", "& alone", "&#x1F600; grin",
    ]
    texts = prose[:700] + scripts + entities
    # mixtures: prose sprinkled with the special material
    pieces = scripts + entities
    for i in range(300):
        base = prose[(700 + i) % len(prose)]
        words = base.split(" ")
        for _ in range(random.randint(1, 4)):
            words.insert(random.randint(0, len(words)), random.choice(random.choice(pieces).split(" ")))
        t = " ".join(words)
        if i % 5 == 0:
            t = t.replace(" ", random.choice(["\t", "\n", "  ", "\u3000", "\u00a0"]), 3)
        if i % 7 == 0:
            t = t.upper()
        texts.append(t)
    # overlong texts and edge cases
    texts += [" ".join(prose[i: i + 4]) for i in range(0, 40, 4)]
    texts += ["", " ", "\n\t", "a", "!!!", "😀" * 100, "x" * 500, "ab " * 200, "I" * 76, "the " * 75, "the " * 76]
    # random code points from many blocks
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f),
              (0x3040, 0x30ff), (0x4e00, 0x4fff), (0xac00, 0xad00), (0x1f300, 0x1f6ff), (0x2000, 0x206f), (0xff00, 0xffef)]
    for _ in range(120):
        lo, hi = random.choice(blocks)
        texts.append("".join(chr(random.randint(lo, hi)) for _ in range(random.randint(1, 30))))
    return texts


def tokenizer_corpus():
    import ftfy

    tok = open_clip.get_tokenizer("ViT-B-32")
    texts = corpus_texts()
    lines = []
    mojibake = 0
    for t in texts:
        ids = tok([t])[0].tolist()
        while ids and ids[-1] == 0:
            ids.pop()
        # ftfy's fix_encoding (mojibake repair) is not reproduced; mark the texts it changes.
        changed = ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)
        mojibake += changed
        lines.append(json.dumps({"text": t, "ids": ids, "ftfy_fix_encoding": changed}, ensure_ascii=False))
    (FIX / "tokenizer_corpus.jsonl").write_text("\n".join(lines) + "\n")
    print(f"tokenizer corpus: {len(texts)} texts, {mojibake} changed by ftfy.fix_encoding")


if __name__ == "__main__":
    (FIX / "reference").mkdir(parents=True, exist_ok=True)
    names = write_images()
    steps = {
        "preprocess": lambda: preprocess_fixture(names),
        "vit_tiny": lambda: vit_tiny(names),
        "rn_tiny": lambda: rn_tiny(names),
        "hf_tiny": lambda: hf_tiny(names),
        "loss": loss_reference,
        "gelu": gelu_reference,
        "architectures": architectures,
        "configs": configs,
        "tokenizer_corpus": tokenizer_corpus,
    }
    # `gen_fixtures.py hf_tiny` regenerates one fixture (only those with their own seed give the
    # same bytes alone as in a full run: hf_tiny, loss and the deterministic ones)
    for name in sys.argv[1:] or list(steps):
        steps[name]()
