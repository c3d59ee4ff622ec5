"""TorchScript archives made as OpenAI's `clip.load` files were: fixtures for reading them as data.

A small random-init open_clip ViT (QuickGELU, as OpenAI's models) with what OpenAI's files add: weights in
fp16 where OpenAI's `convert_weights` puts them (convolutions, linear and attention weights, the two
projections; open_clip's `convert_weights_to_lp`), and the `input_resolution`, `context_length` and
`vocab_size` buffers that `clip.load` reads with `.item()`. It is traced with `torch.jit.trace_module` for
`forward`, `encode_image` and `encode_text`, as OpenAI's files were, and saved with `torch.jit.save`; the
trace also makes open_clip's non-persistent causal `attn_mask` part of the state dict. A small vocabulary
(512) keeps the file small; the embeddings are checked with token ids directly. All weights are rounded to
fp16 first, so the archive's model computes exactly what the f32 reference model does.

    /tmp/venv/bin/python scripts/gen_torchscript_fixtures.py

Outputs (fixtures/torchscript/):
  vit_openai.pt                  the archive
  vit_openai.json                torch.jit.load(f).state_dict(): key -> dtype, shape, sum of the finite values
                                 (f64; the mask holds -inf);
                                 the versions that made it
  vit_openai_reference.safetensors   pixel_values, text_ids, image_embeds, text_embeds (open_clip, f32)
"""
import copy
import json
import pathlib

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "torchscript"
torch.manual_seed(0)

# in the traced state dict but not learnt: OpenAI's three sizes, and the causal mask
DERIVED = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def vit_openai():
    cfg = {
        "embed_dim": 24,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 1, "layers": 2},
    }
    model = open_clip.CLIP(**cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(np.log(1 / 0.07))
        for p in model.parameters():
            p.copy_(p.half().float())
    reference = copy.deepcopy(model)
    # open_clip keeps the last two as ints; OpenAI's scripted CLIP holds all three as tensors
    del model.context_length, model.vocab_size
    model.register_buffer("input_resolution", torch.tensor(cfg["vision_cfg"]["image_size"]))
    model.register_buffer("context_length", torch.tensor(cfg["text_cfg"]["context_length"]))
    model.register_buffer("vocab_size", torch.tensor(cfg["text_cfg"]["vocab_size"]))

    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    ids = torch.zeros(3, 16, dtype=torch.long)
    for row, length in enumerate([5, 9, 16]):
        ids[row, :length] = torch.randint(1, 510, (length,), generator=g)
        ids[row, 0], ids[row, length - 1] = 510, 511  # start and end tokens: the end one is the largest id
    with torch.no_grad():
        traced = torch.jit.trace_module(
            model, {"forward": (pixels, ids), "encode_image": (pixels,), "encode_text": (ids,)}
        )
    # traced in f32 (the CPU cannot run the mixed fp16 model), stored as OpenAI's are: fp16 where
    # convert_weights puts it (it does not recognise traced modules, so its choice is copied by name)
    low = copy.deepcopy(model)
    open_clip.model.convert_weights_to_lp(low, dtype=torch.float16)
    half = {k for k, v in low.state_dict().items() if v.dtype == torch.float16}
    for name, tensor in [*traced.named_parameters(), *traced.named_buffers()]:
        if name in half:
            tensor.data = tensor.data.half()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "vit_openai.pt"
    torch.jit.save(traced, str(path))

    loaded = torch.jit.load(str(path), map_location="cpu")
    sd = loaded.state_dict()
    listing = {
        k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape), "sum": float(v[v.isfinite()].double().sum())}
        for k, v in sd.items()
    }
    assert set(DERIVED) <= set(sd) and {str(v.dtype) for v in sd.values()} >= {"torch.float16", "torch.float32"}
    with torch.no_grad():
        image = reference.encode_image(pixels)
        text = reference.encode_text(ids)
        # the archive's own weights, in f32, give the same embeddings
        again = copy.deepcopy(reference)
        again.load_state_dict({k: v.float() for k, v in sd.items() if k not in DERIVED})
        assert torch.equal(again.encode_image(pixels), image) and torch.equal(again.encode_text(ids), text)
    spread = torch.cdist(image, image)
    print(f"vit_openai: {len(sd)} tensors, {path.stat().st_size} bytes; image embeds pairwise distance min {spread[spread > 0].min():.3f}")
    save_file(
        {"pixel_values": pixels, "text_ids": ids, "image_embeds": image, "text_embeds": text},
        OUT / "vit_openai_reference.safetensors",
    )
    (OUT / "vit_openai.json").write_text(json.dumps({
        "made_by": {"torch": torch.__version__, "open_clip": open_clip.__version__, "how": "torch.jit.trace_module"},
        "state_dict": listing,
    }, indent=1))


if __name__ == "__main__":
    vit_openai()
