"""pipeline.outputs: Parquet files identical on every rerun, in the row groups asked for."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.outputs import write_parquet


def test_the_same_table_gives_the_same_bytes_and_row_groups_as_asked(tmp_path):
    table = pa.table({"key": [f"k{i}" for i in range(10)], "n": list(range(10))})
    write_parquet(table, tmp_path / "a.parquet", row_groups=[4, 4, 2])
    write_parquet(table, tmp_path / "b.parquet", row_groups=[4, 4, 2])
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2]
    assert pq.read_table(tmp_path / "a.parquet").equals(table)
    with pytest.raises(ValueError, match="row groups of 9 rows for a table of 10"):
        write_parquet(table, tmp_path / "c.parquet", row_groups=[9])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]
