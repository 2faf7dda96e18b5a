"""The raw archive is read once, front to back: every read of a real build traced with strace."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tools.demo_archive import make_archive

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from read_pattern import TARGET_JUMP, TARGET_READ, read_pattern  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
ARGS = ["--min-images", "31", "--val-per-class", "5", "--samples-per-shard", "64"]


@pytest.mark.parametrize("layout", ["tar", "tar.gz", "tars-dir", "folders-dir"])
def test_every_byte_is_read_at_most_once_in_increasing_order(layout, tmp_path):
    archive = make_archive(tmp_path / f"demo.{layout}", format=layout, seed=2).path
    figures = read_pattern(archive, tmp_path / "ds", ARGS)
    assert figures["read"] <= TARGET_READ and figures["jumped"] <= TARGET_JUMP
    assert figures["backwards"] == 0
    if layout in ("tar.gz", "tars-dir", "folders-dir"):
        assert figures["jumped"] == 0  # no header scan: nothing to jump over
