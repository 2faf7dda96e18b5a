"""Stage 2 — count and filter: images per class, and which classes are kept.

The released ImageNet-21K-P script keeps classes with more than 500 images, i.e. ``min_images``
= 501. A class is also dropped when the semantic tree's source cannot place its wnid.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

CLASS_COUNTS_SCHEMA = pa.schema([
    ("wnid", pa.string()),
    ("n_images", pa.int64()),
    ("kept", pa.bool_()),
    ("drop_reason", pa.string()),  # null when kept; not_in_wordnet | too_few_images
])


def drop_duplicate_keys(index: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split ``index`` into first occurrences and later duplicates of the same key.

    Rows are assumed sorted by (wnid, member, source, offset) as the index stage writes them.
    """
    keys = index.column("key")
    if pc.count_distinct(keys).as_py() == index.num_rows:
        return index, index.slice(0, 0)
    import numpy as np

    _, first = np.unique(keys.to_numpy(zero_copy_only=False), return_index=True)
    is_first = np.zeros(index.num_rows, dtype=bool)
    is_first[first] = True
    return index.filter(pa.array(is_first)), index.filter(pa.array(~is_first))


def count_and_filter(index: pa.Table, min_images: int, is_placeable: Callable[[str], bool],
                     extra_wnids: list[str] = ()) -> pa.Table:
    """One row per class: image count, kept flag and the reason a class is dropped.

    ``extra_wnids`` are classes that exist in the archive with no image rows (e.g. an empty
    class tar); they appear with ``n_images=0``.
    """
    counts = index.group_by("wnid").aggregate([("key", "count")])
    n_by_wnid = dict(zip(counts.column("wnid").to_pylist(), counts.column("key_count").to_pylist()))
    for w in extra_wnids:
        n_by_wnid.setdefault(w, 0)
    rows = []
    for wnid in sorted(n_by_wnid):
        n = n_by_wnid[wnid]
        if not is_placeable(wnid):
            reason = "not_in_wordnet"
        elif n < min_images:
            reason = "too_few_images"
        else:
            reason = None
        rows.append(dict(wnid=wnid, n_images=n, kept=reason is None, drop_reason=reason))
    return pa.Table.from_pylist(rows, schema=CLASS_COUNTS_SCHEMA)


def kept_wnids(class_counts: pa.Table) -> list[str]:
    """Sorted wnids of the kept classes (the class list; index = position)."""
    return sorted(class_counts.filter(class_counts.column("kept")).column("wnid").to_pylist())
