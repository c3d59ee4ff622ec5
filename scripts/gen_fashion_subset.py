#!/usr/bin/env python3
"""Writes the Fashion-MNIST subset in fixtures/fashion-mnist/ from the full dataset.

    python3 scripts/gen_fashion_subset.py [/usr/share/datasets/fashion-mnist]

The first TRAIN items of the training split and the first TEST items of the test split, as gzipped IDX
files with the dataset's own names, so `FashionMnist::load` reads the subset and the full set alike.
gzip's header time is zeroed: the same input gives the same bytes.
"""
import gzip
import struct
import sys
from pathlib import Path

TRAIN, TEST = 3000, 1000
source = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
target = Path(__file__).resolve().parent.parent / "fixtures" / "fashion-mnist"


def read(name):
    path = source / f"{name}.gz"
    return gzip.decompress(path.read_bytes()) if path.exists() else (source / name).read_bytes()


def write(name, data):
    with open(target / f"{name}.gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
            out.write(data)


for split, count in (("train", TRAIN), ("t10k", TEST)):
    images = read(f"{split}-images-idx3-ubyte")
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 0x803 and (rows, cols) == (28, 28) and n >= count
    write(f"{split}-images-idx3-ubyte",
          struct.pack(">IIII", magic, count, rows, cols) + images[16:16 + count * 784])
    labels = read(f"{split}-labels-idx1-ubyte")
    magic, n = struct.unpack(">II", labels[:8])
    assert magic == 0x801 and n >= count
    write(f"{split}-labels-idx1-ubyte", struct.pack(">II", magic, count) + labels[8:8 + count])
    print(split, count, "items; classes:", sorted(set(labels[8:8 + count])))
