"""pipeline.streams: blocks read ahead in a thread, file ranges by pread, gzip inflated once."""
from __future__ import annotations

import gzip
import os

import pytest

from pipeline.streams import BlockStream, StreamError, file_blocks, gzip_blocks, read_files_ahead


def test_read_skip_and_tell_across_blocks():
    data = bytes(range(256)) * 40
    with BlockStream(iter([data[i:i + 300] for i in range(0, len(data), 300)]), offset=1000) as s:
        assert s.read(10) == data[:10] and s.tell() == 1010
        assert s.skip(595) == 595 and s.read(700) == data[605:1305]
        assert s.read(len(data)) == data[1305:] and s.tell() == 1000 + len(data)
        assert s.read(5) == b"" and s.skip(5) == 0


def test_errors_of_the_source_reach_the_reader_and_close_stops_early():
    def broken():
        yield b"abc"
        raise OSError("disk on fire")
    with BlockStream(broken()) as s:
        assert s.read(3) == b"abc"
        with pytest.raises(StreamError, match="disk on fire"):
            s.read(1)
    endless = iter(lambda: b"x" * 1000, None)
    with BlockStream(endless, prefetch=2) as s:
        s.read(10)  # leaving the block early must not hang


def test_file_blocks_reads_exactly_the_range_front_to_back(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(10_000))
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: calls.append((off, n)) or real(fd, n, off))
    assert b"".join(file_blocks(path, 1234, 9000, block=4096)) == path.read_bytes()[1234:9000]
    assert calls == [(1234, 4096), (5330, 3670)]
    assert b"".join(file_blocks(path, 9000, 20_000)) == path.read_bytes()[9000:]  # a short file ends early


@pytest.mark.parametrize("threads", [1, 2])
def test_gzip_all_members_and_damage(tmp_path, threads):
    one, two = os.urandom(300_000), b"second member " * 1000
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(one, mtime=0) + gzip.compress(two, mtime=0))
    assert b"".join(gzip_blocks(path, threads)) == one + two
    corrupt = bytearray(path.read_bytes())
    corrupt[5000:5100] = bytes(100)
    (tmp_path / "corrupt.gz").write_bytes(bytes(corrupt))
    with pytest.raises(StreamError, match="corrupt gzip data"):
        b"".join(gzip_blocks(tmp_path / "corrupt.gz", threads))
    (tmp_path / "cut.gz").write_bytes(path.read_bytes()[:200_000])
    if threads == 1:
        with pytest.raises(StreamError, match="truncated"):
            b"".join(gzip_blocks(tmp_path / "cut.gz"))
    else:  # rapidgzip gives what it could inflate; the tar layer above reports the cut
        assert one.startswith(b"".join(gzip_blocks(tmp_path / "cut.gz", threads)))


def test_files_read_ahead_in_order_with_their_errors(tmp_path):
    paths = []
    for i in range(20):
        (tmp_path / str(i)).write_bytes(b"%d" % i)
        paths.append(str(tmp_path / str(i)))
    paths.insert(5, str(tmp_path / "missing"))
    got = list(read_files_ahead(paths, lambda p: open(p, "rb").read(), prefetch=3))
    assert [p for p, _ in got] == paths
    assert isinstance(got[5][1], OSError) and got[6][1] == b"5"


def test_pread_stream_reads_what_is_asked_and_skips_by_seeking(tmp_path, monkeypatch):
    from pipeline.streams import MemoryStream, PreadStream

    data = os.urandom(5000)
    (tmp_path / "f").write_bytes(data)
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: calls.append((off, n)) or real(fd, n, off))
    with PreadStream(tmp_path / "f") as s:
        assert s.read(10) == data[:10] and s.skip(3000) == 3000 and s.tell() == 3010
        assert s.read(4000) == data[3010:] and s.skip(5) == 0 and s.read(5) == b""
    assert calls == [(0, 10), (3010, 1990)]  # the skip read nothing; nothing asked past the end
    m = MemoryStream(data, offset=100)
    assert m.read(10) == data[:10] and m.skip(4000) == 4000 and m.tell() == 4110
    assert m.read(5000) == data[4010:] and m.skip(1) == 0
