"""pipeline.plan: exact shard sizes from what decoded, independent of how the work was split."""
from __future__ import annotations

import random

import pyarrow as pa

from pipeline.parts import SAMPLE_SCHEMA, train_order
from pipeline.plan import kept_wnids, plan_samples, shard_counts, shard_sizes

CLASSES = ["n00000001", "n00000002", "n00000003"]


def samples(n_parts: int, seed: int = 0) -> pa.Table:
    rows = []
    rng = random.Random(seed)
    for c, wnid in enumerate(CLASSES):
        for i in range(30 + 7 * c):
            key = f"{wnid}_{i}"
            split = "validation" if i < 3 else "train"
            rows.append(dict(key=key, wnid=wnid, member=key + ".JPEG", split=split,
                             order=train_order(0, key) if split == "train" else i, offset=0, length=1,
                             width=1, height=1, part=rng.randrange(n_parts)))
    schema = SAMPLE_SCHEMA.append(pa.field("part", pa.int64()))
    return pa.Table.from_pylist(rows, schema=schema)


def test_every_shard_is_full_but_the_last_of_each_split():
    plan = plan_samples(samples(3), CLASSES, samples_per_shard=16)
    counts = shard_counts(plan)
    assert counts == {"train": 7, "validation": 1}  # 102 train samples, 9 validation
    sizes = shard_sizes(plan)
    assert sizes == [16] * 6 + [6] + [9]
    val = plan.filter(pa.compute.equal(plan.column("split"), "validation")).to_pylist()
    assert [r["wnid"] for r in val] == sorted(r["wnid"] for r in val)
    assert [r["class_index"] for r in val][:3] == [0, 0, 0]


def test_the_plan_does_not_depend_on_the_partition():
    a = plan_samples(samples(2, seed=1), CLASSES, 16).drop_columns(["part"]).to_pylist()
    b = plan_samples(samples(5, seed=2), CLASSES, 16).drop_columns(["part"]).to_pylist()
    assert a == b


def test_kept_wnids_are_sorted_and_unique():
    table = pa.table({"wnid": ["n3", "n1", "n2", "n1"], "kept": [True, True, False, True]})
    assert kept_wnids(table) == ["n1", "n3"]
