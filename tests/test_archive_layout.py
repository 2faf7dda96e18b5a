"""pipeline.archive_layout: every layout the archive reader names has a type that answers for it."""
from __future__ import annotations

import pytest

from pipeline import archive
from pipeline.archive import Container, layout_of
from pipeline.archive_layout import LAYOUTS, RAW_BYTES_PER_IMAGE


def test_every_detected_layout_has_a_type_and_a_converter():
    assert set(LAYOUTS) == set(archive.LAYOUTS)
    for layout in LAYOUTS.values():
        assert callable(layout.converter()), layout.name
        assert layout.one_stream or callable(layout.lister()), layout.name
        assert str(layout) == layout.name
    assert {n for n, lay in LAYOUTS.items() if lay.one_stream} == {"tar.gz", "released.tar.gz"}
    assert {n for n, lay in LAYOUTS.items() if lay.released} == {"released", "released.tar.gz"}
    assert {n for n, lay in LAYOUTS.items() if lay.weighed_in_files} == {"folders-dir", "released"}


def test_raw_bytes_is_the_file_the_tars_or_the_files_times_an_image(tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(b"x" * 1234)
    tars = [Container("n1.tar", "n00000001", "n1.tar", 0, 100, "tar", 100),
            Container("n2.tar", "n00000002", "n2.tar", 0, 50, "tar", 50)]
    folders = [Container("n1", "n00000001", "n1", 0, 0, "folder", 3)]
    assert LAYOUTS["tar"].raw_bytes(path, []) == 1234
    assert LAYOUTS["tars-dir"].raw_bytes(tmp_path, tars) == 150
    assert LAYOUTS["folders-dir"].raw_bytes(tmp_path, folders) == 3 * RAW_BYTES_PER_IMAGE
    assert LAYOUTS["released"].raw_bytes(tmp_path, folders) < 3 * RAW_BYTES_PER_IMAGE


def test_layout_of_names_the_problem(tmp_path):
    (tmp_path / "n00000001").mkdir()
    assert layout_of(tmp_path).name == "folders-dir"
    with pytest.raises(archive.ArchiveError, match="not a tar"):
        bad = tmp_path / "bad.bin"
        bad.write_bytes(b"hello")
        layout_of(bad)
