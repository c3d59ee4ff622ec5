"""Small random-init SigLIP models in open_clip's layout (a timm `vit_*_siglip_*` image trunk, a custom
text tower), with reference outputs from open_clip itself.

    /tmp/venv/bin/python scripts/gen_siglip_fixtures.py

No checkpoint or vocabulary can be downloaded here, so:
- the image trunk is timm's own `VisionTransformer` built as its SigLIP models are (no class token,
  `global_pool='map'`, LayerNorm eps 1e-6), only small; open_clip builds the named full-size one and the
  trunk is swapped for it. The config keeps the timm name and states the small sizes (`width`, `layers`,
  `head_width`, `patch_size`), which open_clip ignores for timm towers and this library reads;
- the tokenizer is a small SentencePiece-style (Unigram, `</s>` appended, no start token, `<pad>` padding)
  `tokenizer.json` trained with the `tokenizers` package on fixtures/tokenizer_corpus.jsonl, run through
  open_clip's `HFTokenizer` with SigLIP's `clean: canonicalize`.

Outputs, per model under fixtures/siglip/<name>/: open_clip_config.json, open_clip_model.safetensors,
tokenizer.json, tokenizer_config.json, reference.safetensors (pixel_values, text_ids, image_embeds,
text_embeds, logits_per_image; metadata `texts`).
  siglip   SigLIP 1: exact GELU in both towers (as `vit_base_patch16_siglip_224`)
  siglip2  SigLIP 2: tanh GELU in both towers (as `vit_base_patch32_siglip_256`, `act_kwargs`)
and under fixtures/siglip/hf_siglip/ the same kind of model in transformers' layout (`SiglipModel.save_pretrained`:
config.json, model.safetensors; a SiglipImageProcessor preprocessor_config.json; siglip's tokenizer files), with
reference.safetensors from transformers (`get_image_features`, `get_text_features` of the open_clip tokenizer's ids,
and the logits), and resized.safetensors: image features at 48 and 24 px with `interpolate_pos_encoding=True`
(the position grid resized by bicubic `F.interpolate`, `align_corners=False`); under fixtures/siglip/hf_siglip2/ a
transformers `Siglip2Model` (NaFlex) with its Siglip2ImageProcessor, run on four image files of different aspect ratios.
Arguments name the fixtures to (re)generate (default: all; the tokenizer training is not deterministic).
"""
import shutil
import json
import pathlib

import open_clip
import timm
import torch
import transformers
from open_clip.tokenizer import HFTokenizer
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "siglip"
TEXTS = [
    "a photo of a cat",
    "A Photo Of A Dog!",
    "two   birds, sitting on a wire; the sky is grey.",
    "Logging package for Python. Based on PEP 282 and comments thereto in comp.lang.python, and much more",
]


def train_tokenizer(d):
    texts = [json.loads(l)["text"] for l in (ROOT / "fixtures" / "tokenizer_corpus.jsonl").read_text().split("\n") if l.strip()]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=1500, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    d.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(d)
    for extra in ["special_tokens_map.json"]:
        (d / extra).unlink(missing_ok=True)
    return tok.get_vocab_size()


def randomize_norms(module, g):
    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))


