"""pipeline.progress: the command's bar estimates images from every task's report file."""
from __future__ import annotations

import json

from pipeline.progress import IMAGES_PER_BYTE, BuildProgress, Work, report_file


def test_images_are_estimated_from_fractions_and_the_measured_images_per_byte(tmp_path):
    convert = [Work("a", 1000, images=10), Work("b", 1000), Work("c", 2000)]  # a finished before this run
    bar = BuildProgress(tmp_path, convert, [], weight_is_images=False, force=True)
    done, total = bar.images_estimate()
    assert (done, total) == (10, 10 + 3000 * 0.01)  # 10 images per 1000 bytes, measured on a
    report_file(tmp_path, "b").write_text(json.dumps({"fraction": 0.5}))
    report_file(tmp_path, "c").write_text(json.dumps({"fraction": 1.0, "images": 50}))
    assert bar.images_estimate() == (10 + 0.5 * 1000 * 60 / 3000 + 50, 10 + 1000 * 60 / 3000 + 50)
    fresh = BuildProgress(tmp_path / "none", [Work("x", 85_000)], [], weight_is_images=False)
    assert fresh.images_estimate() == (0, 85_000 * IMAGES_PER_BYTE)  # before any task has finished
    folders = BuildProgress(tmp_path / "none", [Work("x", 40)], [], weight_is_images=True)
    assert folders.images_estimate() == (0, 40)
