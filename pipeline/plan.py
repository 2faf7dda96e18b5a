"""Stage 4 — split and plan: which images are held out, and which shard every sample goes to.

- Validation: ``val_per_class`` images per class. Rule ``first`` (the released rule) takes the
  first ones in sorted member-name order; rule ``random`` draws them with ``seed``.
- Train samples are shuffled across classes with a seeded permutation, so no train shard holds a
  single class; validation samples stay in class order. Shards hold ``samples_per_shard``
  samples, all equal except the last of each split.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPLITS = ("train", "validation")
VAL_RULES = ("first", "random")


def plan_samples(index: pa.Table, class_list: list[str], val_per_class: int, val_rule: str,
                 seed: int, samples_per_shard: int) -> pa.Table:
    """The plan: index rows of kept classes with ``class_index``, ``split``, ``shard``, ``position``.

    Rows come out in write order: split (train first), shard, position in shard.
    """
    if val_rule not in VAL_RULES:
        raise ValueError(f"val_rule must be one of {VAL_RULES}, not {val_rule!r}")
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be >= 1")
    classes = pa.array(class_list, pa.string())
    kept = index.filter(pc.is_in(index.column("wnid"), value_set=classes))
    kept = kept.sort_by([("wnid", "ascending"), ("member", "ascending")])
    n = kept.num_rows
    class_index = pc.index_in(kept.column("wnid"), value_set=classes).to_numpy(zero_copy_only=False).astype(np.int64)

    # position of each row inside its class, in the order the rule ranks them
    starts = np.flatnonzero(np.r_[True, class_index[1:] != class_index[:-1]]) if n else np.array([], int)
    sizes = np.diff(np.r_[starts, n])
    if val_rule == "first":
        order_in_class = np.arange(n) - np.repeat(starts, sizes)
    else:
        rng = np.random.default_rng([seed, 1])
        rank_key = rng.random(n)
        order = np.lexsort((rank_key, class_index))  # rows grouped by class, random within
        order_in_class = np.empty(n, dtype=np.int64)
        order_in_class[order] = np.arange(n) - np.repeat(starts, sizes)
    is_val = order_in_class < val_per_class

    val_rows = np.flatnonzero(is_val)  # already class order, then name order (or rank) below
    if val_rule == "random":
        val_rows = val_rows[np.lexsort((order_in_class[val_rows], class_index[val_rows]))]
    train_rows = np.flatnonzero(~is_val)
    train_rows = train_rows[np.random.default_rng([seed, 0]).permutation(len(train_rows))]

    parts = []
    for split, rows in (("train", train_rows), ("validation", val_rows)):
        pos = np.arange(len(rows))
        t = kept.take(pa.array(rows, pa.int64()))
        t = t.append_column("class_index", pa.array(class_index[rows], pa.int64()))
        t = t.append_column("split", pa.array([split] * len(rows), pa.string()))
        t = t.append_column("shard", pa.array(pos // samples_per_shard, pa.int64()))
        t = t.append_column("position", pa.array(pos % samples_per_shard, pa.int64()))
        parts.append(t)
    return pa.concat_tables(parts)


def shard_counts(plan: pa.Table) -> dict[str, int]:
    """Number of shards per split in a plan."""
    out = {}
    for split in SPLITS:
        shards = plan.filter(pc.equal(plan.column("split"), split)).column("shard")
        out[split] = (pc.max(shards).as_py() + 1) if len(shards) else 0
    return out
