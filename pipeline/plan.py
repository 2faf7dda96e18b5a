"""Stage 2 — plan: the class list, and which shard and position every converted sample goes to.

Made from what actually decoded (the parts of stage 1), so every shard holds exactly
``samples_per_shard`` samples except the last of each split:

- classes are the kept wnids, sorted; a class's index is its position;
- train samples are in :func:`pipeline.parts.train_order` order (a seeded hash of the key, ties by
  key): shuffled across classes, and independent of how the build was split into tasks;
- validation samples are in class order, then member-name order.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hierarchy.atomic import atomic_write_text, remove_stale_temp_files
from pipeline.contamination import NearDuplicateRule, apply_rule
from pipeline.dataset_format import SPLITS
from pipeline.errors import NothingToBuild, ParameterError
from pipeline.outputs import write_parquet
from pipeline.parts import read_parts

PLAN_COLUMNS = ("split", "shard", "position", "key", "wnid", "class_index", "part", "offset", "length",
                "width", "height")


def plan_dataset(bases: list[str], taxonomy: dict, tree_source: str, samples_per_shard: int, tree_path: Path,
                 plan_path: Path, only_kept_samples: bool = False, why_none: str = "", words_path: str = "",
                 near_duplicates: NearDuplicateRule | None = None) -> tuple:
    """Stage 2 from the parts: write the semantic tree, the shard counts (``PLAN.shards.json``),
    what near-duplicates took (``PLAN.rejects.parquet``, ``PLAN.val_pairs.parquet``,
    ``PLAN.contamination.json``: :func:`pipeline.contamination.apply_rule`) and the plan (last:
    it marks the stage done); return ``(classes, samples planned)``.

    ``only_kept_samples``: drop samples of classes that are not kept (the processed ``.tar.gz``
    lists val images of classes without a train folder). Raises :class:`NothingToBuild` when no
    class is kept (``why_none`` completes the message) and :class:`ParameterError` when a kept
    class has no name in ``words_path``.
    """
    from hierarchy import SemanticTree

    classes = read_parts(bases, "classes")
    class_list = kept_wnids(classes)
    if not class_list:
        most = pc.max(classes.column("n_images")).as_py() or 0
        raise NothingToBuild(why_none.format(most=most))
    unnamed = [w for w in class_list if w not in taxonomy["names"]]
    if unnamed:
        raise ParameterError(f"--words-path {words_path} has no entry for {len(unnamed)} kept class "
                             f"id(s): {', '.join(unnamed[:20])}; give a words.txt that covers them, or none")
    tree = SemanticTree.from_parents(class_list, taxonomy["parents"],
                                     {w: taxonomy["names"][w] for w in class_list}, tree_source)
    tree.save(tree_path)
    samples = pa.concat_tables([_with_part(read_parts([b], "samples"), k) for k, b in enumerate(bases)])
    if only_kept_samples:
        samples = samples.filter(pc.is_in(samples.column("wnid"), value_set=pa.array(class_list)))
    if near_duplicates is not None:
        samples, rejects, pairs, report = apply_rule(samples, near_duplicates)
        for suffix, table in ((".rejects.parquet", rejects), (".val_pairs.parquet", pairs)):
            remove_stale_temp_files(plan_path.with_suffix(suffix))
            write_parquet(table, plan_path.with_suffix(suffix))
        remove_stale_temp_files(plan_path.with_suffix(".contamination.json"))
        atomic_write_text(plan_path.with_suffix(".contamination.json"), json.dumps(report, indent=1, sort_keys=True))
    plan = plan_samples(samples, class_list, samples_per_shard)
    counts_path = plan_path.with_suffix(".shards.json")
    remove_stale_temp_files(counts_path)
    atomic_write_text(counts_path, json.dumps(shard_counts(plan), sort_keys=True))
    write_parquet(plan, plan_path, row_groups=shard_sizes(plan))  # one row group per shard, for the shard tasks
    return len(class_list), plan.num_rows


def _with_part(samples: pa.Table, part: int) -> pa.Table:
    return samples.append_column("part", pa.array([part] * samples.num_rows, pa.int64()))


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