def siglip(name, timm_name, tanh, seed):
    d = OUT / name
    vocab = train_tokenizer(d)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    width, context = 64, 16
    vision_cfg = {"image_size": 32, "timm_model_name": timm_name, "timm_model_pretrained": False, "timm_pool": "map",
                  "timm_proj": "none", "width": width, "layers": 2, "head_width": 32, "patch_size": 8}
    text_cfg = {"context_length": context, "vocab_size": 2048, "width": 32, "heads": 2, "layers": 2,
                "hf_tokenizer_name": "timm/ViT-B-16-SigLIP", "tokenizer_kwargs": {"clean": "canonicalize"},
                "no_causal_mask": True, "pool_type": "last", "proj_bias": True, "norm_kwargs": {"eps": 1e-6}}
    if tanh:
        text_cfg["act_kwargs"] = {"approximate": "tanh"}
    cfg = {"embed_dim": width, "init_logit_bias": -10, "custom_text": True, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    assert vocab <= text_cfg["vocab_size"], vocab
    model = open_clip.CustomTextCLIP(embed_dim=width, vision_cfg=vision_cfg, text_cfg=text_cfg, init_logit_bias=-10)
    model.visual.trunk = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=width, depth=2, num_heads=2, class_token=False, global_pool="map",
        num_classes=0, act_layer="gelu_tanh" if tanh else None)
    with torch.no_grad():
        randomize_norms(model, g)
        model.visual.trunk.attn_pool.latent.normal_(0.0, 1.0, generator=g)
        model.visual.trunk.pos_embed.normal_(0.0, 0.5, generator=g)
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-3.7)
    model.eval()
    tokenizer = HFTokenizer(str(d), context_length=context, clean="canonicalize")
    ids = tokenizer(TEXTS)
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(ids)
        i, t = torch.nn.functional.normalize(image, dim=-1), torch.nn.functional.normalize(text, dim=-1)
        logits = model.logit_scale.exp() * i @ t.T + model.logit_bias
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "open_clip_model.safetensors")
    preprocess = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "resize_mode": "squash"}
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=2))
    save_file({"pixel_values": pixels, "text_ids": ids, "image_embeds": image, "text_embeds": text, "logits_per_image": logits},
              d / "reference.safetensors",
              metadata={"torch": torch.__version__, "open_clip": open_clip.__version__, "timm": timm.__version__, "texts": json.dumps(TEXTS)})
    spread = torch.cdist(image, image)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, vocabulary {vocab}, ids {ids.tolist()}, "
          f"image embeds min distance {spread[spread > 0].min():.3f}, logits {logits.tolist()}")


def hf_siglip(seed):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel
    d = OUT / "hf_siglip"
    d.mkdir(parents=True, exist_ok=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(OUT / "siglip" / f, d / f)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = SiglipConfig(
        text_config=dict(vocab_size=2048, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, projection_size=48, pad_token_id=0, bos_token_id=None, eos_token_id=1),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                           patch_size=8))
    model = SiglipModel(cfg)
    with torch.no_grad():
        randomize_norms(model, g)
        model.vision_model.head.probe.normal_(0.0, 1.0, generator=g)
        model.logit_scale.fill_(2.1)
        model.logit_bias.fill_(-2.9)
    model.eval()
    model.save_pretrained(d)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    tokenizer = HFTokenizer(str(d), context_length=16, clean="canonicalize")
    ids = tokenizer(TEXTS)
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels)
        text = model.get_text_features(input_ids=ids)
        image = getattr(image, "pooler_output", image)
        text = getattr(text, "pooler_output", text)
        logits = model(input_ids=ids, pixel_values=pixels).logits_per_image
    resized = {}
    for size in [48, 24]:
        px = torch.randn(2, 3, size, size, generator=g)
        with torch.no_grad():
            out = model.get_image_features(pixel_values=px, interpolate_pos_encoding=True)
        resized[f"pixel_values_{size}"] = px
        resized[f"image_embeds_{size}"] = getattr(out, "pooler_output", out).contiguous()
    save_file(resized, d / "resized.safetensors", metadata={"torch": torch.__version__, "transformers": transformers.__version__})
    save_file({"pixel_values": pixels, "text_ids": ids, "image_embeds": image.contiguous(), "text_embeds": text.contiguous(),
               "logits_per_image": logits.contiguous()}, d / "reference.safetensors",
              metadata={"torch": torch.__version__, "transformers": transformers.__version__, "texts": json.dumps(TEXTS)})
    spread = torch.cdist(image, image)
    print(f"hf_siglip: {sum(p.numel() for p in model.parameters())} parameters, files {sorted(p.name for p in d.iterdir())}, "
          f"image embeds min distance {spread[spread > 0].min():.3f}, logits {logits.tolist()}")


