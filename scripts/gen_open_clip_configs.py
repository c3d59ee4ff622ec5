"""Bundles open_clip's model configs (open_clip/model_configs/*.json, MIT licensed, as its package ships
them) into configs/open_clip_configs.json, which the library embeds for `Pretrained::load_named` and
`clip info --config NAME`.

    /tmp/venv/bin/python scripts/gen_open_clip_configs.py
"""
import json
import pathlib

import open_clip

ROOT = pathlib.Path(__file__).resolve().parent.parent
source = pathlib.Path(open_clip.__file__).parent / "model_configs"
configs = {p.stem: json.loads(p.read_text()) for p in sorted(source.glob("*.json"))}
out = {
    "source": f"open_clip {open_clip.__version__} model_configs/ (MIT license, Copyright (c) 2012-2021 Gabriel Ilharco, Mitchell Wortsman, Nicholas Carlini, Rohan Taori, Achal Dave, Vaishaal Shankar, John Miller, Hongseok Namkoong, Hannaneh Hajishirzi, Ali Farhadi, Ludwig Schmidt)",
    "configs": configs,
}
(ROOT / "configs" / "open_clip_configs.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
print(f"{len(configs)} configs from open_clip {open_clip.__version__}")
