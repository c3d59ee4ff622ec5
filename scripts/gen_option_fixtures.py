"""open_clip model options beyond the plain towers, one small random-init model each, with reference
embeddings from open_clip itself. A 512-token vocabulary keeps the files small (texts are given as ids).

    /tmp/venv/bin/python scripts/gen_option_fixtures.py

Outputs, per model under fixtures/options/<name>/: open_clip_config.json, open_clip_model.safetensors
(f32), reference.safetensors (pixel_values, text_ids, image_embeds, text_embeds).
  vit_ls    layer scale in the image tower (`ls_init_value`, as ViT-M-16-alt), the gains drawn at random
            so that a model that ignored them would differ
  vit_avg   patch-average pooling (`pool_type: avg`), `ln_post` on every token before it
  vit_clipa CLIPA's image tower: no `ln_pre`, average pooling, `ln_post` after pooling
            (`no_ln_pre`, `pool_type: avg`, `final_ln_after_pool`)
  text_last bidirectional text attention pooled at the last position (`no_causal_mask`,
            `pool_type: last`: CLIPA's and SigLIP's text side)
  text_eos  text pooled at the first `eos_id` token (`pool_type: eos`, as the worldwide MetaCLIP 2
            configs), which is not the largest id here
  text_noproj  a text tower without a projection (`proj_type: none`, as ViT-SO400M-16-SigLIP-i18n-256),
            as wide as the embedding
  hf_clipa  CLIPA's text side end to end from *texts*: a Hugging Face tokenizer (`hf_tokenizer_name`,
            here the small WordPiece of fixtures/hf_tokenizer/bert_tiny, copied beside the weights as a
            downloaded model has it) with `strip_sep_token`, bidirectional attention, last-position pooling
  hf_eos    the worldwide configs' text side from texts: the same tokenizer with `clean: canonicalize`,
            causal attention pooled at `eos_id` (the tokenizer's [SEP])
The hf_* references also hold `texts` (JSON, in the metadata) and open_clip's `HFTokenizer` ids of them.
"""
import shutil
import json
import pathlib

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "options"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def inputs(image_size, context, vocab, seed, end=None):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(3, 3, image_size, image_size, generator=g)
    ids = torch.zeros(3, context, dtype=torch.long)
    end = vocab - 1 if end is None else end
    for row, length in enumerate([4, 7, context]):
        ids[row, :length] = torch.randint(10, vocab - 2, (length,), generator=g)
        ids[row, 0], ids[row, length - 1] = vocab - 2, end
    return pixels, ids


def write(name, cfg, model, seed):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model.logit_scale.fill_(np.log(1 / 0.07))
    model.eval()
    pixels, ids = inputs(cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"], seed,
                         cfg["text_cfg"].get("eos_id") if cfg["text_cfg"].get("pool_type") == "eos" else None)
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(ids)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "open_clip_model.safetensors")
    preprocess = {"size": cfg["vision_cfg"]["image_size"], "mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=2))
    save_file({"pixel_values": pixels, "text_ids": ids, "image_embeds": image, "text_embeds": text}, d / "reference.safetensors",
              metadata={"torch": torch.__version__, "open_clip": open_clip.__version__})
    spread = torch.cdist(image, image)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, image embeds min distance {spread[spread > 0].min():.3f}")


def vit_ls():
    torch.manual_seed(11)
    cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "ls_init_value": 1e-4},
        "text_cfg": {"context_length": 12, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
    }
    model = open_clip.CLIP(**cfg)
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            block.ls_1.gamma.normal_(0.0, 0.5)
            block.ls_2.gamma.normal_(0.0, 0.5)
    write("vit_ls", cfg, model, 5)


def vit_pooled(name, options, seed):
    torch.manual_seed(seed)
    cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8, **options},
        "text_cfg": {"context_length": 12, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
    }
    model = open_clip.CLIP(**cfg)
    with torch.no_grad():
        # random norm parameters, so that where a LayerNorm sits makes a difference
        ln = model.visual.ln_post
        ln.weight.normal_(1.0, 0.5)
        ln.bias.normal_(0.0, 0.5)
    write(name, cfg, model, seed)


def text_options(name, options, seed):
    torch.manual_seed(seed)
    cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 12, "vocab_size": 512, "width": 32, "heads": 2, "layers": 2, **options},
    }
    write(name, cfg, open_clip.CLIP(**cfg), seed)


TEXTS = [
    "a photo of a cat",
    "A Photo Of A Dog!",
    "two   birds, sitting on a wire; the sky is grey.",
    "Logging package for Python. Based on PEP 282 and comments thereto in comp.lang.python, and much more text than fits",
]


def hf_text(name, options, tokenizer_kwargs, seed):
    """A model whose text tower reads a Hugging Face tokenizer's ids, with references computed from texts."""
    from open_clip.tokenizer import HFTokenizer

    torch.manual_seed(seed)
    tok_dir = ROOT / "fixtures" / "hf_tokenizer" / "bert_tiny"
    context = 16
    cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": context, "vocab_size": 2048, "width": 32, "heads": 2, "layers": 2,
                     "hf_tokenizer_name": "bert-base-uncased", "tokenizer_kwargs": tokenizer_kwargs, **options},
    }
    model = open_clip.CLIP(**cfg)
    tokenizer = HFTokenizer(str(tok_dir), context_length=context, **tokenizer_kwargs)
    ids = tokenizer(TEXTS)
    d = OUT / name
    write(name, cfg, model, seed)
    with torch.no_grad():
        text = model.encode_text(ids)
    ref = d / "reference.safetensors"
    from safetensors.torch import load_file
    tensors = load_file(ref)
    tensors.update({"hf_text_ids": ids, "hf_text_embeds": text})
    save_file(tensors, ref, metadata={"torch": torch.__version__, "open_clip": open_clip.__version__, "texts": json.dumps(TEXTS)})
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(tok_dir / f, d / f)
    spread = torch.cdist(text, text)
    print(f"{name}: ids {ids.tolist()}, text embeds min distance {spread[spread > 0].min():.3f}")


if __name__ == "__main__":
    text_options("text_noproj", {"proj_type": "none", "width": 24}, 18)
    hf_text("hf_clipa", {"no_causal_mask": True, "pool_type": "last"}, {"strip_sep_token": True}, 16)
    hf_text("hf_eos", {"pool_type": "eos", "eos_id": 3}, {"clean": "canonicalize"}, 17)
    text_options("text_last", {"no_causal_mask": True, "pool_type": "last"}, 14)
    text_options("text_eos", {"pool_type": "eos", "eos_id": 7}, 15)
    vit_ls()
    vit_pooled("vit_avg", {"pool_type": "avg"}, 12)
    vit_pooled("vit_clipa", {"pool_type": "avg", "no_ln_pre": True, "final_ln_after_pool": True}, 13)
