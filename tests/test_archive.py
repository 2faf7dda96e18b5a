"""Archive reading in place: layouts, header scans with seeks, byte ranges, truncation, bad names."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipeline.archive import ArchiveError, ArchiveReader, detect_layout, list_containers, list_members
from pipeline.index import index_container, member_name_problem

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


def test_members_are_addressed_by_byte_ranges_in_place(outer_tar):
    containers = {c.name: c for c in list_containers(outer_tar, "tar")}
    assert containers["README.txt"].wnid is None
    members = {m.name: m for m in list_members(outer_tar, containers[f"{WNID}.tar"])}
    with ArchiveReader(outer_tar) as reader:
        m = members[f"{WNID}_10.JPEG"]
        assert reader.read(m.source, m.offset, m.size) == b"a" * 700
        m = members[f"{WNID}_2.JPEG"]
        assert reader.read(m.source, m.offset, m.size) == b"bb"


def test_bad_member_names_are_rejected_with_reasons(outer_tar):
    containers = {c.name: c for c in list_containers(outer_tar, "tar")}
    result = index_container(outer_tar, containers[f"{WNID}.tar"])
    assert sorted(r["key"] for r in result.rows) == [f"{WNID}_10", f"{WNID}_2"]
    reasons = {r["member"]: r["reason"] for r in result.rejects}
    assert reasons == {f"{WNID}_3.txt": "not_an_image_name", f"../{WNID}_4.JPEG": "unsafe_member_name",
                       "n02084071_5.JPEG": "wnid_mismatch"}
    junk = index_container(outer_tar, containers["README.txt"])
    assert [r["reason"] for r in junk.rejects] == ["not_a_class_container"] and not junk.rows


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
