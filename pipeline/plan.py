"""Stage 2 — plan: the class list, and which shard and position every converted sample goes to.

Made from what actually decoded (the parts of stage 1), so every shard holds exactly
``samples_per_shard`` samples except the last of each split:

- classes are the kept wnids, sorted; a class's index is its position;
- train samples are in :func:`pipeline.parts.train_order` order (a seeded hash of the key, ties by
  key): shuffled across classes, and independent of how the build was split into tasks;
- validation samples are in class order, then member-name order.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset_format import SPLITS

PLAN_COLUMNS = ("split", "shard", "position", "key", "wnid", "class_index", "part", "offset", "length",
                "width", "height")


def kept_wnids(classes: pa.Table) -> list[str]:
    """Sorted wnids of the kept classes (the class list; index = position)."""
    return sorted(set(classes.filter(classes.column("kept")).column("wnid").to_pylist()))


def plan_samples(samples: pa.Table, class_list: list[str], samples_per_shard: int) -> pa.Table:
    """The plan: one row per sample (:data:`PLAN_COLUMNS`), in write order (train first, then
    validation; shard; position).

    ``samples`` are the parts' sample rows with a ``part`` column (the part's number).
    """
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be >= 1")
    classes = pa.array(class_list, pa.string())
    parts = []
    for split, order in (("train", [("order", "ascending"), ("key", "ascending")]),
                         ("validation", [("wnid", "ascending"), ("member", "ascending")])):
        rows = samples.filter(pc.equal(samples.column("split"), split)).sort_by(order)
        pos = np.arange(rows.num_rows, dtype=np.int64)
        rows = rows.append_column("class_index", pc.index_in(rows.column("wnid"), value_set=classes).cast(pa.int64()))
        rows = rows.append_column("shard", pa.array(pos // samples_per_shard))
        rows = rows.append_column("position", pa.array(pos % samples_per_shard))
        parts.append(rows.select(list(PLAN_COLUMNS)))
    plan = pa.concat_tables(parts)
    if plan.column("class_index").null_count:
        raise ValueError("a sample's class is not in the class list")
    return plan


def shard_counts(plan: pa.Table) -> dict[str, int]:
    """Number of shards per split in a plan."""
    out = {}
    for split in SPLITS:
        shards = plan.filter(pc.equal(plan.column("split"), split)).column("shard")
        out[split] = (pc.max(shards).as_py() + 1) if len(shards) else 0
    return out


def shard_sizes(plan: pa.Table) -> list[int]:
    """Rows of each shard in plan order (train shards, then validation shards)."""
    split = plan.column("split").to_numpy(zero_copy_only=False)
    shard = plan.column("shard").to_numpy()
    key = np.where(split == "train", 0, 1) * (1 << 40) + shard
    _, counts = np.unique(key, return_counts=True)  # unique sorts: train shards first, in order
    return counts.tolist()
