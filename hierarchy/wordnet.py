"""Find and load WordNet 3.0 for nltk, offline.

WordNet is found through one setting: the environment variable ``IMAGENET21KP_NLTK_DATA`` (an
nltk data directory, i.e. the folder that holds ``corpora/wordnet``); without it, the project's
data location ``<checkout>/data/nltk_data`` (what ``make env`` fills), then nltk's own default
search path. (The pipeline maps its ``luigi.cfg`` key ``[hierarchy] nltk_data`` onto the variable.)

When none of them holds WordNet, :func:`load_wordnet` raises :class:`WordNetMissing` with the
command that fixes it.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

ENV_VAR = "IMAGENET21KP_NLTK_DATA"
DEFAULT_NLTK_DATA = Path(__file__).resolve().parents[1] / "data" / "nltk_data"
WNID_RE = re.compile(r"^n\d{8}$")


class WordNetMissing(RuntimeError):
    """WordNet 3.0 is not installed where the project looks for it."""


def configured_nltk_data() -> Path | None:
    """The nltk data directory named by ``$IMAGENET21KP_NLTK_DATA``, if any."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def candidate_dirs() -> list[Path]:
    """nltk data directories searched for ``corpora/wordnet``, most specific first."""
    configured = configured_nltk_data()
    return [configured] if configured else [DEFAULT_NLTK_DATA]


@functools.lru_cache(maxsize=None)
def wordnet_root() -> Path:
    """The ``corpora/wordnet`` folder in use; raises :class:`WordNetMissing` naming the fix.

    nltk (a second to import with its dependencies) is imported only to search its own default
    locations, when the configured or project folder holds no WordNet.
    """
    searched = []
    for base in candidate_dirs():
        root = base / "corpora" / "wordnet"
        searched.append(str(root))
        if (root / "data.noun").is_file() and (root / "lexnames").is_file():
            return root
    if configured_nltk_data() is None:
        import nltk

        try:  # nltk's own default locations (e.g. after nltk.download('wordnet'))
            return Path(str(nltk.data.find("corpora/wordnet")))
        except LookupError:
            searched.append("nltk default paths")
    raise WordNetMissing(
        "WordNet 3.0 for nltk was not found (looked in: " + ", ".join(searched) + "). "
        "Fix: run `make env` (or `python -m tools.install_wordnet`), or point "
        f"${ENV_VAR} (or luigi.cfg [hierarchy] nltk_data) at an nltk data directory "
        "holding corpora/wordnet."
    )


@functools.lru_cache(maxsize=None)
def load_wordnet():
    """Return an nltk ``WordNetCorpusReader`` for WordNet 3.0 (loaded once per process)."""
    import nltk

    base = str(wordnet_root().parents[1])  # raises WordNetMissing with the fix
    if base not in nltk.data.path:  # nltk >= 3.10 refuses paths not listed here
        nltk.data.path.insert(0, base)
    return _reader(nltk.data.find("corpora/wordnet"))


def synset_of(wnid: str):
    """The WordNet noun synset for an ImageNet id such as ``n01440764``.

    Raises ``KeyError`` for an id that is malformed or not a WordNet 3.0 noun.
    """
    if not WNID_RE.match(wnid):
        raise KeyError(f"{wnid!r} is not a WordNet noun id (expected n + 8 digits)")
    import warnings

    wn = load_wordnet()
    try:
        with warnings.catch_warnings():  # nltk warns (and returns None) for an unknown offset
            warnings.simplefilter("ignore", UserWarning)
            synset = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
    except Exception as exc:  # older nltk raises WordNetError / ValueError instead
        raise KeyError(f"{wnid} is not in WordNet 3.0") from exc
    if synset is None or synset.offset() != int(wnid[1:]):
        raise KeyError(f"{wnid} is not in WordNet 3.0")
    return synset


def wnid_of(synset) -> str:
    """ImageNet id of a noun synset."""
    return f"n{synset.offset():08d}"


def lemma_name(wnid: str) -> str:
    """First lemma of the synset (spaces as underscores), e.g. ``n01440764`` -> ``tench``."""
    return noun_record(wnid)[0][0]


def is_known_wnid(wnid: str) -> bool:
    """True when ``wnid`` names a WordNet 3.0 noun synset (one seek, see :func:`noun_record`)."""
    try:
        noun_record(wnid)
    except KeyError:
        return False
    return True


def hypernym_wnids(wnid: str) -> tuple[str, ...]:
    """The wnids of a noun synset's hypernyms and instance hypernyms, sorted (what nltk's
    ``hypernyms() + instance_hypernyms()`` give)."""
    return noun_record(wnid)[1]


@functools.lru_cache(maxsize=None)
def noun_record(wnid: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(lemmas, hypernym wnids)`` of a noun synset, read straight from ``data.noun``.

    Cheap: a wnid's number is the byte offset of its line in ``data.noun``, so this is one seek
    and one line read; no nltk reader (whose loading takes seconds) is built. The line format is
    WordNet's ``wndb(5)``: offset, lex_filenum, ss_type, w_cnt (hex), w_cnt (word, lex_id) pairs,
    p_cnt, p_cnt (symbol, offset, pos, source/target) pointers, ``| gloss``. Raises ``KeyError``
    for an id that is malformed or not a WordNet 3.0 noun.
    """
    if not isinstance(wnid, str) or not WNID_RE.match(wnid) or int(wnid[1:]) == 0:
        raise KeyError(f"{wnid!r} is not a WordNet noun id (expected n + 8 digits)")
    fd, offset = _data_noun(), int(wnid[1:])
    # pread, not seek + read: forked processes share the descriptor, but not a file position
    chunk = os.pread(fd, 4096, offset - 1)  # a synset line starts right after a newline
    while chunk and b"\n" not in chunk[1:]:  # a line longer than the first read
        more = os.pread(fd, 4096, offset - 1 + len(chunk))
        if not more:
            break
        chunk += more
    if not chunk.startswith(f"\n{wnid[1:]} ".encode()):
        raise KeyError(f"{wnid} is not in WordNet 3.0")
    fields = chunk[1:].split(b"\n", 1)[0].split(b" | ", 1)[0].split()
    words = int(fields[3], 16)
    lemmas = tuple(w.decode() for w in fields[4:4 + 2 * words:2])
    at = 4 + 2 * words
    pointers = fields[at + 1: at + 1 + 4 * int(fields[at])]
    hypernyms = sorted(f"n{int(pointers[i + 1]):08d}" for i in range(0, len(pointers), 4)
                       if pointers[i] in (b"@", b"@i") and pointers[i + 2] == b"n" and pointers[i + 3] == b"0000")
    return lemmas, tuple(hypernyms)


@functools.lru_cache(maxsize=None)
def _data_noun() -> int:
    return os.open(wordnet_root() / "data.noun", os.O_RDONLY)  # kept open: many lookups per build


def _reader(root):
    import warnings

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class MonolingualWordNetReader(WordNetCorpusReader):
        """nltk's reader without the WordNet-3.0 sense map for Open Multilingual Wordnet data.

        nltk 3.10 compares the version ("3.0") with the corpus name ("wordnet"), never finds them
        equal and reads ``index.sense`` twice to build that map: half of the load time, for
        multilingual lookups this project never makes.
        """

        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available": we need none
        warnings.simplefilter("ignore", UserWarning)
        return MonolingualWordNetReader(root, None)
