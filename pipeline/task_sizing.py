"""How many tasks a build is split into, and which class containers each convert task reads.

Every task has work to do: the convert task count never exceeds the number of containers, and
the shard task count is estimated from the archive's bytes with a large size per image, so the
estimate of the shard count errs low and no shard task goes empty.
"""
from __future__ import annotations

import bisect
import itertools
import math

#: Automatic convert task count: about one per CONVERT_TASK_BYTES of raw archive, at least
#: MIN_CONVERT_TASKS (never more than there are containers), at most MAX_TASKS.
CONVERT_TASK_BYTES = 1 << 30
MIN_CONVERT_TASKS, MAX_TASKS = 32, 2048
#: Shard tasks: a conservative (large) raw size per image; about SHARDS_PER_TASK shards each.
RAW_BYTES_PER_IMAGE_HIGH = 150_000
SHARDS_PER_TASK = 2


def convert_task_count(raw_bytes: int, n_containers: int, requested: int = 0) -> int:
    """Convert tasks over ``n_containers`` class containers (``requested`` 0: automatic)."""
    wanted = requested or max(MIN_CONVERT_TASKS, math.ceil(raw_bytes / CONVERT_TASK_BYTES))
    return max(1, min(wanted, n_containers, MAX_TASKS))


def shard_task_count(raw_bytes: int, samples_per_shard: int, requested: int = 0) -> int:
    """Shard-writing tasks (``requested`` 0: from the archive's size)."""
    if requested > 0:
        return requested
    estimated_shards = raw_bytes / (RAW_BYTES_PER_IMAGE_HIGH * samples_per_shard)
    return max(1, min(MAX_TASKS, round(estimated_shards / SHARDS_PER_TASK)))


def split_evenly(weights: list[int], n: int) -> list[tuple[int, int]]:
    """``n`` contiguous, non-empty ``[lo, hi)`` ranges over ``weights`` with about equal sums
    (``n`` is capped at ``len(weights)``)."""
    n = max(1, min(n, len(weights)))
    cum = list(itertools.accumulate(weights))
    total = cum[-1] if cum else 0
    cuts, prev = [], 0
    for k in range(1, n):
        target = total * k / n
        i = bisect.bisect_left(cum, target) + 1  # the first end whose sum reaches the target
        if i > 1 and target - cum[i - 2] < cum[i - 1] - target:
            i -= 1  # ending one item earlier is closer to the target
        i = min(max(i, prev + 1), len(weights) - (n - k))  # every range keeps at least one item
        cuts.append(i)
        prev = i
    bounds = [0, *cuts, len(weights)]
    return list(zip(bounds[:-1], bounds[1:]))
