"""Checks that transformers and open_clip load what `clip convert` writes and compute the embeddings of
the model it came from (the vit_tiny fixture's references; for SigLIP, the siglip2 fixture's, written as
`SiglipModel` and in open_clip's layout, whose small timm trunk is built by hand as the generator does; for NaFlex,
the hf_siglip2 fixture written back as `Siglip2Model` with its `Siglip2ImageProcessor`). Not run in CI (no Python
there); run by hand:

    cargo build -p clip-cli
    /tmp/venv/bin/python scripts/check_exports.py target/debug/clip
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import open_clip
import torch
import transformers
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def main(clip_bin):
    ref = load_file(FIX / "reference" / "vit_tiny.safetensors")
    pixels, ids = ref["pixel_values"], ref["text_ids"].long()
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ["f32", "f16"]:
            hf_dir = pathlib.Path(tmp) / f"hf-{dtype}"
            subprocess.run([clip_bin, "convert", str(FIX / "vit_tiny"), str(hf_dir), "--to", "hf", "--dtype", dtype], check=True)
            model = transformers.CLIPModel.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
            with torch.no_grad():
                image = model.get_image_features(pixel_values=pixels)
                text = model.get_text_features(input_ids=ids)
            image = getattr(image, "pooler_output", image)
            text = getattr(text, "pooler_output", text)
            print(f"transformers {transformers.__version__} on --to hf --dtype {dtype}: "
                  f"image {rel(image, ref['image_embeds']):.2e}, text {rel(text, ref['text_embeds']):.2e}")
            oc_dir = pathlib.Path(tmp) / f"oc-{dtype}"
            subprocess.run([clip_bin, "convert", str(FIX / "vit_tiny"), str(oc_dir), "--to", "open_clip", "--dtype", dtype], check=True)
            cfg = json.loads((oc_dir / "open_clip_config.json").read_text())["model_cfg"]
            oc = open_clip.CLIP(**cfg).eval()
            oc.load_state_dict({k: v.float() for k, v in load_file(oc_dir / "open_clip_model.safetensors").items()})
            with torch.no_grad():
                image, text = oc.encode_image(pixels), oc.encode_text(ids)
            print(f"open_clip {open_clip.__version__} on --to open_clip --dtype {dtype}: "
                  f"image {rel(image, ref['image_embeds']):.2e}, text {rel(text, ref['text_embeds']):.2e}")


def check_siglip(clip_bin):
    from timm.models.vision_transformer import VisionTransformer
    ref = load_file(FIX / "siglip" / "siglip2" / "reference.safetensors")
    pixels, ids = ref["pixel_values"], ref["text_ids"].long()
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = pathlib.Path(tmp) / "hf"
        subprocess.run([clip_bin, "convert", str(FIX / "siglip" / "siglip2"), str(hf_dir), "--to", "hf"], check=True)
        model = transformers.SiglipModel.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            image = model.get_image_features(pixel_values=pixels)
            text = model.get_text_features(input_ids=ids)
        image = getattr(image, "pooler_output", image)
        text = getattr(text, "pooler_output", text)
        # transformers runs its config's activation: the export names each tower's own
        print(f"transformers {transformers.__version__} SiglipModel on --to hf: "
              f"image {rel(image, ref['image_embeds']):.2e}, text {rel(text, ref['text_embeds']):.2e}")
        oc_dir = pathlib.Path(tmp) / "oc"
        subprocess.run([clip_bin, "convert", str(FIX / "siglip" / "siglip2"), str(oc_dir), "--to", "open_clip"], check=True)
        cfg = json.loads((oc_dir / "open_clip_config.json").read_text())["model_cfg"]
        v = cfg["vision_cfg"]
        oc = open_clip.CustomTextCLIP(embed_dim=cfg["embed_dim"], vision_cfg=v, text_cfg=cfg["text_cfg"],
                                      init_logit_bias=cfg["init_logit_bias"])
        oc.visual.trunk = VisionTransformer(
            img_size=v["image_size"], patch_size=v["patch_size"], embed_dim=v["width"], depth=v["layers"],
            num_heads=v["width"] // v["head_width"], class_token=False, global_pool="map", num_classes=0,
            act_layer="gelu_tanh")
        oc.load_state_dict({k: v.float() for k, v in load_file(oc_dir / "open_clip_model.safetensors").items()})
        oc.eval()
        with torch.no_grad():
            image, text = oc.encode_image(pixels), oc.encode_text(ids)
        print(f"open_clip {open_clip.__version__} on SigLIP --to open_clip: "
              f"image {rel(image, ref['image_embeds']):.2e}, text {rel(text, ref['text_embeds']):.2e}")


def check_siglip2(clip_bin):
    from PIL import Image
    fix = FIX / "siglip" / "hf_siglip2"
    ref = load_file(fix / "reference.safetensors")
    meta = json.loads(open(fix / "reference.safetensors", "rb").read(8 + int.from_bytes(
        open(fix / "reference.safetensors", "rb").read(8), "little"))[8:])["__metadata__"]
    images = [Image.open(ROOT / f).convert("RGB") for f in json.loads(meta["images"])]
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "hf"
        subprocess.run([clip_bin, "convert", str(fix), str(out), "--to", "hf"], check=True)
        model = transformers.Siglip2Model.from_pretrained(out, torch_dtype=torch.float32).eval()
        processor = transformers.AutoImageProcessor.from_pretrained(out)
        inputs = processor(images=images, return_tensors="pt")
        with torch.no_grad():
            image = model.get_image_features(**inputs)
            text = model.get_text_features(input_ids=ref["text_ids"].long())
        image = getattr(image, "pooler_output", image)
        text = getattr(text, "pooler_output", text)
        print(f"transformers {transformers.__version__} Siglip2Model + {type(processor).__name__} on --to hf: "
              f"image {rel(image, ref['image_embeds']):.2e}, text {rel(text, ref['text_embeds']):.2e}")


if __name__ == "__main__":
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "clip")
    main(binary)
    check_siglip(binary)
    check_siglip2(binary)
