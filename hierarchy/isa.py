"""The is-a relation as a single-parent mapping ``{child wnid: parent wnid}``, from two sources.

``wordnet`` (default)
    WordNet 3.0 hypernyms and instance hypernyms, read through nltk. Where a synset has several
    (1,422 of the 74,389 children in ImageNet's is-a file), :func:`choose_parent` keeps the one
    with the shortest longest-path to the root, then the one with the longest shortest-path to
    the root, then the smallest wnid. The choice does not depend on which classes are kept, so
    the walk above a class goes through non-kept synsets exactly as it does with ``is_a``.
    (nltk 3.10 returns hypernyms in ``set`` order, which changes with ``PYTHONHASHSEED``: "the
    first hypernym" is not a deterministic rule.)

``is_a``
    ImageNet's ``wordnet.is_a.txt`` (``parent child`` per line). Where a child is listed under
    several parents, the last listed one wins: this reproduces the released ImageNet-21K-P tree.
    A wnid the file never mentions is a root when it is a WordNet noun (the sun, ``n09450163``,
    is such a class of the official lists).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path

from hierarchy.wordnet import hypernym_wnids, is_known_wnid

SOURCES = ("wordnet", "is_a")


def read_is_a(path: str | Path) -> dict[str, str]:
    """Parse an is-a file (``parent child`` per line) into ``{child: parent}``; the last listed
    parent of a child wins. Raises ``ValueError`` naming the first malformed line."""
    parents: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'parent child', got {line.strip()!r}")
            parent, child = fields
            parents[child] = parent
    return parents


def wordnet_hypernyms(wnid: str) -> tuple[str, ...]:
    """The wnids of a synset's hypernyms and instance hypernyms, sorted."""
    return hypernym_wnids(wnid)


def choose_parent(hypernyms: Iterable[str], depth_range: Callable[[str], tuple[int, int]]) -> str:
    """The hypernym the ``wordnet`` source follows: the smallest maximum depth, then the largest
    minimum depth, then the smallest wnid. ``depth_range(h)`` is ``(min depth, max depth)``,
    counted in edges up to the root."""
    return min(hypernyms, key=lambda h: (depth_range(h)[1], -depth_range(h)[0], h))


def single_parent_mapping(wnids: Iterable[str],
                          hypernyms_of: Callable[[str], tuple[str, ...]]) -> dict[str, str]:
    """``{child: parent}`` for every node reachable upward from ``wnids`` that has a hypernym,
    with the parent picked by :func:`choose_parent`. ``hypernyms_of`` is called once per node.
    Raises ``ValueError`` when the hypernym graph has a cycle."""
    hypernyms_of = functools.lru_cache(maxsize=None)(hypernyms_of)
    depths: dict[str, tuple[int, int]] = {}
    in_progress: set[str] = set()

    def depth_range(node: str) -> tuple[int, int]:
        if node not in depths:
            if node in in_progress:
                raise ValueError(f"the is-a relation has a cycle through {node}")
            in_progress.add(node)
            above = [depth_range(h) for h in hypernyms_of(node)]
            in_progress.discard(node)
            depths[node] = ((1 + min(a[0] for a in above), 1 + max(a[1] for a in above))
                            if above else (0, 0))
        return depths[node]

    parents: dict[str, str] = {}
    pending = list(wnids)
    while pending:
        node = pending.pop()
        if node in parents:
            continue
        hypernyms = hypernyms_of(node)
        if hypernyms:
            parents[node] = choose_parent(hypernyms, depth_range)
            pending.append(parents[node])
    return parents


def unknown_wnids(wnids: Iterable[str], source: str = "wordnet",
                  is_a_path: str | Path | None = None) -> list[str]:
    """The wnids (in input order, once each) that ``source`` cannot place in the tree: for
    ``wordnet`` those that are not WordNet 3.0 nouns; for ``is_a`` those the file never mentions
    that are not WordNet 3.0 nouns either."""
    is_placeable = placeable(source, is_a_path)
    return [w for w in dict.fromkeys(wnids) if not is_placeable(w)]


def placeable(source: str = "wordnet", is_a_path: str | Path | None = None) -> Callable[[str], bool]:
    """A cheap test of whether ``source`` can place a wnid (see :func:`unknown_wnids`); the
    is-a file is read once, WordNet is looked up by one seek per wnid (no nltk load)."""
    _check_source(source, is_a_path)
    if source != "is_a":
        return is_known_wnid
    parents = read_is_a(is_a_path)
    mentioned = set(parents) | set(parents.values())
    return lambda wnid: wnid in mentioned or is_known_wnid(wnid)


def parent_mapping(wnids: Iterable[str], source: str = "wordnet",
                   is_a_path: str | Path | None = None) -> dict[str, str]:
    """The ``{child: parent}`` mapping of ``source`` covering every ancestor of ``wnids``.

    Raises ``ValueError`` naming the wnids the source cannot place (see :func:`unknown_wnids`).
    """
    _check_source(source, is_a_path)
    wnids = list(dict.fromkeys(wnids))
    is_a_parents = read_is_a(is_a_path) if source == "is_a" else None
    unknown = unknown_wnids(wnids, source, is_a_path)
    if unknown:
        what = (f"neither in {is_a_path} nor WordNet 3.0 nouns" if is_a_parents is not None
                else "not WordNet 3.0 nouns")
        shown = ", ".join(unknown[:20]) + (", ..." if len(unknown) > 20 else "")
        raise ValueError(f"{len(unknown)} class id(s) are {what}: {shown} "
                         "(drop them first; hierarchy.unknown_wnids lists them)")
    if is_a_parents is not None:
        return is_a_parents
    return single_parent_mapping(wnids, wordnet_hypernyms)


def _check_source(source: str, is_a_path: str | Path | None) -> None:
    """Raise ``ValueError`` for an unknown source or an ``is_a`` source without its file
    (the ``wordnet`` source ignores ``is_a_path``)."""
    if source not in SOURCES:
        raise ValueError(f"unknown is-a source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "is_a" and is_a_path is None:
        raise ValueError("source 'is_a' needs is_a_path (ImageNet's wordnet.is_a.txt)")
