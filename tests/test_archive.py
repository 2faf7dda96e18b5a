"""Archive reading in place: layouts, the outer header scan, class tars read front to back, truncation, bad names."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipeline.archive import ArchiveError, detect_layout, list_containers
from pipeline.members import member_name_problem
from pipeline.streams import BlockStream, file_blocks
from pipeline.tarstream import TarReader

WNID = "n01440764"


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def outer_tar(tmp_path) -> Path:
    inner = {
        f"{WNID}.tar": _tar_bytes({f"{WNID}_10.JPEG": b"a" * 700, f"{WNID}_2.JPEG": b"bb", f"{WNID}_3.txt": b"x",
                                  f"../{WNID}_4.JPEG": b"evil", "n02084071_5.JPEG": b"other"}),
        "n02084071.tar": _tar_bytes({"n02084071_1.JPEG": b"dog" * 300}),
        "README.txt": b"not a class",
    }
    path = tmp_path / "fall11.tar"
    path.write_bytes(_tar_bytes(inner))
    return path


def test_layouts_are_detected(outer_tar, tmp_path):
    assert detect_layout(outer_tar) == "tar"
    (tmp_path / "tars").mkdir()
    (tmp_path / "tars" / f"{WNID}.tar").write_bytes(_tar_bytes({f"{WNID}_1.JPEG": b"x"}))
    assert detect_layout(tmp_path / "tars") == "tars-dir"
    (tmp_path / "folders" / WNID).mkdir(parents=True)
    assert detect_layout(tmp_path / "folders") == "folders-dir"
    with pytest.raises(ArchiveError, match="not found"):
        detect_layout(tmp_path / "missing.tar")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ArchiveError, match="is not a tar"):
        detect_layout(tmp_path / "notes.txt")


def read_class_tar(path, container) -> dict[str, bytes]:
    """Members of one class tar of the outer tar, read front to back from its byte range."""
    out = {}
    end = container.offset + container.size
    with BlockStream(file_blocks(path, container.offset, end), offset=container.offset) as stream:
        reader = TarReader(stream, end)
        for entry in reader:
            out[entry.name] = reader.read_data()
        reader.finish()
        assert stream.tell() == end
    return out


def test_containers_are_listed_in_byte_order_and_read_in_place(outer_tar):
    containers = list_containers(outer_tar, "tar")
    assert [c.name for c in containers] == [f"{WNID}.tar", "n02084071.tar", "README.txt"]
    assert containers[2].wnid is None and containers[2].kind == "other"
    assert [c.offset for c in containers] == sorted(c.offset for c in containers)
    members = read_class_tar(outer_tar, containers[0])
    assert members[f"{WNID}_10.JPEG"] == b"a" * 700 and members[f"{WNID}_2.JPEG"] == b"bb"
    assert read_class_tar(outer_tar, containers[1]) == {"n02084071_1.JPEG": b"dog" * 300}


def test_a_class_tar_stored_twice_is_listed_as_a_duplicate(tmp_path):
    one = _tar_bytes({f"{WNID}_1.JPEG": b"x"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name in (f"{WNID}.tar", "n02084071.tar", f"{WNID}.tar"):
            ti = tarfile.TarInfo(name)
            ti.size = len(one)
            tf.addfile(ti, io.BytesIO(one))
    path = tmp_path / "twice.tar"
    path.write_bytes(buf.getvalue())
    assert [c.kind for c in list_containers(path, "tar")] == ["tar", "tar", "duplicate"]


def test_the_header_scan_reads_headers_only(outer_tar, monkeypatch):
    import os

    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    list_containers(outer_tar, "tar")
    assert reads and set(reads) == {512}


@pytest.mark.parametrize("name,reason", [
    ("/etc/passwd", "unsafe_member_name"), (f"{WNID}/x/{WNID}_1.JPEG", "unexpected_directory"),
    (f"{WNID}_x.JPEG", "bad_member_name"), (f"{WNID}_1.JPEG", None), (f"{WNID}_1.jpg", None),
])
def test_member_name_rules(name, reason):
    problem = member_name_problem(name, WNID)
    assert (problem[0] if problem else None) == reason


def test_truncated_outer_archive_names_the_byte_offset(outer_tar, tmp_path):
    data = outer_tar.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"truncated archive .* byte \d+"):
        list_containers(cut, "tar")


def test_a_corrupt_or_lying_outer_header_names_the_byte_offset(outer_tar, tmp_path):
    containers = list_containers(outer_tar, "tar")
    second = containers[1].offset - 512  # the second class tar's header
    data = bytearray(outer_tar.read_bytes())
    data[second] ^= 1  # its checksum fails
    (tmp_path / "corrupt.tar").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=rf"truncated or corrupt archive .*: unreadable header at byte {second}: "):
        list_containers(tmp_path / "corrupt.tar", "tar")
    cut = outer_tar.read_bytes()[:containers[1].offset + 100]  # the header stays, its class tar is cut
    (tmp_path / "cut.tar").write_bytes(cut)
    with pytest.raises(ArchiveError, match=rf"member 'n02084071.tar' at byte {containers[1].offset} needs "
                                           rf"{containers[1].size} bytes but the file ends at byte {len(cut)}"):
        list_containers(tmp_path / "cut.tar", "tar")
