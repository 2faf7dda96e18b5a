"""Stage 4 — tables, ``_info.json``, ``stats.json`` and the dataset card.

Pure functions take the plan, the tree, the parts' class rows and rejects and the shard
summaries, and return Arrow tables and dicts (:func:`build_tables`, :func:`build_stats`,
:func:`dataset_card`); :func:`write_tables` and :func:`write_report` read a build's files and
write the outputs with them.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_bytes, atomic_write_text
from pipeline import checksums, dataset_format
from pipeline.crashpoints import crash_point
from pipeline.dataset_format import DATASET_NAME, SPLITS
from pipeline.errors import PipelineError
from pipeline.members import REJECT_SCHEMA
from pipeline.outputs import write_parquet
from pipeline.parts import read_parts


def write_tables(bases: list[str], plan_path: str, tree_path: str, shard_summaries: list[str], archive_entries: int,
                 output_dir: Path, accounting_path: Path) -> None:
    """Stage 4: the output tables and the tree in ``output_dir`` from the parts, the plan and
    the shard tasks' summaries; the accounting (written last: it marks the stage done), with the
    size and SHA-256 of these files and of every shard (``files``: the shard tasks recorded them;
    a shard whose summary predates checksums is hashed here)."""
    summaries = [json.loads(Path(p).read_text()) for p in shard_summaries]
    plan_file = Path(plan_path)
    rejects = [read_parts(bases, "rejects").cast(REJECT_SCHEMA)]
    if plan_file.with_suffix(".rejects.parquet").is_file():  # near-duplicates of evaluation images
        rejects.append(pq.read_table(plan_file.with_suffix(".rejects.parquet")).cast(REJECT_SCHEMA))
    built, accounting = build_tables(
        plan=pq.read_table(plan_path), tree_path=tree_path, class_counts=read_parts(bases, "classes"),
        rejects=pa.concat_tables(rejects), shard_summaries=summaries, archive_entries=archive_entries)
    if plan_file.with_suffix(".val_pairs.parquet").is_file():
        built[dataset_format.VAL_PAIRS_FILE] = pq.read_table(plan_file.with_suffix(".val_pairs.parquet"))
        accounting["near_duplicates"] = json.loads(plan_file.with_suffix(".contamination.json").read_text())
    files = {s["name"]: checksums.record_of(output_dir / s["name"], s) for summary in summaries
             for s in summary["shards"]}
    for name, table in built.items():
        write_parquet(table, output_dir / name)
        files[name] = checksums.file_record(output_dir / name)
        crash_point("tables")
    tree = Path(tree_path).read_bytes()
    atomic_write_bytes(output_dir / dataset_format.TREE_FILE, tree)
    files[dataset_format.TREE_FILE] = checksums.bytes_record(tree)
    accounting["files"] = dict(sorted(files.items()))
    atomic_write_text(accounting_path, json.dumps(accounting, indent=1, sort_keys=True) + "\n")


def write_report(output_dir: Path, accounting_path: Path, params: dict, release: tuple | None = None) -> dict:
    """The last files of a build: ``stats.json``, the dataset card, ``_info.json`` (and for the
    processed download its wnid lists), then every output's size and sha256 (``_sizes.json``,
    ``SHA256SUMS`` last: its presence marks the build done); return the stats.

    ``release``: the processed download's ``(report, wnid lists)`` (:func:`pipeline.release.release_report`).
    Raises :class:`PipelineError` when the accounting of archive entries does not balance.
    """
    from hierarchy import SemanticTree
    from pipeline.preflight import PARAMS_FILE
    from pipeline.release import VS_TIMM_FILE

    (output_dir / dataset_format.MANIFEST_FILE).unlink(missing_ok=True)
    accounting = json.loads(Path(accounting_path).read_text())
    tree = SemanticTree.load(output_dir / dataset_format.TREE_FILE)
    tree_summary = dict(level_counts=list(tree.level_counts), softmax_levels=list(tree.softmax_levels),
                        normalization_factors=[round(f, 4) for f in tree.normalization_factors])
    stats = build_stats(pq.read_table(output_dir / "classes.parquet"), pq.read_table(output_dir / "class_counts.parquet"),
                        pq.read_table(output_dir / "rejects.parquet"), accounting, tree_summary, params)
    if not stats["accounting"]["balanced"]:
        raise PipelineError(f"accounting does not add up: {stats['accounting']}")
    if "near_duplicates" in accounting:
        stats["near_duplicates"] = accounting["near_duplicates"]
    written = [PARAMS_FILE, dataset_format.STATS_FILE, dataset_format.CARD_FILE, dataset_format.INFO_FILE]
    if release is not None:
        stats["release"], wnid_lists = release
        if wnid_lists is not None:
            atomic_write_text(output_dir / VS_TIMM_FILE, json.dumps(wnid_lists, indent=1) + "\n")
            written.append(VS_TIMM_FILE)
    info = dataset_format.info_json(accounting["shard_lengths"])
    atomic_write_text(output_dir / dataset_format.STATS_FILE, json.dumps(stats, indent=1, sort_keys=True) + "\n")
    atomic_write_text(output_dir / dataset_format.CARD_FILE, dataset_card(stats))
    atomic_write_text(output_dir / dataset_format.INFO_FILE, json.dumps(info, indent=1, sort_keys=True) + "\n")
    # the shards' and tables' records were taken as they were written; these files' now
    files = dict(accounting["files"], **{name: checksums.file_record(output_dir / name) for name in written})
    checksums.write_manifest(output_dir, files)
    return stats


def build_tables(plan: pa.Table, tree_path: str, class_counts: pa.Table, rejects: pa.Table,
                 shard_summaries: list[dict], archive_entries: int) -> tuple[dict[str, pa.Table], dict]:
    """Output tables and the accounting of every archive entry.

    ``class_counts`` are the parts' class rows, ``rejects`` their reject rows, ``shard_summaries``
    what the shard tasks wrote and ``archive_entries`` the entries the convert stage read.
    """
    from hierarchy import SemanticTree

    tree = SemanticTree.load(tree_path)
    class_index = plan.column("class_index").combine_chunks()
    chains = pa.array([tree.chain(c) for c in range(tree.num_classes)], pa.list_(pa.int64()))
    in1k = tree.imagenet1k_index
    labels = pa.table({
        "key": plan.column("key"),
        "split": plan.column("split"),
        "shard": plan.column("shard"),
        "class_index": class_index,
        "wnid": plan.column("wnid"),
        "level": pc.take(pa.array(tree.level_of, pa.int64()), class_index),
        "semantic_chain": pc.take(chains, class_index),
    })
    n_split = {}
    for split in SPLITS:
        in_split = pc.equal(plan.column("split"), split).to_numpy(zero_copy_only=False)
        ci = class_index.to_numpy(zero_copy_only=False)[in_split]
        n_split[split] = np.bincount(ci, minlength=tree.num_classes).tolist()
    classes = pa.table({
        "class_index": pa.array(range(tree.num_classes), pa.int64()),
        "wnid": pa.array(tree.class_list, pa.string()),
        "name": pa.array([tree.name(i) for i in range(tree.num_classes)], pa.string()),
        "level": pa.array(tree.level_of, pa.int64()),
        "parent": pa.array(tree.parent_of, pa.int64()),
        "n_train": pa.array(n_split["train"], pa.int64()),
        "n_val": pa.array(n_split["validation"], pa.int64()),
        # the class's index in ImageNet-1K's standard 1,000 (timm's imagenet_synsets.txt), null outside it
        "imagenet1k_index": pa.array(list(map(in1k.get, tree.class_list)), pa.int64()),
    })
    all_rejects = rejects.cast(REJECT_SCHEMA).sort_by([("stage", "ascending"), ("wnid", "ascending"),
                                                       ("member", "ascending"), ("reason", "ascending")])
    counts = class_counts.select(["wnid", "n_images", "kept", "drop_reason"]).sort_by("wnid")
    shard_lengths = {s["name"]: s["num_samples"] for summary in shard_summaries for s in summary["shards"]}
    accounting = {
        "shard_lengths": dict(sorted(shard_lengths.items())),
        "archive_entries": archive_entries,
        "in_shards": sum(shard_lengths.values()),
        "rejected": all_rejects.num_rows,
        "in_dropped_classes": sum(r["n_images"] for r in counts.to_pylist() if not r["kept"]),
    }
    if counts.num_rows != len(set(counts.column("wnid").to_pylist())):
        counts = per_class(counts)  # the released layout: a class's train, val and small-class folders
    return ({"labels.parquet": labels, "classes.parquet": classes, "rejects.parquet": all_rejects,
             "class_counts.parquet": counts}, accounting)


def per_class(counts: pa.Table) -> pa.Table:
    """Class rows of several containers per wnid as one row each: images summed, kept if any
    container was, the first drop reason otherwise."""
    rows: dict[str, dict] = {}
    for r in counts.to_pylist():
        row = rows.setdefault(r["wnid"], dict(wnid=r["wnid"], n_images=0, kept=False, drop_reason=None))
        row["n_images"] += r["n_images"]
        row["kept"] = row["kept"] or r["kept"]
        row["drop_reason"] = row["drop_reason"] or r["drop_reason"]
    for row in rows.values():
        if row["kept"]:
            row["drop_reason"] = None
    return pa.Table.from_pylist(sorted(rows.values(), key=lambda r: r["wnid"]), schema=counts.schema)


def build_stats(classes: pa.Table, class_counts: pa.Table, rejects: pa.Table, accounting: dict,
                tree_summary: dict, params: dict) -> dict:
    """``stats.json``: counts, classes per level, rejects by reason, the accounting, parameters."""
    entries = accounting["archive_entries"]
    accounted = accounting["in_shards"] + accounting["rejected"] + accounting["in_dropped_classes"]
    dropped = Counter(r["drop_reason"] for r in class_counts.to_pylist() if not r["kept"])
    n_train = sum(classes.column("n_train").to_pylist())
    n_val = sum(classes.column("n_val").to_pylist())
    return {
        "num_classes": classes.num_rows,
        "samples": {"train": n_train, "validation": n_val},
        "shards": {s: sum(1 for n in accounting["shard_lengths"] if n.startswith(f"{s}/")) for s in SPLITS},
        "classes_in_archive": class_counts.num_rows,
        "dropped_classes": dict(sorted(dropped.items())),
        "classes_per_level": tree_summary["level_counts"],
        "softmax_levels": tree_summary["softmax_levels"],
        "normalization_factors": tree_summary["normalization_factors"],
        "rejects_by_reason": {r["values"]: r["counts"] for r in sorted(
            pc.value_counts(rejects.column("reason")).to_pylist(), key=lambda r: r["values"])},
        "accounting": {
            "archive_entries": entries,
            "in_shards": accounting["in_shards"],
            "rejected": accounting["rejected"],
            "in_dropped_classes": accounting["in_dropped_classes"],
            "balanced": entries == accounted,
        },
        "parameters": params,
    }


TREE_SOURCES = {"wordnet": "WordNet 3.0 hypernyms, through nltk's data files",
                "is_a": "ImageNet's wordnet.is_a.txt, WordNet for what it lacks"}


def _release_intro(release: dict, p: dict) -> str:
    order = release["val_order"]
    lines = [f"""Built by `luigi --module pipeline BuildImageNet21KP` from the official processed ImageNet-21K-P
