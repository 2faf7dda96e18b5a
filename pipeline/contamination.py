"""Near-duplicates at plan time: archive images that match an evaluation image are rejected, and
validation images with a near-duplicate in the same build's train split are reported (or moved).

Every sample carries the fingerprint its convert task took from the pixels it had decoded
(:mod:`pipeline.near_duplicates`), and every validation sample its 49 variants, as an evaluation
image has; these functions only compare fingerprints, through an index that never compares every
pair. A validation image moved out is replaced by the next of its class under the val rule that
is in no pair; that replacement is checked through its centre fingerprint only (its variants are
not taken: it was a train image when its class was converted). All outputs are sorted, so a
rerun gives the same bytes.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_text, remove_stale_temp_files
from pipeline.convert import NAME_ORDERS
from pipeline.members import REJECT_SCHEMA
from pipeline.near_duplicates import VARIANT_COUNT, EvalIndex, fingerprints_of_eval_set, write_hash_file
from pipeline.outputs import write_parquet
from pipeline.parts import train_order

EVAL_REASON = "near_duplicate_of_eval"
EVAL_SCHEMA = pa.schema([("set", pa.string()), ("name", pa.string()), ("fingerprint", pa.uint64())])
PAIR_SCHEMA = pa.schema([("val_key", pa.string()), ("val_wnid", pa.string()), ("train_key", pa.string()),
                         ("train_wnid", pa.string()), ("distance", pa.int64())])
VAL_MOVES = ("report", "move")


def nearest_matches(queries: np.ndarray, index: EvalIndex, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query positions, reference positions, distances)``: each query within ``threshold`` of a
    reference, with its nearest one (ties: the lowest reference position)."""
    q, r, d = index.query(queries, threshold)
    if len(q) == 0:
        return q, r, d
    order = np.lexsort((r, d, q))  # by query, then distance, then reference
    q, r, d = q[order], r[order], d[order]
    first = np.ones(len(q), bool)
    first[1:] = q[1:] != q[:-1]
    return q[first], r[first], d[first]


def eval_rejects(samples: pa.Table, evals: pa.Table, threshold: int) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """``(samples that match no evaluation image, their reject rows, rejects per set)``: a sample within
    ``threshold`` of an evaluation image (``evals``: :data:`EVAL_SCHEMA`) is rejected with reason
    :data:`EVAL_REASON`, naming the set, the image and the distance."""
    fingerprints = samples.column("fingerprint").to_numpy(zero_copy_only=False)
    known = ~pc.is_null(samples.column("fingerprint")).to_numpy(zero_copy_only=False)
    per_set = dict.fromkeys(sorted(pc.unique(evals.column("set")).to_pylist()), 0)
    if evals.num_rows == 0 or not known.any():
        return samples, REJECT_SCHEMA.empty_table(), per_set
    positions = np.flatnonzero(known)
    index = EvalIndex(evals.column("fingerprint").to_numpy().astype(np.uint64), threshold=threshold)
    q, r, d = nearest_matches(fingerprints[positions].astype(np.uint64), index, threshold)
    hit = positions[q]
    matched = evals.take(pa.array(r, pa.int64()))  # only the matched rows become Python objects
    sets, names = matched.column("set").to_pylist(), matched.column("name").to_pylist()
    for name in sets:
        per_set[name] += 1
    rows = samples.select(["key", "member", "wnid"]).take(pa.array(hit, pa.int64())).to_pydict()
    rejects = pa.Table.from_pylist([
        dict(key=key, member=member, wnid=wnid, stage="plan", reason=EVAL_REASON,
             detail=f"{set_name}: {name} (distance {dist})")
        for key, member, wnid, set_name, name, dist in zip(rows["key"], rows["member"], rows["wnid"], sets, names,
                                                          d.tolist())
    ], schema=REJECT_SCHEMA)
    keep = np.ones(samples.num_rows, bool)
    keep[hit] = False
    return samples.filter(pa.array(keep)), rejects, per_set


