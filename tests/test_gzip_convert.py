"""pipeline.gzip_convert: the winter21 stream inflated once, converted by processes, resumable by part."""
from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

import pipeline.gzip_convert as gz
from archive_fixtures import OTHER_WNID, WNID, class_members, lying_class_tar, outer_tar, tar_bytes
from pipeline.archive import ArchiveError, list_containers
from pipeline.convert import ConvertSettings, convert_tar_range

SETTINGS = ConvertSettings(min_images=3, val_per_class=1, image_size=64)
KNOWN = lambda wnid: wnid != "n99999999"  # noqa: E731
CLASSES = [(f"{WNID}.tar", tar_bytes(class_members(WNID, 6))),
           (f"{OTHER_WNID}.tar", lying_class_tar(class_members(OTHER_WNID, 5))[0]),
           ("n00015388.tar", tar_bytes(class_members("n00015388", 2))),
           ("n99999999.tar", tar_bytes(class_members("n99999999", 4))),
           ("README.txt", b"not a class")]


def read_parts(bases):
    samples, rejects, classes = [], [], []
    for base in bases:
        blob = open(f"{base}.bin", "rb").read()
        samples += [(r["key"], r["split"], blob[r["offset"]:r["offset"] + r["length"]])
                    for r in pq.read_table(f"{base}.samples.parquet").to_pylist()]
        rejects += [(r["member"], r["reason"]) for r in pq.read_table(f"{base}.rejects.parquet").to_pylist()]
        classes += pq.read_table(f"{base}.classes.parquet").to_pylist()
    return sorted(samples), sorted(rejects), sorted(classes, key=lambda c: c["wnid"])


@pytest.fixture
def archives(tmp_path):
    return outer_tar(tmp_path / "a.tar", CLASSES), outer_tar(tmp_path / "a.tar.gz", CLASSES, gz=True)


def test_the_stream_gives_what_the_tar_gives(archives, tmp_path):
    tar, tar_gz = archives
    ref = convert_tar_range(tar, list_containers(tar, "tar"), SETTINGS, KNOWN)
    ref.write(tmp_path / "ref")
    parts_dir = tmp_path / "parts"
    bases = gz.convert_gzip(tar_gz, parts_dir, SETTINGS, KNOWN, processes=2)
    got, want = read_parts(bases), read_parts([tmp_path / "ref"])
    assert got[0] == want[0] and len(got[0]) == 6 + 5
    assert got[1] == want[1] and got[2] == want[2]
    assert not list(parts_dir.glob("spool-*"))  # the spool is gone


def test_a_rerun_converts_only_the_classes_of_lost_parts(archives, tmp_path):
    parts_dir = tmp_path / "parts"
    first = gz.convert_gzip(archives[1], parts_dir, SETTINGS, KNOWN, processes=2, part_bytes=1)  # a part per class
    holding = [b for b in first if not b.endswith("-main") and
               WNID in pq.read_table(f"{b}.classes.parquet").column("wnid").to_pylist()]
    os.unlink(holding[0] + ".json")  # as if killed before that part was complete
    second = gz.convert_gzip(archives[1], parts_dir, SETTINGS, KNOWN, processes=2, part_bytes=1)
    assert holding[0] not in second and all(b in second for b in first if b not in holding and not b.endswith("-main"))
    samples, _, classes = read_parts(second)
    assert len(samples) == 11 and [c["wnid"] for c in classes] == sorted({c["wnid"] for c in classes})


def test_a_converter_failure_stops_the_stream_with_its_traceback(archives, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise MemoryError("converter ran out of memory")
    monkeypatch.setattr(gz, "convert_tar_bytes", boom)
    with pytest.raises(RuntimeError, match="converter ran out of memory"):
        gz.convert_gzip(archives[1], tmp_path / "parts", SETTINGS, KNOWN, processes=2)


def test_a_truncated_stream_is_an_archive_error(archives, tmp_path):
    data = archives[1].read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"truncated .*byte \d+"):
        gz.convert_gzip(cut, tmp_path / "parts", SETTINGS, KNOWN, processes=1)
