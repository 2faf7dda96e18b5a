"""pipeline.assemble: which shards a task writes, coalesced part reads, bounded open files."""
from __future__ import annotations

import os

from pipeline.assemble import PartFiles, shard_range


def test_shard_ranges_cover_everything_once_in_order():
    counts = {"train": 7, "validation": 3}
    got = [s for task in range(4) for s in shard_range(counts, task, 4)]
    assert [g for _, _, g in got] == list(range(10))
    assert got[6][:2] == ("train", 6) and got[7][:2] == ("validation", 0)
    assert all(shard_range(counts, t, 4) for t in range(4))


def test_adjacent_spans_are_read_with_one_pread(tmp_path, monkeypatch):
    (tmp_path / "p.bin").write_bytes(bytes(range(100)))
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: calls.append((off, n)) or real(fd, n, off))
    parts = PartFiles([str(tmp_path / "p")])
    got = parts.read_runs(0, [(10, 5), (15, 5), (20, 2), (50, 3)])
    parts.close()
    assert [bytes(g) for g in got] == [bytes(range(10, 15)), bytes(range(15, 20)), bytes([20, 21]), bytes([50, 51, 52])]
    assert calls == [(10, 12), (50, 3)]


def test_part_files_stay_under_their_open_limit(tmp_path):
    for name in "ab":
        (tmp_path / f"{name}.bin").write_bytes(name.encode() * 10)
    parts = PartFiles([str(tmp_path / "a"), str(tmp_path / "b")], max_open=1)
    for _ in range(3):
        assert [bytes(x) for x in parts.read_runs(0, [(0, 2)]) + parts.read_runs(1, [(3, 1)])] == [b"aa", b"b"]
        assert len(parts._fds) == 1
    parts.close()


def test_a_shard_is_intact_at_its_recorded_size_with_one_stat(tmp_path, monkeypatch):
    from pipeline.assemble import read_summary, shards_intact

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tar").write_bytes(b"x" * 1024)
    entries = [{"name": "train/a.tar", "size": 1024, "sha256": "0" * 64}]
    stats, real = [], os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(p) or real(p, *a, **k))
    assert shards_intact(tmp_path, entries) and len(stats) == 1
    monkeypatch.undo()
    assert shards_intact(tmp_path, [{"name": "train/a.tar"}])  # a summary from before checksums: exists
    assert not shards_intact(tmp_path, [dict(entries[0], size=2048)])
    assert not shards_intact(tmp_path, [{"name": "train/b.tar", "size": 1}])
    assert read_summary(tmp_path / "none.json") == {}
    (tmp_path / "g.json").write_text('{"shards": [{"name": "train/a.tar", "size": 1024}]}')
    assert read_summary(tmp_path / "g.json") == {"train/a.tar": {"name": "train/a.tar", "size": 1024}}
