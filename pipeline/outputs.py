"""Atomic build outputs: Parquet tables, text and bytes, and the cleanup of a killed writer's temp files.

Every file appears complete or not at all: it is written to ``.NAME.tmp-*`` beside its final
name, flushed to disk and renamed. :func:`remove_stale_temp_files_in` deletes what a killed
writer left (the one temp-name pattern).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_bytes


def temp_path(path: Path) -> Path:
    """A fresh temp name beside ``path`` in the pattern the cleanup looks for."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")


def write_parquet(table: pa.Table, path: str | os.PathLike, row_groups: list[int] | None = None) -> None:
    """Write a Parquet file atomically with settings that give identical bytes on every rerun.

    ``row_groups`` gives the rows of each row group in order (e.g. one per shard, so a reader
    takes one with ``read_row_group``); by default row groups hold up to 2**20 rows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    if row_groups is None:
        step = max(1, min(table.num_rows, 1 << 20))
        row_groups = [min(step, table.num_rows - i) for i in range(0, table.num_rows, step)] or [0]
    if sum(row_groups) != table.num_rows:
        raise ValueError(f"row groups of {sum(row_groups)} rows for a table of {table.num_rows}")
    try:
        with pq.ParquetWriter(tmp, table.schema, compression="zstd", write_statistics=True,
                              store_schema=True) as writer:
            start = 0
            for n in row_groups:
                writer.write_table(table.slice(start, n), row_group_size=max(n, 1))
                start += n
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    atomic_write_bytes(path, text.encode())


WRITEV_PIECES, WRITEV_BYTES = 512, 8 << 20  # one writev per this many pieces or bytes


def write_bytes(path: str | os.PathLike, chunks) -> int:
    """Write an iterable of byte strings to ``path`` atomically (fsynced); return the byte count.

    The chunks (often many small JPEGs) go out in ``writev`` calls of up to
    :data:`WRITEV_PIECES` pieces or :data:`WRITEV_BYTES`, without being joined.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    n = 0
    try:
        with open(tmp, "wb", buffering=0) as f:
            pending, size = [], 0
            for chunk in chunks:
                pending.append(chunk)
                size += len(chunk)
                if len(pending) >= WRITEV_PIECES or size >= WRITEV_BYTES:
                    _write_all(f.fileno(), pending)
                    n += size
                    pending, size = [], 0
            _write_all(f.fileno(), pending)
            n += size
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def _write_all(fd: int, pieces: list) -> None:
    """``os.writev`` until every byte of ``pieces`` is written (a short write resumes mid-piece)."""
    first = 0
    while first < len(pieces):
        written = os.writev(fd, pieces[first:first + 1024])  # IOV_MAX
        while first < len(pieces) and written >= len(pieces[first]):
            written -= len(pieces[first])
            first += 1
        if written:
            pieces[first] = memoryview(pieces[first])[written:]


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
    """Delete temp files a killed writer of ``path`` left behind; return how many.

    Safe while other processes write other files of the same folder (unlike
    :func:`remove_stale_temp_files_in`).
    """
    path = Path(path)
    removed = 0
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
