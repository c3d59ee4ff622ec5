"""Renders the sample images the README's first command classifies: Fashion-MNIST *test* items (never
trained on) coloured and placed on a 48x48 black canvas as the benchmark does, including held-out
(colour, class) pairs the bundled model never saw in training, and one untouched grayscale item.

    python3 scripts/gen_samples.py   (needs numpy and pillow; reads Debian's dataset-fashion-mnist)
"""
import gzip
import pathlib

import numpy as np
from PIL import Image

SRC = pathlib.Path("/usr/share/datasets/fashion-mnist")
OUT = pathlib.Path(__file__).resolve().parent.parent / "assets/samples"
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
COLOURS = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "purple": (128, 0, 128), "orange": (255, 165, 0), "white": (255, 255, 255)}

images = np.frombuffer(gzip.open(SRC / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
labels = np.frombuffer(gzip.open(SRC / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
OUT.mkdir(parents=True, exist_ok=True)
# (colour, class, size, x, y); blue bag and purple coat are held-out pairs (class c in colour c mod 6)
for colour, cls, size, x, y in [("blue", 8, 36, 6, 6), ("purple", 4, 40, 4, 2), ("red", 7, 30, 14, 16),
                                ("green", 5, 24, 2, 22), ("yellow", 3, 38, 5, 5), ("orange", 0, 32, 10, 8)]:
    index = int(np.nonzero(labels == cls)[0][3])
    item = images[index].astype(np.float32) / 255.0
    rgb = (item[..., None] * np.array(COLOURS[colour], np.float32)).round().astype(np.uint8)
    canvas = Image.new("RGB", (48, 48))
    canvas.paste(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), (x, y))
    canvas.save(OUT / f"{colour}_{CLASSES[cls].replace(' ', '_')}.png")
gray = Image.fromarray(images[int(np.nonzero(labels == 9)[0][0])]).convert("RGB")
gray.save(OUT / "grayscale_ankle_boot.png")
print(sorted(p.name for p in OUT.iterdir()))
