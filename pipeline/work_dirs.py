"""Where a build's intermediate files live: folders named by a hash of what they depend on.

``WORK_DIR/archive-H/`` (the archive's identity: path, size, mtime) holds the class listing and
the taxonomy; under it ``convert-H/parts-N/`` (the convert parameters; the convert task count as
given) the parts, ``plan-H/`` (the planning parameters) the plan, and ``shards-N/`` the shard
tasks' summaries. A rerun with other values gets other folders, so old and new files never mix;
the names need no listing of the archive, so any host can check any task's output.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from pipeline.errors import ArchiveError


def digest(*values) -> str:
    """A short, stable hash of JSON-able ``values`` (a folder name's suffix)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_identity(path: str):
    """``[absolute path, size, mtime_ns]`` of an input file, or None for no file."""
    if not path:
        return None
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


@functools.cache
def tree_identity(path: str):
    """A file's :func:`file_identity`, or for a folder the identity of every file under it
    (relative path, size, mtime): it changes when any file is added, removed or rewritten."""
    if not os.path.isdir(path):
        return file_identity(path)
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            st = os.stat(os.path.join(root, name))
            files.append([os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns])
    return [os.path.abspath(path), digest(files)]


def eval_file(work_root: Path, identities: list) -> Path:
    """The fingerprints of the evaluation sets with these identities."""
    return work_root / f"eval-{digest(identities)}.parquet"


def archive_work_dir(work_root: Path, archive: str) -> Path:
    """The folder of everything read from ``archive`` as it is now."""
    try:
        st = os.stat(archive)
    except OSError as exc:
        raise ArchiveError(f"archive not found or unreadable: {archive} ({exc.strerror})") from None
    return work_root / f"archive-{digest(os.path.abspath(archive), st.st_size, st.st_mtime_ns)}"


def parts_dir(archive_dir: Path, convert_values: dict, convert_tasks: int | None) -> Path:
    """The parts of one conversion (``convert_tasks`` None: one stream; 0: the automatic count)."""
    runs = "gz" if convert_tasks is None else (convert_tasks or "auto")
    return archive_dir / f"convert-{digest(convert_values)}" / f"parts-{runs}"


def plan_dir(parts: Path, samples_per_shard: int, words_path: str, values: dict) -> Path:
    return parts / f"plan-{digest(samples_per_shard, file_identity(words_path), values)}"


def shards_work_dir(plan: Path, shard_tasks: int) -> Path:
    return plan / f"shards-{shard_tasks or 'auto'}"


def taxonomy_file(archive_dir: Path, tree_source: str, is_a_path: str, words_path: str) -> Path:
    source = [tree_source, file_identity(is_a_path), file_identity(words_path)]
    return archive_dir / f"taxonomy-{digest(source)}.json"
