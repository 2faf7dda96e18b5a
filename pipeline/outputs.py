"""Parquet outputs that are identical on every rerun, written atomically (:mod:`hierarchy.atomic`)."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_path


def write_parquet(table: pa.Table, path: str | os.PathLike, row_groups: list[int] | None = None) -> None:
    """Write a Parquet file atomically with settings that give identical bytes on every rerun.

    ``row_groups`` gives the rows of each row group in order (e.g. one per shard, so a reader
    takes one with ``read_row_group``); by default row groups hold up to 2**20 rows.
    """
    if row_groups is None:
        step = max(1, min(table.num_rows, 1 << 20))
        row_groups = [min(step, table.num_rows - i) for i in range(0, table.num_rows, step)] or [0]
    if sum(row_groups) != table.num_rows:
        raise ValueError(f"row groups of {sum(row_groups)} rows for a table of {table.num_rows}")
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, table.schema, compression="zstd", write_statistics=True,
                              store_schema=True) as writer:
            start = 0
            for n in row_groups:
                writer.write_table(table.slice(start, n), row_group_size=max(n, 1))
                start += n
