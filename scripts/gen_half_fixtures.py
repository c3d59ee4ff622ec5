"""Generates half-precision reference outputs for the tiny fixture models, for bf16/f16 parity tests.

For each fixture model (fixtures/vit_tiny, fixtures/rn_tiny: open_clip; fixtures/hf_tiny:
transformers CLIPModel) the model is loaded from its fixture directory in float32 on CPU, in eval
mode, and run on the *same* `pixel_values` and `text_ids` stored in
fixtures/reference/<model>.safetensors (written by scripts/gen_fixtures.py), under
`torch.inference_mode()` and `torch.autocast("cpu", dtype=...)` for bfloat16 and float16. This is
what PyTorch users get from mixed precision: matmuls / convolutions in the half dtype, reductions
such as layer norm and softmax as autocast's op lists decide.

The outputs follow the f32 references' conventions: raw (unnormalized) `image_embeds` and
`text_embeds`, and `logits_per_image = logit_scale.exp() * normalize(image) @ normalize(text).T`
(the same expression, evaluated under autocast too). All are stored as float32 tensors in one file
per model:

  fixtures/reference/half/<model>.safetensors
      image_embeds_bf16, text_embeds_bf16, logits_per_image_bf16,
      image_embeds_f16,  text_embeds_f16,  logits_per_image_f16
      metadata: torch / open_clip / transformers versions, cpu capability, note "autocast cpu"

It also prints, per model and dtype, the minimum per-row cosine similarity between the autocast
embeddings and the f32 references, whether each row's logits argmax matches the reference, and
which dtypes the Linear / Conv2d layers actually produced (to show autocast ran in half).
No hub access is needed. Run from anywhere:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch open_clip_torch \
        transformers safetensors pillow numpy
    /tmp/torchvenv/bin/python scripts/gen_half_fixtures.py          # or: … gen_half_fixtures.py vit_tiny
"""
import collections
import json
import pathlib
import sys

import open_clip
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
REF = FIX / "reference"
OUT = REF / "half"
torch.set_num_threads(2)

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}


def open_clip_model(name):
    """The open_clip fixtures, with the weights gen_fixtures.py computed its references from."""
    d = FIX / name
    cfg = json.loads((d / "open_clip_config.json").read_text())["model_cfg"]
    model = open_clip.CLIP(**cfg)
    if name == "vit_tiny":
        # stored fp16; gen_fixtures.py computed the references from the fp16-rounded weights in f32
        sd = {k: v.float() for k, v in load_file(d / "open_clip_model.safetensors").items()}
    else:
        # legacy (non-zip) training checkpoint {"state_dict": {"module.…": …}}
        ckpt = torch.load(d / "epoch_3.pt", map_location="cpu", weights_only=False)
        sd = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(sd)
    return model.float().eval()


class HfWrapper:
    """gen_fixtures.py's wrapper: get_image_features / get_text_features (projected, unnormalized)."""

    def __init__(self, model):
        self.model = model
        self.logit_scale = model.logit_scale

    @staticmethod
    def _features(out):
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def encode_image(self, x):
        return self._features(self.model.get_image_features(pixel_values=x))

    def encode_text(self, ids):
        return self._features(self.model.get_text_features(input_ids=ids))


def hf_model(name):
    model = transformers.CLIPModel.from_pretrained(FIX / name, torch_dtype=torch.float32).float().eval()
    return HfWrapper(model), model


def load(name):
    if name == "hf_tiny":
        return hf_model(name)
    m = open_clip_model(name)
    return m, m


def run(model, pixel_values, ids):
    """gen_fixtures.py's reference(): raw embeddings and logit_scale.exp() · n(image) @ n(text)ᵀ."""
    image = model.encode_image(pixel_values)
    text = model.encode_text(ids)
    ni = image / image.norm(dim=-1, keepdim=True)
    nt = text / text.norm(dim=-1, keepdim=True)
    logits = model.logit_scale.exp() * ni @ nt.T
    return image, text, logits


def layer_dtypes(module):
    """Records the output dtypes of the Linear / Conv2d / MultiheadAttention layers while active."""
    seen = collections.Counter()
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.MultiheadAttention)

    def hook(m, _inp, out):
        out = out[0] if isinstance(out, tuple) else out
        seen[f"{type(m).__name__}:{str(out.dtype).removeprefix('torch.')}"] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    return seen, handles


def cosine_rows(a, b):
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def generate(name):
    ref = load_file(REF / f"{name}.safetensors")
    pixel_values, ids = ref["pixel_values"], ref["text_ids"]
    model, module = load(name)

    with torch.inference_mode():
        image, text, logits = run(model, pixel_values, ids)
    sanity = max((image - ref["image_embeds"]).abs().max().item(), (text - ref["text_embeds"]).abs().max().item(),
                 (logits - ref["logits_per_image"]).abs().max().item())
    print(f"{name}: f32 reload vs reference max |Δ| {sanity:.2e}")
    assert sanity < 1e-4, f"{name}: reloaded model does not reproduce the f32 reference"

    out = {}
    for suffix, dtype in DTYPES.items():
        seen, handles = layer_dtypes(module)
        try:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
                image, text, logits = run(model, pixel_values, ids)
        finally:
            for h in handles:
                h.remove()
        raw_dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in (("image", image), ("text", text), ("logits", logits))}
        image, text, logits = image.float(), text.float(), logits.float()
        out[f"image_embeds_{suffix}"] = image.contiguous()
        out[f"text_embeds_{suffix}"] = text.contiguous()
        out[f"logits_per_image_{suffix}"] = logits.contiguous()

        ci = cosine_rows(image, ref["image_embeds"])
        ct = cosine_rows(text, ref["text_embeds"])
        same = (logits.argmax(-1) == ref["logits_per_image"].argmax(-1)).tolist()
        print(f"  {suffix}: min cos image {ci.min():.6f} text {ct.min():.6f} | "
              f"logits max |Δ| {(logits - ref['logits_per_image']).abs().max():.4f} "
              f"(|ref| max {ref['logits_per_image'].abs().max():.2f}) | argmax matches per row {same}")
        print(f"        1-cos max: image {(1 - ci).max():.2e} text {(1 - ct).max():.2e} | "
              f"output dtypes {raw_dtypes} | "
              f"layer outputs {dict(sorted(seen.items()))}")

    with safe_open(REF / f"{name}.safetensors", "pt") as f:
        ref_meta = f.metadata() or {}
    meta = {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "transformers": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "note": "autocast cpu",
        "source": f"fixtures/reference/{name}.safetensors pixel_values and text_ids; scripts/gen_half_fixtures.py",
    }
    for k in ("images", "texts"):
        if k in ref_meta:
            meta[k] = ref_meta[k]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.safetensors"
    save_file(out, path, metadata=meta)
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["vit_tiny", "rn_tiny", "hf_tiny"]:
        generate(name)
