"""Data for the trainer's tests: the real pipeline's output on the demo archive, and a small
hand-made tree for unit tests of losses and levels.

``make_dataset(tmp_dir, ...) -> Path`` builds the demo archive (``tools.demo_archive``) and runs
``BuildImageNet21KP`` on it (16 real WordNet classes, 4 levels, images with class signal).
"""
from __future__ import annotations

from pathlib import Path

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


def make_dataset(tmp_dir, *, samples_per_shard: int = 64, seed: int = 0) -> Path:
    """The demo dataset built by the real pipeline (``--min-images 31 --val-per-class 5``)."""
    from pipeline import build_dataset
    from tools.demo_archive import make_archive

    archive = make_archive(Path(tmp_dir) / "demo.tar", seed=seed)
    return build_dataset(archive.path, Path(tmp_dir) / "dataset", min_images=31, val_per_class=5,
                         samples_per_shard=samples_per_shard, shard_tasks=2, convert_tasks=2)
