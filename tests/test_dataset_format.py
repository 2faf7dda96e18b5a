"""pipeline.dataset_format: the names both sides use, and that the trainer gets them without Luigi."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.dataset_format import info_json, read_build_parameters, shard_name

ROOT = Path(__file__).resolve().parents[1]


def test_shard_names_and_the_info_file():
    assert shard_name("train", 42) == "train/imagenet21kp-train-000042.tar"
    info = info_json({shard_name("train", 1): 5, shard_name("train", 0): 7, shard_name("validation", 0): 3})
    assert info == {"name": "imagenet21kp", "splits": {
        "train": {"name": "train", "num_samples": 12, "filenames": [shard_name("train", 0), shard_name("train", 1)],
                  "shard_lengths": [7, 5]},
        "validation": {"name": "validation", "num_samples": 3, "filenames": [shard_name("validation", 0)],
                       "shard_lengths": [3]}}}


def test_build_parameters_are_empty_without_stats(tmp_path):
    assert read_build_parameters(tmp_path) == {}
    (tmp_path / "stats.json").write_text('{"parameters": {"image_size": 192}}')
    assert read_build_parameters(tmp_path) == {"image_size": 192}


def test_the_trainer_and_the_tree_load_without_luigi():
    code = ("import sys, trainer.train, trainer.predict, trainer.data, hierarchy, pipeline.images, pipeline.dataset_format; "
            "print(sorted(m for m in ('luigi', 'pipeline.tasks') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-2000:]


def test_the_manifest_names_are_part_of_the_format():
    from pipeline.dataset_format import MANIFEST_FILE, SIZES_FILE

    assert (MANIFEST_FILE, SIZES_FILE) == ("SHA256SUMS", "_sizes.json")
