"""Stage 5 driver: turn the plan rows of one shard group into shard files.

Shards are dealt to ``groups`` tasks round-robin over a global shard numbering (train shards
first, then validation). For each shard, images are read in archive order (locality), converted
with :func:`pipeline.images.squish_resize_with_size`, and written in plan order. A small sidecar
JSON per shard (sample count, decode rejects) is written before the shard itself, so a rerun after
a kill skips finished shards and still knows their rejects.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_bytes
from pipeline.archive import ArchiveReader
from pipeline.crashpoints import crash_point
from pipeline.shards import remove_stale_temp_files, sample_json, shard_name, write_shard

MAX_MEMBER_BYTES = 512 << 20  # larger members are rejected unread


WRITES_LOG = "writes.log"


def log_write(sidecar_dir: Path, name: str) -> None:
    """Append ``name host pid`` to the audit log of shard writes (one small O_APPEND write)."""
    line = f"{name}\t{socket.gethostname()}\t{os.getpid()}\n".encode()
    fd = os.open(sidecar_dir / WRITES_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def group_shards(shard_counts: dict[str, int], group: int, groups: int) -> list[tuple[str, int]]:
    """The (split, shard) pairs that belong to ``group`` of ``groups``."""
    out, gid = [], 0
    for split in ("train", "validation"):
        for shard in range(shard_counts.get(split, 0)):
            if gid % groups == group:
                out.append((split, shard))
            gid += 1
    return out


def convert_shard(rows: list[dict], reader: ArchiveReader, chains: list[list[int]], image_size: int,
                  jpeg_quality: int) -> tuple[list[tuple[str, dict]], list[dict]]:
    """Samples (in plan order) and decode rejects for the plan rows of one shard."""
    from pipeline.images import BadImage, squish_resize_with_size  # PIL only where images are made

    converted: dict[int, tuple[str, dict]] = {}
    rejects = []
    for row in sorted(rows, key=lambda r: (r["source"], r["offset"])):
        reason, detail = None, ""
        if row["size"] > MAX_MEMBER_BYTES:
            reason, detail = "too_large", f"{row['size']} bytes"
        else:
            data = reader.read(row["source"], row["offset"], row["size"])
            try:
                jpg, (w, h) = squish_resize_with_size(data, size=image_size, quality=jpeg_quality)
            except BadImage as exc:
                reason, detail = exc.reason, str(exc)
            except Exception as exc:  # never stop a long build for one image; record it
                reason, detail = "decode_error", f"{type(exc).__name__}: {exc}"
        if reason:
            rejects.append(dict(key=row["key"], member=row["member"], wnid=row["wnid"], stage="decode",
                                reason=reason, detail=detail[:500]))
            continue
        ci = row["class_index"]
        converted[row["position"]] = (row["key"], {
            "jpg": jpg, "cls": str(ci).encode(),
            "json": sample_json(row["wnid"], ci, chains[ci], w, h)})
    samples = [converted[p] for p in sorted(converted)]
    return samples, sorted(rejects, key=lambda r: r["key"])


def write_shard_group(plan_path, group: int, groups: int, archive_root, output_dir: Path, sidecar_dir: Path,
                      chains: list[list[int]], image_size: int, jpeg_quality: int, task=None) -> dict:
    """Write every missing shard of ``group``; return the group summary (shards and rejects)."""
    sidecar_dir.mkdir(parents=True, exist_ok=True)
    counts = json.loads(Path(plan_path).with_suffix(".shards.json").read_text())
    mine = group_shards(counts, group, groups)
    progress = task.progress(len(mine), f"shard group {group}") if task is not None else None
    summary = {"group": group, "groups": groups, "shards": []}
    with ArchiveReader(archive_root) as reader:
        for i, (split, shard) in enumerate(mine):
            name = shard_name(split, shard)
            target = output_dir / name
            sidecar = sidecar_dir / (name.replace("/", "__") + ".json")
            remove_stale_temp_files(target)
            if not (target.is_file() and sidecar.is_file()):
                rows = pq.read_table(plan_path, filters=[("split", "=", split), ("shard", "=", shard)]).to_pylist()
                samples, rejects = convert_shard(rows, reader, chains, image_size, jpeg_quality)
                info = {"name": name, "split": split, "shard": shard, "num_samples": len(samples),
                        "rejects": rejects}
                atomic_write_bytes(sidecar, json.dumps(info, sort_keys=True).encode())
                crash_point("shard_sidecar")
                write_shard(target, samples)
                log_write(sidecar_dir, name)
            summary["shards"].append(json.loads(sidecar.read_text()))
            if progress:
                progress.update(i + 1, f"{name} done ({i + 1}/{len(mine)} shards of group {group})")
    if progress:
        progress.close()
    return summary