download (ImageNet-21K Pretraining for the Masses, Ridnik et al. 2021): its train and validation
splits kept as released, {release['copied']} images copied byte for byte
({p['image_size']}×{p['image_size']} baseline JPEGs), {release['resized']} squish-resized (JPEG quality
{p['jpeg_quality']}); WebDataset shards of {p['samples_per_shard']} samples.

The val folder's images are the first N of their class in bytewise name order in
{order['first']} of {order['classes']} classes, and the first N as `ls` lists them under en_US.UTF-8 in
{order['first_en_us']} of {order['classes']}."""]
    if "vs_timm_w21" in release:
        diff = release["vs_timm_w21"]
        shown = lambda n, ids: f"{n}" + (f" (e.g. {', '.join(ids)})" if ids else "")  # noqa: E731
        lines.append(f"""Against timm's `imagenet21k_miil_w21_synsets.txt` ({diff['classes']} classes):
{shown(diff['missing'], diff['missing_examples'])} missing, {shown(diff['extra'], diff['extra_examples'])} extra
(every wnid: `{diff['file']}`).""")
    if release["tree_source"] != "is_a":
        lines.append("""The released tree follows ImageNet's `wordnet.is_a.txt`; this build used WordNet 3.0
(rebuild with `--is-a-path wordnet.is_a.txt` to follow the release).""")
    return "\n\n".join(lines)


def _near_duplicates_section(report: dict | None) -> str:
    """The card's near-duplicates section (empty for a build made before fingerprints)."""
    if not report:
        return ""
    lines = ["## Near-duplicates",
             f"Fingerprints of the 224² pixels, near-duplicates within {report['distance']} bits "
             "(`pipeline/near_duplicates.py`).", ""]
    if "near_duplicates_of_eval" in report:
        lines += ["| evaluation set | images | unreadable | archive images left out |", "|---|---|---|---|"]
        lines += [f"| {name} | {report['eval_sets'][name]['images']} | {report['eval_sets'][name]['unreadable']} "
                  f"| {n} |" for name, n in report["near_duplicates_of_eval"].items()]
        lines.append("")
    val = report["val_with_train_near_duplicate"]
    what = f"moved out of validation ({val['moved']})" if val["moved"] else "reported"
    lines += [f"Validation images with a near-duplicate in train: {val['images']} in {len(val['per_class'])} "
              f"classes, {what}; the pairs are in `val_near_duplicates.parquet`.", "", ""]
    return "\n".join(lines)


