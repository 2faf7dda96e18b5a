"""Stage 5 — shards: WebDataset tar files of 224×224 JPEGs, byte-identical on every rerun.

Each sample is ``KEY.cls`` (class index, ASCII), ``KEY.jpg`` and ``KEY.json`` (wnid, class index,
semantic chain, original width/height). Tar metadata is fixed (mtime 0, uid/gid 0, no user
names, mode 0444, USTAR headers) and members follow the plan order, so the same plan and
parameters always give the same bytes.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from pathlib import Path
from typing import Iterable

from pipeline.crashpoints import crash_point

SHARD_PREFIX = "imagenet21kp"


def shard_name(split: str, shard: int) -> str:
    """Relative path of a shard, e.g. ``train/imagenet21kp-train-000042.tar``."""
    return f"{split}/{SHARD_PREFIX}-{split}-{shard:06d}.tar"


def sample_json(wnid: str, class_index: int, chain: list[int], width: int, height: int) -> bytes:
    """The ``.json`` member of a sample (compact, sorted keys)."""
    return json.dumps(dict(wnid=wnid, class_index=class_index, semantic_chain=chain,
                           width=width, height=height), sort_keys=True, separators=(",", ":")).encode()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, 0, 0o444
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_shard(path: str | os.PathLike, samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Write ``(key, {ext: bytes})`` samples to ``path`` atomically; return the sample count.

    Extensions are written in sorted order. The file appears only when complete (temp file in the
    same folder + rename); a temp file left by a killed writer is named ``.NAME.tmp-*``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    count = 0
    try:
        with open(tmp, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tf:
                for key, fields in samples:
                    for ext in sorted(fields):
                        data = fields[ext]
                        tf.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))
                    count += 1
            f.flush()
            os.fsync(f.fileno())
        crash_point("shard_temp")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def remove_stale_temp_files_in(folder: str | os.PathLike) -> int:
    """Delete every temp file (``.NAME.tmp-*``) a killed writer left directly in ``folder``."""
    removed = 0
    folder = Path(folder)
    if folder.is_dir():
        for stale in folder.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_stale_temp_files(path: str | os.PathLike) -> int:
    """Delete temp files a killed writer of ``path`` left behind; return how many."""
    path = Path(path)
    removed = 0
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
