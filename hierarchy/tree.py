"""The semantic tree of ImageNet-21K-P (paper sections 2.2 and 3.3, appendix C.3).

Classes are the kept wnids, sorted; a class's index is its position. The parent of a class is its
nearest ancestor, along a single-parent is-a mapping, that is itself a class; its level
(hierarchy) is the number of its ancestors among the classes (roots are level 0). Semantic softmax
uses one softmax per level holding more than one class, weighted by the normalization factors of
the paper's eq. 3-4 as the released code computes them.

The functions below are pure; :class:`SemanticTree` bundles their results and reads/writes the
JSON form (a superset of the released tree's ``class_list`` / ``class_tree_list`` /
``class_description``).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hierarchy.atomic import atomic_write_bytes
from hierarchy.imagenet1k import imagenet1k_index
from hierarchy.isa import parent_mapping
from hierarchy.names import class_names

MAX_NORMALIZATION_FACTOR = 20.0
JSON_KEYS = ("class_description", "class_list", "class_tree_list", "level_of", "levels",
             "normalization_factors", "softmax_levels", "source", "target_table")
#: Keys written since a later version: checked when present, recomputed when absent (older files).
OPTIONAL_JSON_KEYS = ("imagenet1k_index",)


def kept_parents(class_list: Sequence[str], parents: Mapping[str, str | None]) -> list[int]:
    """For each class, the index of its nearest ancestor in ``class_list`` along ``parents``
    (``{child: parent}``, which may go through non-classes; a missing or ``None`` parent ends
    the walk), or -1 for a root. Walks above non-classes are memoized. Raises ``ValueError`` on
    a cycle of non-classes."""
    index = {wnid: i for i, wnid in enumerate(class_list)}
    above: dict[str, int] = {}  # non-class -> nearest class above it (or -1)
    result = []
    for wnid in class_list:
        path, seen = [], set()
        node = parents.get(wnid)
        while node is not None and node not in index and node not in above:
            if node in seen:
                raise ValueError(f"the is-a relation has a cycle through {node}")
            seen.add(node)
            path.append(node)
            node = parents.get(node)
        nearest = -1 if node is None else index[node] if node in index else above[node]
        above.update(dict.fromkeys(path, nearest))
        result.append(nearest)
    return result


def hierarchy_levels(parent_of: Sequence[int], class_list: Sequence[str]) -> list[int]:
    """Level of each class: its number of ancestors. Raises ``ValueError`` naming the classes
    of a cycle or a parent index out of range (``class_list`` is only used in messages)."""
    n = len(parent_of)
    bad = [class_list[i] for i, p in enumerate(parent_of) if not -1 <= p < n]
    if bad:
        raise ValueError(f"parent index out of range for {', '.join(bad[:20])}")
    level: list[int | None] = [None] * n
    for start in range(n):
        path, on_path = [], set()
        node = start
        while node != -1 and level[node] is None:
            if node in on_path:
                cycle = path[path.index(node):]
                raise ValueError("the parent relation has a cycle: "
                                 + " -> ".join(class_list[i] for i in cycle + [node]))
            on_path.add(node)
            path.append(node)
            node = parent_of[node]
        depth = -1 if node == -1 else level[node]
        for node in reversed(path):
            depth += 1
            level[node] = depth
    return level


def class_chains(parent_of: Sequence[int], level_of: Sequence[int]) -> list[list[int]]:
    """``[class, parent, grandparent, ...]`` for each class (the released ``class_tree_list``)."""
    chains: list[list[int]] = [[] for _ in parent_of]
    for i in sorted(range(len(parent_of)), key=level_of.__getitem__):  # parents before children
        parent = parent_of[i]
        chains[i] = [i] + (chains[parent] if parent != -1 else [])
    return chains


def count_per_level(level_of: Sequence[int]) -> list[int]:
    """Number of classes at each level 0..max level (all levels)."""
    counts = [0] * (max(level_of) + 1)
    for level in level_of:
        counts[level] += 1
    return counts


def softmax_depths(level_counts: Sequence[int]) -> list[int]:
    """The levels that get a softmax: those holding more than one class (a one-class softmax
    learns nothing). The released code's ``range(max_depth)`` also never keeps the deepest level;
    here every level with more than one class is kept."""
    return [level for level, count in enumerate(level_counts) if count > 1]


def normalization_factors(level_counts: Sequence[int], softmax_levels: Sequence[int],
                          max_factor: float = MAX_NORMALIZATION_FACTOR) -> list[float]:
    """Factor of each softmax level at depth ``d``: ``min(n_0 / n_d, max_factor)`` with ``n_d``
    the number of classes at level ``d`` or deeper (paper eq. 3-4 as the released code has it)."""
    at_or_below = np.cumsum(np.asarray(level_counts, dtype=np.int64)[::-1])[::-1]
    return [min(float(at_or_below[0] / at_or_below[d]), max_factor) for d in softmax_levels]


def level_groups(level_of: Sequence[int], softmax_levels: Sequence[int]) -> list[list[int]]:
    """For each softmax level, the sorted indices of its classes."""
    groups: dict[int, list[int]] = {depth: [] for depth in softmax_levels}
    for i, level in enumerate(level_of):
        if level in groups:
            groups[level].append(i)
    return [groups[depth] for depth in softmax_levels]


def semantic_target_table(chains: Sequence[Sequence[int]], levels: Sequence[Sequence[int]],
                          softmax_levels: Sequence[int]) -> np.ndarray:
    """int64 ``[num_classes, num_softmax_levels]``: at each softmax level, the position of the
    class's ancestor-or-self at that level within the level's group, or -1 where it has none.
    Aligned by level, so a dropped middle level shifts nothing."""
    position = {}
    for group in levels:
        position.update((cls, pos) for pos, cls in enumerate(group))
    table = np.full((len(chains), len(levels)), -1, dtype=np.int64)
    for i, chain in enumerate(chains):
        level = len(chain) - 1
        for k, depth in enumerate(softmax_levels):
            if depth <= level:
                table[i, k] = position[chain[level - depth]]
    return table


def format_tree_json(doc: Mapping[str, object]) -> str:
    """Deterministic JSON text: sorted top-level keys, one per line; mapping entries and the rows
    of lists of lists one per line; everything else compact."""
    def dump(value: object) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def block(value: object) -> str:
        if isinstance(value, Mapping) and value:
            return "{\n" + ",\n".join(f"  {dump(k)}: {dump(v)}" for k, v in value.items()) + "\n }"
        if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
            return "[\n" + ",\n".join(f"  {dump(row)}" for row in value) + "\n ]"
        return dump(value)

    return "{\n" + ",\n".join(f" {dump(key)}: {block(doc[key])}" for key in sorted(doc)) + "\n}\n"


class SemanticTree:
    """Semantic tree over sorted classes; build with :meth:`build`, :meth:`from_parents` or
    :meth:`load`.

    Attributes: ``class_list`` (wnids), ``class_description`` ({wnid: name}), ``source``,
    ``parent_of`` (parent index or -1), ``level_of`` (level of each class), ``class_tree_list``
    (chains), ``level_counts`` (classes per level, all levels), ``softmax_levels`` (level of each
    softmax), ``levels`` (sorted class indices of each softmax level), ``normalization_factors``
    (one per softmax level), ``target_table`` (int64 ``[num_classes, num_levels]``, see
    :func:`semantic_target_table`; index it with a batch of labels), ``imagenet1k_index``
    ({wnid: ImageNet-1K index} of the classes that are ImageNet-1K classes, sorted by wnid; see
    :mod:`hierarchy.imagenet1k`; computed when first used).
    """

    def __init__(self, class_list: Sequence[str], parent_of: Sequence[int],
                 class_description: Mapping[str, str] | None = None, source: str = "parents"):
        class_list = list(class_list)
        if not class_list:
            raise ValueError("a semantic tree needs at least one class")
        if class_list != sorted(set(class_list)):
            raise ValueError("class_list must be sorted and free of duplicates")
        if len(parent_of) != len(class_list):
            raise ValueError(f"{len(parent_of)} parents for {len(class_list)} classes")
        description = dict(class_description) if class_description is not None else {}
        unnamed = [w for w in class_list if class_description is not None and w not in description]
        if unnamed:
            raise ValueError(f"no name for {len(unnamed)} class(es): {', '.join(unnamed[:20])}")
        self.class_list = class_list
        self.class_description = {w: description.get(w, w) for w in class_list}
        self.source = source
        self.parent_of = [int(p) for p in parent_of]
        self.level_of = hierarchy_levels(self.parent_of, class_list)
        self.class_tree_list = class_chains(self.parent_of, self.level_of)
        self.level_counts = count_per_level(self.level_of)
        self.softmax_levels = softmax_depths(self.level_counts)
        self.levels = level_groups(self.level_of, self.softmax_levels)
        self.normalization_factors = normalization_factors(self.level_counts, self.softmax_levels)
        self.target_table = semantic_target_table(self.class_tree_list, self.levels,
                                                  self.softmax_levels)
        self._index = {wnid: i for i, wnid in enumerate(class_list)}
        self._imagenet1k_index: dict[str, int] | None = None

    # ----- construction -------------------------------------------------------------------

    @classmethod
    def from_parents(cls, wnids: Iterable[str], parents: Mapping[str, str | None],
                     names: Mapping[str, str] | None = None,
                     source: str = "parents") -> "SemanticTree":
        """Tree of ``wnids`` from a single-parent is-a mapping ``{child: parent}`` (which may
        name non-classes in between; ``None`` or no entry: a root). ``names`` defaults to the
        wnids themselves."""
        wnids = list(wnids)
        duplicates = sorted(w for w, count in Counter(wnids).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate class ids: {', '.join(duplicates[:20])}")
        class_list = sorted(wnids)
        return cls(class_list, kept_parents(class_list, parents), names, source)

    @classmethod
    def build(cls, wnids: Iterable[str], source: str = "wordnet",
              is_a_path: str | Path | None = None,
              words_path: str | Path | None = None) -> "SemanticTree":
        """Tree of the kept classes ``wnids`` with the is-a relation of ``source`` (``wordnet`` or
        ``is_a`` with ``is_a_path``; see :mod:`hierarchy.isa`) and names from ``words_path`` or
        WordNet. Raises ``ValueError`` naming the wnids the source cannot place."""
        wnids = list(wnids)
        parents = parent_mapping(wnids, source, is_a_path)
        return cls.from_parents(wnids, parents, class_names(wnids, words_path), source)

    # ----- queries ------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.class_list)

    @property
    def num_levels(self) -> int:
        """Number of softmax levels."""
        return len(self.levels)

    def index_of(self, wnid: str) -> int:
        try:
            return self._index[wnid]
        except KeyError:
            raise KeyError(f"{wnid} is not a class of this tree") from None

    @property
    def imagenet1k_index(self) -> dict[str, int]:
        """``{wnid: ImageNet-1K index}`` for the classes that are ImageNet-1K classes (sorted by
        wnid, i.e. in class order); raises :class:`~hierarchy.imagenet1k.ImageNet1kListMissing`
        without timm's list."""
        if self._imagenet1k_index is None:
            self._imagenet1k_index = imagenet1k_index(self.class_list)
        return dict(self._imagenet1k_index)

    def name(self, i: int) -> str:
        return self.class_description[self.class_list[i]]

    def chain(self, i: int) -> list[int]:
        """``[i, parent, grandparent, ...]``."""
        return list(self.class_tree_list[i])

    def ancestors(self, i: int) -> list[int]:
        """Ancestor indices of class ``i``, nearest first."""
        return list(self.class_tree_list[i][1:])

    def multi_hot_indices(self, i: int) -> list[int]:
        """Sorted indices of class ``i`` and its ancestors: its positive labels in the
        multi-label scheme."""
        return sorted(self.class_tree_list[i])

    def multi_hot_index_lists(self) -> list[list[int]]:
        """:meth:`multi_hot_indices` of every class."""
        return [sorted(chain) for chain in self.class_tree_list]

    def multi_hot_matrix(self) -> np.ndarray:
        """Dense bool ``[num_classes, num_classes]``, row ``i`` = multi-hot target of class ``i``
        (num_classes**2 bytes: meant for small trees)."""
        matrix = np.zeros((self.num_classes, self.num_classes), dtype=bool)
        for i, chain in enumerate(self.class_tree_list):
            matrix[i, chain] = True
        return matrix

    def summary(self) -> str:
        """Text table: level, classes, whether it has a softmax, its normalization factor."""
        factor = dict(zip(self.softmax_levels, self.normalization_factors))
        lines = [f"{self.num_classes} classes, source {self.source}, {self.num_levels} softmax levels "
                 f"(of {len(self.level_counts)} hierarchy levels)",
                 "level  classes  softmax   factor"]
        for level, count in enumerate(self.level_counts):
            shown = f"{factor[level]:8.3f}" if level in factor else f"{'-':>8}"
            lines.append(f"{level:5d}  {count:7d}  {'yes' if level in factor else 'no':>7}  {shown}")
        return "\n".join(lines) + "\n"

    def plot_levels(self, path: str | Path) -> None:
        """PNG bar chart of classes per level (paper Fig. 5), written atomically."""
        from hierarchy.plot import plot_level_counts

        plot_level_counts(self.level_counts, self.softmax_levels, path,
                          title=f"{self.num_classes} classes, source {self.source}")

    def __repr__(self) -> str:
        return (f"SemanticTree({self.num_classes} classes, {self.num_levels} softmax levels, "
                f"source={self.source!r})")

    # ----- JSON ---------------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, object]:
        """The JSON document (:data:`JSON_KEYS` and :data:`OPTIONAL_JSON_KEYS`) as plain Python values."""
        return dict(self._required_json(), imagenet1k_index=self.imagenet1k_index)

    def _required_json(self) -> dict[str, object]:
        """The fields of :data:`JSON_KEYS` (what every tree file holds)."""
        return {
            "class_description": dict(self.class_description),
            "class_list": list(self.class_list),
            "class_tree_list": [list(chain) for chain in self.class_tree_list],
            "level_of": list(self.level_of),
            "levels": [list(group) for group in self.levels],
            "normalization_factors": list(self.normalization_factors),
            "softmax_levels": list(self.softmax_levels),
            "source": self.source,
            "target_table": self.target_table.tolist(),
        }

    def save(self, path: str | Path) -> None:
        """Write the tree as deterministic JSON (same tree, same bytes), atomically."""
        atomic_write_bytes(path, format_tree_json(self.to_json_dict()).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> "SemanticTree":
        """Read a tree written by :meth:`save`; raises ``ValueError`` when the file is not such a
        tree or its stored fields disagree with the tree its ``class_tree_list`` describes. A file
        written before a key of :data:`OPTIONAL_JSON_KEYS` existed loads as well (the tree
        computes that field itself)."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
        missing = [key for key in JSON_KEYS if not isinstance(doc, dict) or key not in doc]
        if missing:
            raise ValueError(f"{path} is not a semantic tree file: missing {', '.join(missing)}")
        chains = doc["class_tree_list"]
        if len(chains) != len(doc["class_list"]) or any(
                not isinstance(chain, list) or not chain or chain[0] != i
                for i, chain in enumerate(chains)):
            raise ValueError(f"{path}: class_tree_list must hold one chain per class, "
                             "each starting with the class's own index")
        parent_of = [chain[1] if len(chain) > 1 else -1 for chain in chains]
        try:
            tree = cls(doc["class_list"], parent_of, doc["class_description"], doc["source"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        stored = tree._required_json()  # (imagenet1k_index needs timm's list: computed only to check it)
        if "imagenet1k_index" in doc:
            stored["imagenet1k_index"] = tree.imagenet1k_index
        wrong = [key for key in (*JSON_KEYS, *OPTIONAL_JSON_KEYS) if key in doc and stored[key] != doc[key]]
        if wrong:
            raise ValueError(f"{path}: {', '.join(wrong)} disagree(s) with the tree described by "
                             "class_list and class_tree_list")
        return tree
