#!/usr/bin/env python3
"""JPEG decoding fixtures: JPEG files in the layouts photos come in, and PIL's decoding of each.

    python3 -m venv /tmp/pil && /tmp/pil/bin/pip install pillow
    /tmp/pil/bin/python scripts/gen_jpeg_fixtures.py

Writes fixtures/jpeg/<name>.jpg (encoded here by PIL from crops of the fixture photos, at odd sizes so
the upsampling's edge columns count) and fixtures/jpeg/<name>.png: what PIL's libjpeg-turbo decodes
from each (`Image.open(f).convert("RGB")`), stored losslessly. The two fixture photos themselves get
a .png of PIL's decoding too. tests/images.rs asserts our decoder gives these bytes exactly.

PIL cannot write arithmetic-coded JPEGs: `arithmetic_420.jpg` is `baseline_420_q75.jpg` transcoded
losslessly by libjpeg-turbo's `jpegtran -arithmetic` (Debian's libjpeg-turbo-progs; set JPEGTRAN to
its path if it is not on PATH).
"""
import json
import os
import pathlib
import shutil
import subprocess

from PIL import Image, features

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fixtures" / "jpeg"
out.mkdir(parents=True, exist_ok=True)

chelsea = Image.open(root / "fixtures/images/chelsea.jpg").convert("RGB")
rocket = Image.open(root / "fixtures/images/rocket.jpg").convert("RGB")

# name: (source crop, mode, save options)
variants = {
    "baseline_420_q75": (chelsea.crop((120, 40, 221, 107)), "RGB", dict(quality=75)),
    "baseline_444_q92": (chelsea.crop((200, 90, 297, 151)), "RGB", dict(quality=92, subsampling=0)),
    "baseline_422_q80": (rocket.crop((290, 120, 367, 173)), "RGB", dict(quality=80, subsampling=1)),
    "progressive_420": (rocket.crop((150, 300, 263, 381)), "RGB", dict(quality=85, progressive=True)),
    "progressive_444_optimized": (
        chelsea.crop((10, 150, 99, 233)), "RGB",
        dict(quality=88, subsampling=0, progressive=True, optimize=True)),
    "grayscale_q85": (rocket.crop((250, 250, 339, 317)), "L", dict(quality=85)),
    "baseline_420_q100": (chelsea.crop((300, 10, 365, 90)), "RGB", dict(quality=100)),
    "restart_markers_420": (rocket.crop((0, 400, 121, 465)), "RGB", dict(quality=70, restart_marker_blocks=4)),
    "tiny_3x5": (chelsea.crop((200, 100, 203, 105)), "RGB", dict(quality=90)),
}

manifest = {"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"), "files": []}
for name, (image, mode, options) in variants.items():
    path = out / f"{name}.jpg"
    image.convert(mode).save(path, "JPEG", **options)
    Image.open(path).convert("RGB").save(out / f"{name}.png")
    manifest["files"].append(name)
jpegtran = os.environ.get("JPEGTRAN") or shutil.which("jpegtran")
if jpegtran is None:
    raise SystemExit("jpegtran not found (package libjpeg-turbo-progs): it writes arithmetic_420.jpg")
subprocess.run([jpegtran, "-arithmetic", "-outfile", str(out / "arithmetic_420.jpg"),
                str(out / "baseline_420_q75.jpg")], check=True)
Image.open(out / "arithmetic_420.jpg").convert("RGB").save(out / "arithmetic_420.png")
manifest["files"].append("arithmetic_420")
for name in ("chelsea", "rocket"):
    Image.open(root / f"fixtures/images/{name}.jpg").convert("RGB").save(out / f"{name}.png", optimize=True)
    manifest["files"].append(name)
(out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(manifest)
