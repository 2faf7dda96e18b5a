"""Planning at full ImageNet-21K scale: the stages between the convert tasks and the shard writers.

    python benchmarks/planning.py [--images 14197122] [--classes 21841]

Builds in memory what the convert tasks of a fall11 build hand on (14.2 M images over 21,841 real
wnids from timm's ImageNet-21K list, ~11.2 k classes above 500 images; the parts' class rows and
sample rows of the kept classes, spread over 1,150 parts), then times the taxonomy of every
class (WordNet parents and names), the tree over the kept classes, the plan with its shard row
groups, and the output tables, and reports the peak RSS of the process.
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

from pipeline.members import REJECT_SCHEMA  # noqa: E402
from pipeline.parts import CLASS_SCHEMA, train_order  # noqa: E402
from pipeline.plan import kept_wnids, plan_samples, shard_sizes  # noqa: E402
from pipeline.dataset_format import shard_name  # noqa: E402
from pipeline.tables import build_tables  # noqa: E402

PARTS = 1150


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_parts(n_images: int, n_classes: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """The convert stage's output with fall11's shape: ``(class rows, sample rows)`` of all parts."""
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
    kept = sizes >= 501
    classes = pa.table({"wnid": wnids, "container": [w + ".tar" for w in wnids], "n_images": sizes,
                        "kept": kept, "drop_reason": [None if k else "too_few_images" for k in kept]},
                       schema=CLASS_SCHEMA)
    kept_idx = np.flatnonzero(kept)
    class_of_row = np.repeat(kept_idx, sizes[kept_idx])
    n = len(class_of_row)
    within = np.arange(n) - np.repeat(np.cumsum(sizes[kept_idx]) - sizes[kept_idx], sizes[kept_idx])
    wnid_col = pc.take(pa.array(wnids), pa.array(class_of_row))
    numbers = pc.cast(pa.array(np.arange(n) * 7 % 10**7 + 1), pa.string())  # unique, not in name order
    keys = pc.binary_join_element_wise(wnid_col, numbers, "_")
    is_val = within < 50
    orders = np.array([train_order(0, k) for k in keys.to_pylist()], dtype=np.uint64)
    samples = pa.table({
        "key": keys, "wnid": wnid_col, "member": pc.binary_join_element_wise(keys, pa.array(["JPEG"] * n), "."),
        "split": pa.array(np.where(is_val, "validation", "train")),
        "order": pa.array(np.where(is_val, within, orders).astype(np.uint64)),
        "offset": pa.array(np.arange(n, dtype=np.int64) * 25_000), "length": pa.array(np.full(n, 25_000)),
        "width": pa.array(np.full(n, 500)), "height": pa.array(np.full(n, 375)),
        "part": pa.array(class_of_row * PARTS // len(wnids), pa.int64())})
    return classes, samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=14_197_122)
    parser.add_argument("--classes", type=int, default=21_841)
    parser.add_argument("--samples-per-shard", type=int, default=5000)
    args = parser.parse_args(argv)
    from hierarchy import SemanticTree, parent_mapping
    from hierarchy.names import class_names

    times = {}
    t0 = time.perf_counter()
    classes, samples = synthetic_parts(args.images, args.classes)
    times["make synthetic parts (not a stage)"] = time.perf_counter() - t0
    print(f"parts: {samples.num_rows:,} samples of {int(pc.sum(classes.column('kept')).as_py()):,} kept classes "
          f"(of {classes.num_rows:,}), rss {peak_rss_gb():.2f} GB")

    def stage(name, fn):
        t = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t
        print(f"{name:<40} {times[name]:8.1f} s   peak rss {peak_rss_gb():.2f} GB", flush=True)
        return out

    all_wnids = classes.column("wnid").to_pylist()
    parents = stage("taxonomy of every class (WordNet)", lambda: parent_mapping(all_wnids))
    names = stage("names of every class (WordNet)", lambda: class_names(all_wnids))
    wnids = kept_wnids(classes)
    tree = stage("tree over the kept classes", lambda: SemanticTree.from_parents(wnids, parents, {w: names[w] for w in wnids}, "wordnet"))
    plan = stage("plan", lambda: plan_samples(samples, list(tree.class_list), args.samples_per_shard))
    stage("plan row groups (shard sizes)", lambda: shard_sizes(plan))
    samples = None  # free the inputs before the tables stage
    with tempfile.TemporaryDirectory() as tmp:
        tree_path = Path(tmp) / "tree.json"
        tree.save(tree_path)
        lengths = {}
        for split in ("train", "validation"):
            shards = pc.value_counts(plan.filter(pc.equal(plan.column("split"), split)).column("shard")).to_pylist()
            for r in shards:
                lengths[shard_name(split, r["values"])] = r["counts"]
        summaries = [{"shards": [{"name": k, "num_samples": v} for k, v in lengths.items()]}]
        built, _ = stage("tables", lambda: build_tables(plan, str(tree_path), classes, REJECT_SCHEMA.empty_table(),
                                                        summaries, archive_entries=args.images))
    total = sum(v for k, v in times.items() if not k.startswith("make"))
    print(json.dumps({"kept_classes": len(wnids), "train": int(sum(built["classes.parquet"].column("n_train").to_pylist())),
                      "validation": int(sum(built["classes.parquet"].column("n_val").to_pylist())),
                      "stages_total_s": round(total, 1), "peak_rss_gb": round(peak_rss_gb(), 2)}, indent=1))
    print(f"target: < 600 s and < 8 GB -> {'OK' if total < 600 and peak_rss_gb() < 8 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
