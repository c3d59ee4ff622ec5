"""Writes crates/clip-zeroshot/data/: OpenAI's prompt templates and class names as plain text, one per
line, `{}` marking the class. Sources: open_clip's zero_shot_metadata (ImageNet names, 80 and 7
templates; MIT) and clip_benchmark's en_zeroshot_classification_templates.json (the 18 CIFAR templates
of OpenAI's prompts.md; MIT). CIFAR-10/100 names are the datasets' labels with `_` read as a space, as
OpenAI's prompts.md writes them.

    /tmp/venv/bin/pip download clip_benchmark --no-deps -d /tmp/cb && (cd /tmp/cb && unzip -o -q *.whl)
    /tmp/venv/bin/python scripts/gen_zeroshot_data.py /tmp/cb
"""
import json
import pathlib
import sys

from open_clip import zero_shot_metadata as meta

out = pathlib.Path(__file__).resolve().parent.parent / "crates/clip-zeroshot/data"
out.mkdir(parents=True, exist_ok=True)
cb = pathlib.Path(sys.argv[1]) / "clip_benchmark/datasets/en_zeroshot_classification_templates.json"

CIFAR10 = "airplane automobile bird cat deer dog frog horse ship truck".split()
CIFAR100 = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
assert len(CIFAR10) == 10 and len(CIFAR100) == 100 and len(set(CIFAR100)) == 100


def write(name, lines):
    (out / name).write_text("\n".join(lines) + "\n")
    print(name, len(lines))


write("imagenet_classes.txt", list(meta.IMAGENET_CLASSNAMES))
write("imagenet_templates.txt", [t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES])
write("imagenet_templates_simple.txt", [t("{}") for t in meta.SIMPLE_IMAGENET_TEMPLATES])
write("cifar_templates.txt", [t.replace("{c}", "{}") for t in json.loads(cb.read_text())["cifar10"]])
write("cifar10_classes.txt", CIFAR10)
write("cifar100_classes.txt", [c.replace("_", " ") for c in CIFAR100])