def val_train_pairs(samples: pa.Table, threshold: int) -> pa.Table:
    """Every (validation sample, train sample) pair within ``threshold`` (:data:`PAIR_SCHEMA`,
    sorted): the held-out images that the train split holds again. A validation sample is matched
    through its ``variants`` (as an evaluation image is: crops found either way), or its centre
    fingerprint alone where it has none."""
    split = samples.column("split").to_numpy(zero_copy_only=False)
    fingerprints = samples.column("fingerprint")
    known = ~pc.is_null(fingerprints).to_numpy(zero_copy_only=False)
    val = np.flatnonzero((split == "validation") & known)
    train = np.flatnonzero((split == "train") & known)
    if len(val) == 0 or len(train) == 0:
        return PAIR_SCHEMA.empty_table()
    values = fingerprints.to_numpy(zero_copy_only=False)
    index = EvalIndex(validation_variants(samples, val, values), threshold=threshold)
    q, r, d = index.query(values[train].astype(np.uint64))
    val_rows, train_rows = pa.array(val[r], pa.int64()), pa.array(train[q], pa.int64())
    keys, wnids = samples.column("key"), samples.column("wnid")
    pairs = pa.table({"val_key": keys.take(val_rows), "val_wnid": wnids.take(val_rows),
                      "train_key": keys.take(train_rows), "train_wnid": wnids.take(train_rows),
                      "distance": pa.array(d, pa.int64())}, schema=PAIR_SCHEMA)
    return pairs.sort_by([("val_wnid", "ascending"), ("val_key", "ascending"), ("train_key", "ascending")])


