"""Planning at full ImageNet-21K scale: stages 2–4 and 6 on a synthetic index.

    python benchmarks/planning.py [--images 14197122] [--classes 21841]

Builds an in-memory index shaped like fall11 (14.2 M images over 21,841 real wnids from timm's
ImageNet-21K list, ~11.2 k classes above 500 images), then times count-and-filter, the semantic
tree, split-and-plan and the output tables, and reports the peak RSS of the process.
Targets (issue 4): < 10 min in all and < 8 GB peak RSS on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.classes import count_and_filter, drop_duplicate_keys, kept_wnids  # noqa: E402
from pipeline.index import REJECT_SCHEMA  # noqa: E402
from pipeline.plan import plan_samples  # noqa: E402
from pipeline.shards import shard_name  # noqa: E402
from pipeline.tables import build_tables  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_index(n_images: int, n_classes: int, seed: int = 0) -> pa.Table:
    """An index table with fall11's shape: big kept classes and a long tail of small ones."""
    import timm.data

    wnids = (Path(timm.data.__file__).parent / "_info" / "imagenet21k_goog_synsets.txt").read_text().split()
    wnids = sorted(set(wnids))[:n_classes]
    rng = np.random.default_rng(seed)
    n_big = round(len(wnids) * 11221 / 21841)
    big = rng.permutation(len(wnids))[:n_big]
    sizes = rng.integers(1, 501, size=len(wnids))
    sizes[big] = rng.integers(501, 1701, size=n_big)
    sizes = np.maximum(1, (sizes * (n_images / sizes.sum())).astype(np.int64))
    sizes[big] = np.maximum(sizes[big], 501)
    class_of_row = np.repeat(np.arange(len(wnids)), sizes)
    n = len(class_of_row)
    wnid_col = pc.take(pa.array(wnids), pa.array(class_of_row))
    numbers = pc.cast(pa.array(np.arange(n) * 7 % 10**7 + 1), pa.string())  # unique, not in name order
    keys = pc.binary_join_element_wise(wnid_col, numbers, "_")
    members = pc.binary_join_element_wise(keys, pa.array(["JPEG"] * n), ".")
    return pa.table({"key": keys, "wnid": wnid_col, "member": members,
                     "source": pa.array([""] * n, pa.string()),
                     "offset": pa.array(np.arange(n, dtype=np.int64) * 110_000),
                     "size": pa.array(rng.integers(20_000, 200_000, size=n))})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=14_197_122)
    parser.add_argument("--classes", type=int, default=21_841)
    parser.add_argument("--samples-per-shard", type=int, default=5000)
    args = parser.parse_args(argv)
    from hierarchy import SemanticTree

    times = {}
    t0 = time.perf_counter()
    index = synthetic_index(args.images, args.classes)
    times["make synthetic index (not a stage)"] = time.perf_counter() - t0
    print(f"index: {index.num_rows:,} images, {len(set(index.column('wnid').to_pylist())):,} classes, "
          f"rss {peak_rss_gb():.2f} GB")

    def stage(name, fn):
        t = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t
        print(f"{name:<40} {times[name]:8.1f} s   peak rss {peak_rss_gb():.2f} GB", flush=True)
        return out

    index, _ = stage("2a drop duplicate keys", lambda: drop_duplicate_keys(index))
    counts = stage("2b count and filter (min 501)", lambda: count_and_filter(index, 501, lambda w: True))
    wnids = kept_wnids(counts)
    tree = stage("3  semantic tree (wordnet)", lambda: SemanticTree.build(wnids))
    plan = stage("4  split and plan", lambda: plan_samples(index, list(tree.class_list), 50, "first", 0,
                                                          args.samples_per_shard))
    index = None  # free the index before the tables stage
    with tempfile.TemporaryDirectory() as tmp:
        tree_path = Path(tmp) / "tree.json"
        tree.save(tree_path)
        lengths = {}
        for split in ("train", "validation"):
            shards = pc.value_counts(plan.filter(pc.equal(plan.column("split"), split)).column("shard")).to_pylist()
            for r in shards:
                lengths[shard_name(split, r["values"])] = r["counts"]
        summaries = [{"shards": [{"name": k, "num_samples": v, "rejects": []} for k, v in lengths.items()]}]
        built, _ = stage("6  tables", lambda: build_tables(plan, str(tree_path), counts,
                                                           REJECT_SCHEMA.empty_table(), summaries))
    total = sum(v for k, v in times.items() if not k.startswith("make"))
    print(json.dumps({"kept_classes": len(wnids), "train": int(sum(built["classes.parquet"].column("n_train").to_pylist())),
                      "validation": int(sum(built["classes.parquet"].column("n_val").to_pylist())),
                      "stages_total_s": round(total, 1), "peak_rss_gb": round(peak_rss_gb(), 2)}, indent=1))
    print(f"target: < 600 s and < 8 GB -> {'OK' if total < 600 and peak_rss_gb() < 8 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
