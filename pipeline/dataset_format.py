"""The dataset on disk, as the pipeline writes it and the trainer reads it: one home for its names.

::

    DIR/_info.json            splits -> shard files and lengths (timm's WebDataset reader format)
    DIR/semantic_tree.json    the class tree (hierarchy.SemanticTree)
    DIR/stats.json            counts, accounting and the build's parameters; DIR/README.md the card
    DIR/labels.parquet, classes.parquet, class_counts.parquet, rejects.parquet
    DIR/train/imagenet21kp-train-000000.tar, ...    DIR/validation/imagenet21kp-validation-000000.tar, ...
        each sample KEY.jpg (the JPEG), KEY.cls (class index, ASCII), KEY.json (wnid, chain, size)
    DIR/_sizes.json           the byte size of every file SHA256SUMS lists but itself
    DIR/SHA256SUMS            sha256 of every other file (``sha256sum -c`` format), written last:
                              a dir without it is not a finished build (:mod:`pipeline.checksums`)

Plain names and two small functions, no heavy imports: ``import trainer`` never loads Luigi.
"""
from __future__ import annotations

import json
from pathlib import Path

DATASET_NAME = "imagenet21kp"
SPLITS = ("train", "validation")
INFO_FILE, TREE_FILE, STATS_FILE, CARD_FILE = "_info.json", "semantic_tree.json", "stats.json", "README.md"
MANIFEST_FILE, SIZES_FILE = "SHA256SUMS", "_sizes.json"
VAL_PAIRS_FILE = "val_near_duplicates.parquet"  # validation images with a near-duplicate in train
TABLE_FILES = ("labels.parquet", "classes.parquet", "rejects.parquet", "class_counts.parquet", VAL_PAIRS_FILE)
IMAGE, LABEL, META = "jpg", "cls", "json"  # the members of a sample


def shard_name(split: str, shard: int) -> str:
    """Relative path of a shard, e.g. ``train/imagenet21kp-train-000042.tar``."""
    return f"{split}/{DATASET_NAME}-{split}-{shard:06d}.tar"


def info_json(shard_lengths: dict[str, int]) -> dict:
    """``_info.json`` for shards ``{relative name: samples}``, in timm's WebDataset format
    (``timm.data.create_dataset('wds/imagenet21kp', root=DIR, split='train')``)."""
    splits = {}
    for split in SPLITS:
        names = sorted(n for n in shard_lengths if n.startswith(f"{split}/"))
        splits[split] = {"name": split, "num_samples": sum(shard_lengths[n] for n in names),
                         "filenames": names, "shard_lengths": [shard_lengths[n] for n in names]}
    return {"name": DATASET_NAME, "splits": splits}


def read_build_parameters(dataset_dir: str | Path) -> dict:
    """The parameters the dataset was built with (``stats.json``), or ``{}`` when it has none."""
    try:
        return json.loads((Path(dataset_dir) / STATS_FILE).read_text())["parameters"]
    except (OSError, ValueError, KeyError):
        return {}