def validation_variants(samples: pa.Table, rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(len(rows), VARIANT_COUNT) uint64: the ``variants`` of those samples; a row without them
    (a copied image of the processed download) has its centre fingerprint in every column."""
    out = np.repeat(centres[rows].astype(np.uint64)[:, None], VARIANT_COUNT, axis=1)
    variants = samples.column("variants").take(pa.array(rows, pa.int64())).combine_chunks()
    has = ~pc.is_null(variants).to_numpy(zero_copy_only=False)
    if has.any():
        out[has] = variants.filter(pa.array(has)).flatten().to_numpy().reshape(-1, VARIANT_COUNT)
    return out


def move_out_of_validation(samples: pa.Table, pairs: pa.Table, val_rule: str, seed: int) -> pa.Table:
    """``samples`` with every validation image that has a train near-duplicate (``pairs``) moved
    to train, its place in validation taken by the class's next eligible image under the val
    rule (one with no near-duplicate in train; ``first``: bytewise name order, ``first_en_us``:
    ``ls`` order, ``random``: a seeded order of the rest)."""
    tainted = set(pairs.column("val_key").to_pylist()) | set(pairs.column("train_key").to_pylist())
    moved = set(pairs.column("val_key").to_pylist())
    if not moved:
        return samples
    # only the classes that lose a validation image become Python objects
    affected = np.flatnonzero(pc.is_in(samples.column("wnid"),
                                       value_set=pairs.column("val_wnid").unique()).to_numpy(zero_copy_only=False))
    rows = samples.select(["key", "wnid", "member", "split", "order"]).take(pa.array(affected, pa.int64())).to_pydict()
    by_class: dict[str, list[int]] = {}
    for i, wnid in enumerate(rows["wnid"]):
        by_class.setdefault(wnid, []).append(i)
    split, order = list(rows["split"]), list(rows["order"])
    for wnid, members in by_class.items():
        out = [i for i in members if rows["key"][i] in moved and split[i] == "validation"]
        if not out:
            continue
        candidates = [i for i in members if split[i] == "train" and rows["key"][i] not in tainted]
        candidates = _in_rule_order(candidates, rows["member"], val_rule, seed, wnid)
        for i, j in zip(out, candidates):
            split[i], order[i] = "train", train_order(seed, rows["key"][i])
            split[j] = "validation"
        for i in out[len(candidates):]:  # nothing eligible left: the image leaves validation anyway
            split[i], order[i] = "train", train_order(seed, rows["key"][i])
        val = sorted((i for i in members if split[i] == "validation"), key=lambda i: rows["member"][i])
        for rank, i in enumerate(val):
            order[i] = rank
    mask = np.zeros(samples.num_rows, bool)
    mask[affected] = True
    for name, values, kind in (("split", split, pa.string()), ("order", order, pa.uint64())):
        column = pc.replace_with_mask(samples.column(name).combine_chunks(), pa.array(mask), pa.array(values, kind))
        samples = samples.set_column(samples.schema.get_field_index(name), name, column)
    return samples


def _in_rule_order(positions: list[int], members: list[str], val_rule: str, seed: int, wnid: str) -> list[int]:
    if val_rule in NAME_ORDERS:
        return sorted(positions, key=lambda i: NAME_ORDERS[val_rule](members[i]))
    ranked = sorted(positions, key=lambda i: members[i])
    rng = np.random.default_rng([seed, 2, int(wnid[1:])])
    return [ranked[k] for k in rng.permutation(len(ranked))]


def per_class_counts(pairs: pa.Table) -> dict[str, int]:
    """``{wnid: validation images with a train near-duplicate}``, sorted by wnid."""
    counts: dict[str, set] = {}
    for wnid, key in zip(pairs.column("val_wnid").to_pylist(), pairs.column("val_key").to_pylist()):
        counts.setdefault(wnid, set()).add(key)
    return {w: len(keys) for w, keys in sorted(counts.items())}


@dataclass(frozen=True)
class NearDuplicateRule:
    """What the plan does with near-duplicates (the build's parameters)."""

    distance: int
    val_near_duplicates: str = "report"  # or "move"
    val_rule: str = "first"
    seed: int = 0
    eval_file: str | None = None  # fingerprints of the evaluation sets (:data:`EVAL_SCHEMA`), if any


def apply_rule(samples: pa.Table, rule: NearDuplicateRule) -> tuple[pa.Table, pa.Table, pa.Table, dict]:
    """``(samples kept, reject rows, val/train pairs, report)``: samples near an evaluation image
    rejected, validation images with a train near-duplicate found (and moved, if the rule says
    so); the report has the counts per evaluation set and per class for ``stats.json``."""
    report: dict = {"distance": rule.distance}
    rejects = REJECT_SCHEMA.empty_table()
    if rule.eval_file:
        evals = pq.read_table(rule.eval_file)
        samples, rejects, report["near_duplicates_of_eval"] = eval_rejects(samples, evals, rule.distance)
        report["eval_sets"] = json.loads(Path(rule.eval_file).with_suffix(".failures.json").read_text())
    pairs = val_train_pairs(samples, rule.distance)
    per_class = per_class_counts(pairs)
    report["val_with_train_near_duplicate"] = {"images": sum(per_class.values()), "pairs": pairs.num_rows,
                                               "per_class": per_class, "moved": 0}
    if rule.val_near_duplicates == "move" and pairs.num_rows:
        samples = move_out_of_validation(samples, pairs, rule.val_rule, rule.seed)
        report["val_with_train_near_duplicate"]["moved"] = sum(per_class.values())
    return samples, rejects, pairs, report


def eval_set_name(source: str) -> str:
    """How reports name an evaluation set: its file or folder name."""
    return os.path.basename(os.path.normpath(source))


def hash_eval_sets(sources: list[str], path: Path) -> None:
    """Write the fingerprints of every evaluation set (:data:`EVAL_SCHEMA`, by set and name) to
    ``path``, and beside it (``.failures.json``) the images of each set that could not be read."""
    tables, failures = [], {}
    for source in sources:
        names, fingerprints, failed = fingerprints_of_eval_set(source, variants=True)
        name = eval_set_name(source)
        per_image = fingerprints.shape[1]  # one row per crop variant: the index reports the nearest
        tables.append(pa.table({"set": pa.array([name] * fingerprints.size, pa.string()),
                                "name": pa.array([n for n in names for _ in range(per_image)], pa.string()),
                                "fingerprint": pa.array(fingerprints.ravel(), pa.uint64())}, schema=EVAL_SCHEMA))
        failures[name] = {"images": len(names), "unreadable": len(failed),
                          "examples": [f"{n}: {why}" for n, why in failed[:10]]}
    failures_path = path.with_suffix(".failures.json")
    remove_stale_temp_files(failures_path)
    atomic_write_text(failures_path, json.dumps(failures, indent=1, sort_keys=True))
    write_parquet(pa.concat_tables(tables) if tables else EVAL_SCHEMA.empty_table(), path)


def eval_hashes_main(argv: list[str]) -> int:
    """``python -m pipeline eval-hashes SOURCE -o FILE``: an evaluation set's fingerprints as a
    hash file the build takes in ``--eval-sets`` (a lab shares it instead of the images)."""
    from hierarchy.command_line import OneLineParser

    parser = OneLineParser(prog="python -m pipeline eval-hashes",
                           description="Write the fingerprints of an evaluation set (a folder of images, searched "
                                       "recursively, or a tar of images) to a hash file for --eval-sets.")
    parser.add_argument("source", help="folder or tar of images (e.g. ImageNet-1K val)")
    parser.add_argument("-o", "--output", required=True, help="hash file to write (Parquet)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.source):
        print(f"error: {args.source}: no such folder or file", file=sys.stderr)
        return 2
    names, fingerprints, failed = fingerprints_of_eval_set(args.source, variants=True)
    write_hash_file(args.output, names, fingerprints)
    print(f"{len(names):,} fingerprints of {args.source} written to {args.output}"
          + (f"; {len(failed)} image(s) unreadable (e.g. {failed[0][0]}: {failed[0][1]})" if failed else ""))
    return 0
