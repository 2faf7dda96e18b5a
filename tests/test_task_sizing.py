"""pipeline.task_sizing and pipeline.work_dirs: how a build is cut into tasks and where their files go."""
from __future__ import annotations

import random

from pipeline import task_sizing, work_dirs


def test_split_evenly_gives_contiguous_non_empty_ranges_of_about_equal_weight():
    rng = random.Random(0)
    weights = [rng.randint(1, 1000) for _ in range(500)]
    for n in (1, 2, 7, 32, 499, 500, 900):
        ranges = task_sizing.split_evenly(weights, n)
        assert len(ranges) == min(n, len(weights))
        assert ranges[0][0] == 0 and ranges[-1][1] == len(weights)
        assert all(lo < hi for lo, hi in ranges) and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sums = [sum(weights[lo:hi]) for lo, hi in task_sizing.split_evenly(weights, 10)]
    assert max(sums) - min(sums) <= 2 * max(weights)


def test_task_counts_follow_the_archive_size_and_never_exceed_the_containers():
    gib = task_sizing.CONVERT_TASK_BYTES
    assert task_sizing.convert_task_count(1300 * gib, 21841) == 1300
    assert task_sizing.convert_task_count(1 * gib, 21841) == task_sizing.MIN_CONVERT_TASKS
    assert task_sizing.convert_task_count(1300 * gib, 10) == 10
    assert task_sizing.convert_task_count(10 ** 15, 10 ** 6) == task_sizing.MAX_TASKS
    assert task_sizing.convert_task_count(1300 * gib, 21841, requested=5) == 5
    assert task_sizing.shard_task_count(10, 5000) == 1
    assert task_sizing.shard_task_count(10, 5000, requested=3) == 3


def test_work_folder_names_are_stable_across_releases():
    # these names are on users' disks: a change here makes every rerun start over
    assert work_dirs.digest({"a": 1}, 5000, None) == "4de9bccc4257"
    assert work_dirs.file_identity("") is None
