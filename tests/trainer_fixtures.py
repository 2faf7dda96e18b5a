"""A small dataset in the pipeline's output format, for the trainer's tests.

``make_dataset(tmp_dir, ...) -> Path`` writes ``_info.json``, WebDataset shards of real
224x224 JPEGs (``KEY.cls`` / ``KEY.jpg`` / ``KEY.json``), ``semantic_tree.json`` and
``classes.parquet`` for a 15-class tree of real WordNet ids (three roots, five levels). Each
class paints a shape of its own colour at a random place on a noisy background, so a tiny
network learns every level within a few epochs on CPU.

Swapping in the real pipeline is a one-line change of ``make_dataset``'s body:
``pipeline.build_dataset(pipeline.demo.make_archive(...).path, out, min_images=31,
val_per_class=5, samples_per_shard=...)``.
"""
from __future__ import annotations

import colorsys
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from hierarchy import SemanticTree

# (wnid, parent among these classes, name): the nearest kept ancestor in ImageNet's is_a.txt.
FIXTURE_CLASSES = [
    ("n00015388", None, "animal"),
    ("n01471682", "n00015388", "vertebrate"),
    ("n01503061", "n01471682", "bird"),
    ("n01844917", "n01503061", "aquatic_bird"),
    ("n01858441", "n01844917", "swan"),
    ("n01861778", "n01471682", "mammal"),
    ("n01886756", "n01861778", "placental"),
    ("n02121620", "n01886756", "cat"),
    ("n02512053", "n01471682", "fish"),
    ("n00017222", None, "plant"),
    ("n13104059", "n00017222", "tree"),
    ("n12205694", "n00017222", "herb"),
    ("n00021939", None, "artifact"),
    ("n04341686", "n00021939", "structure"),
    ("n02913152", "n04341686", "building"),
]


def fixture_tree() -> SemanticTree:
    wnids = [w for w, _, _ in FIXTURE_CLASSES]
    parents = {w: p for w, p, _ in FIXTURE_CLASSES}
    names = {w: n for w, _, n in FIXTURE_CLASSES}
    return SemanticTree.from_parents(wnids, parents, names=names)


def class_image(class_index: int, num_classes: int, rng: np.random.Generator,
                size: int = 224) -> bytes:
    """JPEG of a class-coloured disk or square (by class parity) on a noisy grey background."""
    background = rng.integers(70, 186, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    r, g, b = colorsys.hsv_to_rgb(class_index / num_classes, 0.9, 0.95)
    colour = tuple(int(255 * c) for c in (r, g, b))
    radius = int(rng.integers(size // 4, size // 3))
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, size=2))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if class_index % 2 else draw.rectangle)(box, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for key, members in samples:
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(members[ext]), 0, 0o444
                archive.addfile(info, io.BytesIO(members[ext]))


def make_dataset(tmp_dir, *, train_per_class: int = 40, val_per_class: int = 5,
                 samples_per_shard: int = 64, seed: int = 0) -> Path:
    """Write the fixture dataset under ``tmp_dir/dataset`` and return that directory."""
    out = Path(tmp_dir) / "dataset"
    out.mkdir(parents=True, exist_ok=True)
    tree = fixture_tree()
    tree.save(out / "semantic_tree.json")
    rng = np.random.default_rng(seed)
    splits = {"train": [], "validation": []}
    for index, wnid in enumerate(tree.class_list):
        for k in range(train_per_class + val_per_class):
            key = f"{wnid}_{10 + 7 * k}"
            members = {
                "cls": str(index).encode(),
                "jpg": class_image(index, tree.num_classes, rng),
                "json": json.dumps({"class_index": index, "height": 224,
                                    "semantic_chain": list(tree.chain(index)), "width": 224,
                                    "wnid": wnid}, sort_keys=True).encode(),
            }
            splits["train" if k < train_per_class else "validation"].append((key, members))
    order = rng.permutation(len(splits["train"]))
    splits["train"] = [splits["train"][i] for i in order]
    info = {"name": "imagenet21kp", "splits": {}}
    for split, samples in splits.items():
        names, lengths = [], []
        for shard, start in enumerate(range(0, len(samples), samples_per_shard)):
            name = f"{split}/imagenet21kp-{split}-{shard:06d}.tar"
            chunk = samples[start:start + samples_per_shard]
            _write_shard(out / name, chunk)
            names.append(name)
            lengths.append(len(chunk))
        info["splits"][split] = {"name": split, "num_samples": len(samples), "filenames": names,
                                 "shard_lengths": lengths}
    (out / "_info.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    pd.DataFrame({
        "class_index": range(tree.num_classes),
        "wnid": tree.class_list,
        "name": [tree.name(i) for i in range(tree.num_classes)],
        "level": tree.level_of,
        "parent": [tree.class_list[p] if p >= 0 else None for p in tree.parent_of],
        "n_train": train_per_class, "n_val": val_per_class,
    }).to_parquet(out / "classes.parquet", index=False)
    return out
