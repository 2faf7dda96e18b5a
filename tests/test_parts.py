"""pipeline.parts: the intermediate of one convert task, sorted in the global train order."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from pipeline.parts import PartBuilder, part_done, train_order


def test_a_part_lists_validation_first_then_train_in_train_order(tmp_path):
    part = PartBuilder(entries=7, bytes_read=1000)
    keys = [f"n01440764_{i}" for i in range(6)]
    for i, key in enumerate(keys):
        split = "validation" if i in (4, 1) else "train"
        part.add_sample(key, "n01440764", f"{key}.JPEG", split, train_order(0, key) if split == "train" else i,
                        f"jpeg-of-{key}".encode(), 10 + i, 20 + i)
    part.add_class("n01440764", "n01440764.tar", 6, None)
    summary = part.write(tmp_path / "part-00000")
    assert part_done(tmp_path / "part-00000")
    rows = pq.read_table(tmp_path / "part-00000.samples.parquet").to_pylist()
    assert [r["split"] for r in rows] == ["validation"] * 2 + ["train"] * 4
    assert [r["member"] for r in rows[:2]] == ["n01440764_1.JPEG", "n01440764_4.JPEG"]
    train = [r["order"] for r in rows[2:]]
    assert train == sorted(train)
    blob = (tmp_path / "part-00000.bin").read_bytes()
    for r in rows:
        assert blob[r["offset"]:r["offset"] + r["length"]] == f"jpeg-of-{r['key']}".encode()
    assert summary == json.loads((tmp_path / "part-00000.json").read_text())
    assert summary["entries"] == 7 and summary["samples"] == 6


def test_train_order_is_a_seeded_hash():
    assert train_order(0, "k") == train_order(0, "k") != train_order(1, "k")
    assert 0 <= train_order(3, "n01440764_1") < 2 ** 64
