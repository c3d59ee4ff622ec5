"""A ViT at other resolutions, as open_clip runs one: `resize_pos_embed` (bicubic, antialiased,
`align_corners=False`, class token kept) on the vit_tiny fixture (64 px, patch 16: a 4×4 grid), up to 96 px
(6×6) and down to 48 px (3×3).

    /tmp/venv/bin/python scripts/gen_resize_fixtures.py

Output: fixtures/reference/vit_tiny_resized.safetensors with, per size S in (96, 48): `pos_S` (the
resized positional embedding), `pixels_S` (random N(0, 1) images), `image_S` (open_clip's image embeddings
of them).
"""
import json
import pathlib

import open_clip
import torch
from open_clip.model import resize_pos_embed
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"


def main():
    cfg = json.loads((FIX / "vit_tiny" / "open_clip_config.json").read_text())["model_cfg"]
    weights = {k: v.float() for k, v in load_file(FIX / "vit_tiny" / "open_clip_model.safetensors").items()}
    g = torch.Generator().manual_seed(3)
    out = {}
    for size in (96, 48):
        sized = json.loads(json.dumps(cfg))
        sized["vision_cfg"]["image_size"] = size
        model = open_clip.CLIP(**sized).eval()
        sd = dict(weights)
        resize_pos_embed(sd, model)
        model.load_state_dict(sd)
        pixels = torch.randn(3, 3, size, size, generator=g)
        with torch.no_grad():
            image = model.encode_image(pixels)
        out[f"pos_{size}"] = sd["visual.positional_embedding"].contiguous()
        out[f"pixels_{size}"] = pixels
        out[f"image_{size}"] = image
        spread = torch.cdist(image, image)
        print(f"{size} px: positions {tuple(out[f'pos_{size}'].shape)}, image embeds min distance {spread[spread > 0].min():.3f}")
    save_file(out, FIX / "reference" / "vit_tiny_resized.safetensors",
              metadata={"torch": torch.__version__, "open_clip": open_clip.__version__})


if __name__ == "__main__":
    main()
