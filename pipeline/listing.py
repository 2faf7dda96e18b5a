"""An archive's class containers, listed once and kept in the work dir (``containers.parquet``).

Every task of the DAG asks for the listing (to size the build and to find its containers); it is
made by the first process that asks (one 512-byte header read per outer member of a fall11 tar,
a directory listing otherwise) and read from the file by every other, once per process.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.archive import Container, list_containers
from pipeline.outputs import write_parquet
from pipeline.task_sizing import split_evenly

CONTAINERS_FILE = "containers.parquet"
CONTAINER_SCHEMA = pa.schema([("name", pa.string()), ("wnid", pa.string()), ("source", pa.string()),
                              ("offset", pa.int64()), ("size", pa.int64()), ("kind", pa.string()),
                              ("weight", pa.int64()), ("split", pa.string())])


@functools.cache
def containers(archive: str, layout_name: str, archive_dir: Path) -> tuple[Container, ...]:
    """The containers of ``archive`` in read order, from ``archive_dir``'s listing (made if missing)."""
    path = archive_dir / CONTAINERS_FILE
    if path.is_file():
        rows = pq.read_table(path).to_pylist()
    else:
        rows = [c.__dict__ for c in list_containers(archive, layout_name)]
        write_parquet(pa.Table.from_pylist(rows, schema=CONTAINER_SCHEMA), path)
    return tuple(Container(**r) for r in rows)


@functools.cache
def convert_ranges(archive: str, layout_name: str, archive_dir: Path, n_tasks: int) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` container range of each of ``n_tasks`` convert tasks (about equal work)."""
    return split_evenly([c.weight for c in containers(archive, layout_name, archive_dir)], n_tasks)
