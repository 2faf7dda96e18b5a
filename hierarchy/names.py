"""Class names: the first lemma of a class, spaces turned into underscores.

From ImageNet's ``words.txt`` (``wnid<TAB>comma-separated lemmas``) when given, as the released
ImageNet-21K-P tree does, else from WordNet 3.0 through nltk.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hierarchy.wordnet import lemma_name


def first_lemma(lemmas: str) -> str:
    """``"tench, Tinca tinca"`` -> ``"tench"``; ``"grey kingbird"`` -> ``"grey_kingbird"``."""
    return lemmas.split(",")[0].strip().replace(" ", "_")


def read_words(path: str | Path) -> dict[str, str]:
    """``{wnid: first lemma}`` from a words file; raises ``ValueError`` on a line without a tab."""
    names: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            wnid, sep, lemmas = line.rstrip("\n").partition("\t")
            if not sep:
                raise ValueError(f"{path}:{number}: expected 'wnid<TAB>lemmas', got {line.strip()!r}")
            names[wnid.strip()] = first_lemma(lemmas)
    return names


def class_names(wnids: Iterable[str], words_path: str | Path | None = None) -> dict[str, str]:
    """``{wnid: name}`` for ``wnids``, from ``words_path`` or WordNet.

    Raises ``ValueError`` naming the wnids the words file lacks (WordNet lookups of unknown wnids
    raise ``KeyError``; the tree builder rejects those before naming anything).
    """
    wnids = list(wnids)
    if words_path is None:
        return {w: lemma_name(w) for w in wnids}
    words = read_words(words_path)
    missing = [w for w in wnids if w not in words]
    if missing:
        shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
        raise ValueError(f"{len(missing)} class id(s) have no entry in {words_path}: {shown}")
    return {w: words[w] for w in wnids}