def _shards(n: int) -> str:
    return f"{n} shard" if n == 1 else f"{n} shards"


def dataset_card(stats: dict) -> str:
    """The dataset's README.md."""
    p = stats["parameters"]
    levels = "\n".join(f"| {lvl} | {n} |" for lvl, n in enumerate(stats["classes_per_level"]))
    rejects = "\n".join(f"| {r} | {n} |" for r, n in stats["rejects_by_reason"].items()) or "| (none) | 0 |"
    acc = stats["accounting"]
    params = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in sorted(p.items()) if k != "not_applicable")
    params += "".join(f"\n| {k} | (does not apply: the download's own split) |" for k in p.get("not_applicable", []))
    dropped = "\n".join(f"| {r} | {n} |" for r, n in stats["dropped_classes"].items()) or "| (none) | 0 |"
    if "release" in stats:
        intro = _release_intro(stats["release"], p)
    else:
        intro = f"""Built by `luigi --module pipeline BuildImageNet21KP` (ImageNet-21K Pretraining for the Masses,
Ridnik et al. 2021): classes with at least {p['min_images']} images, {p['val_per_class']} validation
images per class (rule `{p['val_rule']}`), every image squish-resized to {p['image_size']}×{p['image_size']}
(JPEG quality {p['jpeg_quality']}), WebDataset shards of {p['samples_per_shard']} samples."""
    return f"""# ImageNet-21K-P ({DATASET_NAME})

{intro}
Semantic tree: `{p['tree_source']}` ({TREE_SOURCES.get(p['tree_source'], '')}).

| | |
|---|---|
| classes | {stats['num_classes']} (of {stats['classes_in_archive']} in the archive) |
| train samples | {stats['samples']['train']} in {_shards(stats['shards']['train'])} |
| validation samples | {stats['samples']['validation']} in {_shards(stats['shards']['validation'])} |
| dropped classes | {sum(stats['dropped_classes'].values())} (by reason below) |

## Accounting
Every entry of the archive is in a shard, in `rejects.parquet` with a reason, or in a dropped
class: {acc['archive_entries']} = {acc['in_shards']} + {acc['rejected']} + {acc['in_dropped_classes']}
({'balanced' if acc['balanced'] else 'NOT BALANCED'}).

## Dropped classes
| reason | classes |
|---|---|
{dropped}

{_near_duplicates_section(stats.get("near_duplicates"))}## Classes per semantic level
| level | classes |
|---|---|
{levels}

## Rejects by reason
| reason | count |
|---|---|
{rejects}

## Files
- `train/`, `validation/`: shards `imagenet21kp-SPLIT-NNNNNN.tar`; each sample is `KEY.jpg`,
  `KEY.cls` (class index) and `KEY.json` (wnid, class index, semantic chain, original size).
- `_info.json`: split sizes and shard lengths (timm's WebDataset reader format).
- `labels.parquet`, `classes.parquet` (with each class's `imagenet1k_index`), `class_counts.parquet`,
  `rejects.parquet`, `val_near_duplicates.parquet`, `semantic_tree.json`, `stats.json`.
- `SHA256SUMS` (`sha256sum -c SHA256SUMS`, or `python -m pipeline verify THIS_DIR`) and `_sizes.json`:
  every file's sha256 and size, recorded as it was written.

## Loading
```python
import timm.data
ds = timm.data.create_dataset("wds/imagenet21kp", root="THIS_DIR", split="train")

import webdataset as wds
ds = wds.WebDataset("THIS_DIR/train/imagenet21kp-train-{{000000..{max(stats['shards']['train'] - 1, 0):06d}}}.tar").decode("pil")
```
Train with `python -m trainer --data THIS_DIR --output RUN_DIR --model tresnet_m`.

## Parameters
| parameter | value |
|---|---|
{params}
"""