def gemma_style_tokenizer(d):
    """A small tokenizer.json built as Gemma's (SigLIP 2's) is: BPE with byte fallback over text whose spaces became
    `▁`, split after each space, `<bos> … <eos>` added. transformers' Siglip2Tokenizer rebuilds exactly this pipeline from
    the file's vocabulary and merges and puts a lowercasing in front; the saved tokenizer_config.json pads on the right,
    as SigLIP 2 was trained (the class's own default is the left)."""
    texts = [json.loads(l)["text"] for l in (ROOT / "fixtures" / "tokenizer_corpus.jsonl").read_text().split("\n") if l.strip()]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator([t.lower() for t in texts], trainers.BpeTrainer(vocab_size=2000, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                                unk_token="<unk>", padding_side="right")
    fast.save_pretrained(d)
    (d / "special_tokens_map.json").unlink(missing_ok=True)
    return tok.get_vocab_size()


def hf_siglip2(seed):
    """transformers' `Siglip2Model` (NaFlex): each image resized to its own patch grid (aspect ratio kept, at most
    `max_num_patches`), patches flattened in (row, column, channel) order through a Linear, the 4×4 position grid
    resized per image (bilinear, antialiased). The batch is padded and masked as the processor returns it. Both image
    processors run: the default (torchvision) one and the PIL one (`pixel_values_pil`, `image_embeds_pil`); their
    resizes of 8-bit images differ by up to one level."""
    from PIL import Image
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil
    d = OUT / "hf_siglip2"
    d.mkdir(parents=True, exist_ok=True)
    gemma_style_tokenizer(d)
    # a panorama whose 2-row grid shrinks the 4-row position grid (the antialiased case)
    Image.open(ROOT / "fixtures" / "images" / "chelsea.jpg").convert("RGB").crop((60, 100, 360, 160)).save(d / "wide.png")
    files = [ROOT / "fixtures" / "images" / n for n in ["chelsea.jpg", "rocket.jpg", "camera_gray.png"]] + [d / "wide.png"]
    images = [Image.open(f).convert("RGB") for f in files]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = Siglip2Config(
        text_config=dict(vocab_size=2048, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, projection_size=48, pad_token_id=0, bos_token_id=2, eos_token_id=1),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2, num_patches=16,
                           patch_size=8))
    model = Siglip2Model(cfg)
    with torch.no_grad():
        randomize_norms(model, g)
        model.vision_model.head.probe.normal_(0.0, 1.0, generator=g)
        model.vision_model.embeddings.position_embedding.weight.normal_(0.0, 0.5, generator=g)
        model.logit_scale.fill_(2.1)
        model.logit_bias.fill_(-2.9)
    model.eval()
    model.save_pretrained(d)
    processor = Siglip2ImageProcessor(patch_size=8, max_num_patches=24)
    processor.save_pretrained(d)
    inputs = processor(images=images, return_tensors="pt")
    pil = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=24)(images=images, return_tensors="pt")
    # transformers' own text pipeline: AutoTokenizer gives its Siglip2Tokenizer (the tokenizer.json's BPE, lowercased)
    tokenizer = transformers.AutoTokenizer.from_pretrained(d)
    assert type(tokenizer).__name__ == "Siglip2Tokenizer", type(tokenizer)
    ids = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        image = model.get_image_features(**inputs)
        image_pil = model.get_image_features(**pil)
        image_pil = getattr(image_pil, "pooler_output", image_pil)
        text = model.get_text_features(input_ids=ids)
        image = getattr(image, "pooler_output", image)
        text = getattr(text, "pooler_output", text)
        logits = model(input_ids=ids, **inputs).logits_per_image
    save_file({"pixel_values": inputs["pixel_values"].contiguous(), "pixel_values_pil": pil["pixel_values"].contiguous(),
               "spatial_shapes": inputs["spatial_shapes"].contiguous(), "pixel_attention_mask": inputs["pixel_attention_mask"].contiguous(),
               "text_ids": ids, "image_embeds": image.contiguous(), "image_embeds_pil": image_pil.contiguous(),
               "text_embeds": text.contiguous(), "logits_per_image": logits.contiguous()}, d / "reference.safetensors",
              metadata={"torch": torch.__version__, "transformers": transformers.__version__, "texts": json.dumps(TEXTS),
                        "images": json.dumps([str(f.relative_to(ROOT)) for f in files])})
    spread = torch.cdist(image, image)
    print(f"hf_siglip2: {sum(p.numel() for p in model.parameters())} parameters, spatial shapes {inputs['spatial_shapes'].tolist()}, "
          f"torchvision vs PIL pixels max |diff| {(inputs['pixel_values'] - pil['pixel_values']).abs().max():.4f}, "
          f"image embeds min distance {spread[spread > 0].min():.3f}, torchvision vs PIL pixels: image embeds max |diff| "
          f"{(image - image_pil).abs().max():.2e}, logits {logits.tolist()}")


if __name__ == "__main__":
    import sys
    only = sys.argv[1:]
    if not only or "siglip" in only:
        siglip("siglip", "vit_base_patch16_siglip_224", False, 21)
    if not only or "siglip2" in only:
        siglip("siglip2", "vit_base_patch32_siglip_256", True, 22)
    if not only or "hf_siglip" in only:
        hf_siglip(23)
    if not only or "hf_siglip2" in only:
        hf_siglip2(24)
