"""Perceptual fingerprints of the build's 224² pixels, and exact lookup of near-duplicates of evaluation images.

Contract. :func:`fingerprint` maps the squish-resized image the convert stage already holds (the
``(PIL image RGB/RGBX, original size)`` of ``pipeline.images._squish``, or the ``(224, 224, 3)``
array of :func:`pipeline.images.squish_resized_array`; the same pixels give the same int) to an
unsigned 64-bit int. Two images are near-duplicates when their fingerprints differ in at most
``threshold`` bits (:data:`DEFAULT_THRESHOLD`). Evaluation images are put through the same squish
to 224² first (:func:`fingerprints_of_eval_set`), so a rescale or an aspect change is absorbed by
construction. :class:`EvalIndex` answers, for a batch of query fingerprints, every
``(query, eval, distance)`` with ``distance <= threshold`` — exactly what comparing every pair
would, without comparing every pair. Hash files (:func:`write_hash_file`, :func:`read_hash_file`)
share evaluation fingerprints without the images; a file of another algorithm or version is
refused in one line (:class:`HashFileError`).

The fingerprint (``dct-phash64`` version 1): luma of the 224² image box-reduced to 32x32
(``Image.reduce(7)``), 2-D DCT-II (orthonormal, a precomputed 8x32 matrix: only the lowest 8x8
coefficients are made), the 64 lowest frequencies after DC in zig-zag order (the 8x8 corner less
DC and (7,7), plus (8,0)-(0,8) are *not* used: see :data:`_COEFFS`), each bit ``coefficient >
median``. The median threshold makes it blind to contrast; dropping DC to brightness; a gray image
has the luma of its colour original. Bits are stored in an interleaved order (bit ``i`` of
frequency rank ``r`` is ``r % 8 * 8 + r // 8``) so that every byte, and so every chunk
:class:`EvalIndex` cuts, holds low and high frequencies alike. Measured recall, false matches, the
distance distributions, cost and lookup scaling: ``benchmarks/near_duplicates.py``.
"""
from __future__ import annotations

import io
import math
import os
import tarfile
from itertools import combinations
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from PIL import Image

ALGORITHM = "dct-phash64"
ALGORITHM_VERSION = 1
HASH_BITS = 64
#: Near-duplicate when the Hamming distance is at most this (chosen in benchmarks/near_duplicates.py).
DEFAULT_THRESHOLD = 10
#: The side of the image the fingerprint is defined on (the build's squish size).
SIZE = 224
_GRID = 32
#: File name endings read as images from a folder or a tar (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _dct_rows(n: int, rows: int) -> np.ndarray:
    """The first ``rows`` rows of the orthonormal n-point DCT-II matrix."""
    k = np.arange(rows)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix


def _zigzag(n: int) -> list[tuple[int, int]]:
    """(row, column) of an n x n block in JPEG zig-zag order (low frequencies first)."""
    return sorted(((u, v) for u in range(n) for v in range(n)),
                  key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1]))


_DCT = _dct_rows(_GRID, 8).astype(np.float32)
#: Flat indices (into the 8x8 low block) of the 64 coefficients used, by frequency rank: zig-zag
#: after DC, the first 64 that lie in the 8x8 block.
_COEFFS = np.array([u * 8 + v for u, v in _zigzag(8)][1:] + [0], dtype=np.intp)[:64]
#: Bit weight of frequency rank r (interleaved: see the module docstring).
_WEIGHTS = np.array([1 << (63 - (r % 8 * 8 + r // 8)) for r in range(64)], dtype=np.uint64)


def fingerprint(image) -> int:
    """The 64-bit fingerprint of a squish-resized image (PIL image RGB/RGBX/L or an HxWx3 uint8 array).

    Defined on the 224² image of the build; another size is box-resized to 32x32 first.
    """
    return int(_bits(_luma_grid(image)) @ _WEIGHTS)


def fingerprint_array(images: Iterable) -> np.ndarray:
    """:func:`fingerprint` of each image, as a uint64 array."""
    return np.fromiter((fingerprint(image) for image in images), dtype=np.uint64)


def _luma_grid(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image[:, :, :3]) if image.ndim == 3 else image)
    if image.size == (SIZE, SIZE):
        small = image.reduce(SIZE // _GRID)
    else:
        small = image.resize((_GRID, _GRID), Image.Resampling.BOX)
    if small.mode != "L":
        small = small.convert("L")
    return np.asarray(small, dtype=np.float32)


def _bits(grid: np.ndarray) -> np.ndarray:
    coeffs = (_DCT @ grid @ _DCT.T).ravel()[_COEFFS]
    # `> median` with an even count: the 32 largest are 1 (ties broken by nothing: equal values agree)
    return (coeffs > np.sort(coeffs)[31]).astype(np.uint64)


def hamming(a, b) -> np.ndarray:
    """Bitwise Hamming distance of uint64 fingerprints (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


class Matches(NamedTuple):
    """Pairs within the threshold, sorted by (query, eval): index arrays into the queries and the eval set."""

    query: np.ndarray
    eval: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:  # the number of pairs, not of fields
        return len(self.query)


def _empty_matches() -> Matches:
    return Matches(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8))


def _sorted_matches(query: np.ndarray, eval_: np.ndarray, distance: np.ndarray) -> Matches:
    order = np.lexsort((eval_, query))
    return Matches(query[order].astype(np.int64), eval_[order].astype(np.int64), distance[order].astype(np.uint8))


def brute_force_matches(queries, evals, threshold: int = DEFAULT_THRESHOLD, batch: int = 256) -> Matches:
    """Every (query, eval) pair within ``threshold`` by comparing all pairs: the reference for :class:`EvalIndex`."""
    q = np.asarray(queries, dtype=np.uint64).ravel()
    e = np.asarray(evals, dtype=np.uint64).ravel()
    parts = []
    for start in range(0, len(q), batch):
        d = hamming(q[start:start + batch, None], e[None, :])
        qi, ei = np.nonzero(d <= threshold)
        parts.append((qi + start, ei, d[qi, ei]))
    if not parts:
        return _empty_matches()
    return _sorted_matches(*(np.concatenate(p) for p in zip(*parts)))


def _ball(width: int, radius: int) -> np.ndarray:
    """All ``width``-bit values of at most ``radius`` set bits (XOR masks of a Hamming ball), int64."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), r)]
    return np.array(masks, dtype=np.int32)


def _ball_size(width: int, radius: int) -> int:
    return sum(math.comb(width, r) for r in range(radius + 1))


#: Relative cost of one probe (table look-up) and one candidate (gather, XOR, popcount, compare),
#: measured in benchmarks/near_duplicates.py; only their ratio matters.
_PROBE_COST, _CANDIDATE_COST = 1.0, 3.0
_MAX_CHUNK_BITS = 22


class ChunkPlan(NamedTuple):
    """How :class:`EvalIndex` cuts a fingerprint: bit ``shift`` and ``width`` of each chunk, and its search radius."""

    shifts: tuple[int, ...]
    widths: tuple[int, ...]
    radii: tuple[int, ...]

    def probes(self) -> int:
        return sum(_ball_size(w, r) for w, r in zip(self.widths, self.radii))

    def expected_candidates(self, n: int) -> float:
        """Candidates per query for ``n`` uniformly random eval fingerprints."""
        return sum(_ball_size(w, r) * n / 2 ** w for w, r in zip(self.widths, self.radii))

    def cost(self, n: int) -> float:
        return self.probes() * _PROBE_COST + self.expected_candidates(n) * _CANDIDATE_COST


def chunk_plan(threshold: int, n: int, chunks: int | None = None, bits: int = HASH_BITS) -> ChunkPlan:
    """The cheapest exact plan for ``n`` eval fingerprints (or the given number of ``chunks``).

    Exact by pigeonhole: chunks of radii r_i with sum(r_i + 1) > threshold; a pair within the
    threshold then lies within r_i on at least one chunk i, whose Hamming ball is probed.
    """
    def plan(k: int) -> ChunkPlan:
        widths = [bits // k + (1 if i < bits % k else 0) for i in range(k)]
        shifts = [bits - sum(widths[:i + 1]) for i in range(k)]
        spare = max(0, threshold + 1 - k)  # sum of radii needed
        radii = [spare // k + (1 if i < spare % k else 0) for i in range(k)]
        # the larger radii on the wider chunks: fewer candidates for the same probes
        order = sorted(range(k), key=lambda i: -widths[i])
        radii = [r for _, r in sorted(zip(order, sorted(radii, reverse=True)))]
        return ChunkPlan(tuple(shifts), tuple(widths), tuple(radii))

    if chunks is not None:
        return plan(chunks)
    fewest = -(-bits // _MAX_CHUNK_BITS)
    options = [plan(k) for k in range(fewest, max(fewest, min(threshold + 1, bits)) + 1)]
    return min(options, key=lambda p: p.cost(max(n, 1)))


class EvalIndex:
    """Exact lookup of near-duplicates of evaluation fingerprints: multi-index hashing in numpy.

    Built once from N eval fingerprints (and their names); :meth:`query` answers a batch of query
    fingerprints with every ``(query, eval, distance)`` within ``threshold`` — the same pairs as
    :func:`brute_force_matches` — probing, per chunk of the hash, the Hamming ball of the query's
    chunk in a table of the eval fingerprints sorted by that chunk (no pair is compared unless
    one chunk agrees within its radius).
    """

    def __init__(self, fingerprints, names: Sequence[str] | None = None,
                 threshold: int = DEFAULT_THRESHOLD, chunks: int | None = None):
        self.fingerprints = np.ascontiguousarray(np.asarray(fingerprints, dtype=np.uint64).ravel())
        if names is not None and len(names) != len(self.fingerprints):
            raise ValueError(f"{len(names)} names for {len(self.fingerprints)} fingerprints")
        if not (isinstance(threshold, (int, np.integer)) and 0 <= threshold < HASH_BITS):
            raise ValueError(f"threshold must be an int in 0..{HASH_BITS - 1}, got {threshold!r}")
        self.names = list(names) if names is not None else None
        self.threshold = int(threshold)
        self.plan = chunk_plan(self.threshold, len(self.fingerprints), chunks)
        self._tables = []
        for shift, width, radius in zip(*self.plan):
            keys = self._keys(self.fingerprints, shift, width)
            order = np.argsort(keys, kind="stable")
            starts = np.zeros((1 << width) + 1, dtype=np.int32 if len(order) < 2 ** 31 else np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:])
            self._tables.append(_ChunkTable(shift, width, _ball(width, radius), starts,
                                            self.fingerprints[order], order))

    def __len__(self) -> int:
        return len(self.fingerprints)

    @staticmethod
    def _keys(fingerprints: np.ndarray, shift: int, width: int) -> np.ndarray:
        return ((fingerprints >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)

    def query(self, queries, threshold: int | None = None, batch: int = 4096) -> Matches:
        """Every (query, eval, distance) with distance <= ``threshold`` (at most the index's), sorted."""
        limit = self.threshold if threshold is None else int(threshold)
        if not 0 <= limit <= self.threshold:
            raise ValueError(f"threshold {threshold} outside 0..{self.threshold} (the index's)")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.uint64).ravel())
        if not len(q) or not len(self.fingerprints):
            return _empty_matches()
        parts = [self._query_batch(q[s:s + batch], s, limit) for s in range(0, len(q), batch)]
        qi, ei, d = (np.concatenate(p) for p in zip(*parts))
        # a pair found through several chunks is reported once
        _, first = np.unique(qi * len(self.fingerprints) + ei, return_index=True)
        return _sorted_matches(qi[first], ei[first], d[first])

    def _query_batch(self, q: np.ndarray, offset: int, limit: int):
        found = []
        for table in self._tables:
            ball, starts = table.ball, table.starts
            probes = (self._keys(q, table.shift, table.width)[:, None] ^ ball[None, :]).ravel()
            low = starts[probes]
            n = starts[probes + 1] - low
            total = int(n.sum())
            if not total:
                continue
            per_query = n.reshape(len(q), len(ball)).sum(axis=1)
            # candidate positions in the chunk's sorted table: each bucket's start, start + 1, ...
            pos = np.repeat(low - (np.cumsum(n) - n), n) + np.arange(total, dtype=low.dtype)
            query_of = np.repeat(np.arange(len(q)), per_query)
            d = np.bitwise_count(table.sorted_fingerprints[pos] ^ q[query_of])
            keep = np.flatnonzero(d <= limit)
            found.append((query_of[keep] + offset, table.order[pos[keep]], d[keep]))
        if not found:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
        return tuple(np.concatenate(p) for p in zip(*found))


class _ChunkTable(NamedTuple):
    """One chunk of :class:`EvalIndex`: its bits, Hamming ball, and the eval set sorted by it."""

    shift: int
    width: int
    ball: np.ndarray  # XOR masks, int32
    starts: np.ndarray  # starts[key]..starts[key + 1]: that key's rows of the sorted arrays
    sorted_fingerprints: np.ndarray
    order: np.ndarray  # eval index of each sorted row


class HashFileError(Exception):
    """A hash file that cannot be used here; ``str()`` is one line saying why and what to do."""


#: Parquet key-value metadata of a hash file (bytes keys, as Arrow stores them).
_META_ALGORITHM, _META_VERSION, _META_BITS = b"near_duplicates.algorithm", b"near_duplicates.version", b"near_duplicates.hash_bits"
_PARQUET_MAGIC = b"PAR1"


def write_hash_file(path, names: Sequence[str], fingerprints) -> None:
    """Write ``names`` and their ``fingerprints`` to a Parquet hash file (columns ``name``, ``fingerprint``).

    The file's schema metadata names the algorithm, its version and the hash width; written to a
    temporary name and renamed, so a reader never sees half a file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    fps = np.asarray(fingerprints, dtype=np.uint64).ravel()
    if len(names) != len(fps):
        raise ValueError(f"{len(names)} names for {len(fps)} fingerprints")
    schema = pa.schema([("name", pa.string()), ("fingerprint", pa.uint64())],
                       metadata={_META_ALGORITHM: ALGORITHM.encode(), _META_VERSION: str(ALGORITHM_VERSION).encode(),
                                 _META_BITS: str(HASH_BITS).encode()})
    table = pa.table({"name": pa.array(list(names), pa.string()), "fingerprint": pa.array(fps, pa.uint64())},
                     schema=schema)
    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pq.write_table(table, temp, compression="zstd")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_hash_file(path) -> tuple[list[str], np.ndarray]:
    """``(names, fingerprints)`` of a hash file; :class:`HashFileError` for another algorithm or version."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as err:
        raise HashFileError(f"{path}: not a readable Parquet hash file ({type(err).__name__}: {err})") from err
    meta = schema.metadata or {}
    algorithm = meta.get(_META_ALGORITHM, b"").decode(errors="replace")
    version = meta.get(_META_VERSION, b"").decode(errors="replace")
    bits = meta.get(_META_BITS, b"").decode(errors="replace")
    if (algorithm, version, bits) != (ALGORITHM, str(ALGORITHM_VERSION), str(HASH_BITS)):
        found = f"{algorithm or '(no algorithm)'} version {version or '?'}, {bits or '?'} bits"
        raise HashFileError(f"{path}: fingerprints of {found}, but this build computes {ALGORITHM} version "
                            f"{ALGORITHM_VERSION}, {HASH_BITS} bits: recompute them from the images")
    if schema.names[:2] != ["name", "fingerprint"]:
        raise HashFileError(f"{path}: a hash file has columns name, fingerprint; this one has {', '.join(schema.names)}")
    table = pq.read_table(path, columns=["name", "fingerprint"])
    return table.column("name").to_pylist(), table.column("fingerprint").to_numpy().astype(np.uint64)


class EvalSet(NamedTuple):
    """Fingerprints of an evaluation set, in sorted name order, and the files that could not be read."""

    names: list[str]
    fingerprints: np.ndarray  # uint64
    failures: list[tuple[str, str]]  # (name, reason)


def fingerprints_of_eval_set(source) -> EvalSet:
    """The fingerprints of an evaluation set: a folder of images (recursive), a tar of images, or a hash file.

    Images are put through the build's squish to 224² (``pipeline.images``) and fingerprinted;
    names are paths relative to the folder, or tar member names. A file that cannot be decoded is
    listed in ``failures`` as ``(name, reason)`` (reason ``BadImage.reason: message``), never
    raised. Files whose name does not end in one of :data:`IMAGE_SUFFIXES` are skipped.
    """
    source = Path(source)
    if source.is_dir():
        items = ((p.relative_to(source).as_posix(), p.read_bytes) for p in source.rglob("*")
                 if p.is_file() and _is_image_name(p.name))
        return _fingerprint_items(items)
    with open(source, "rb") as f:
        magic = f.read(4)
    if magic == _PARQUET_MAGIC:
        names, fps = read_hash_file(source)
        order = sorted(range(len(names)), key=names.__getitem__)
        return EvalSet([names[i] for i in order], fps[order], [])
    if not tarfile.is_tarfile(source):
        raise ValueError(f"{source}: neither a folder, a tar of images nor a Parquet hash file")
    with tarfile.open(source, "r:*") as tar:
        items = ((m.name, (lambda m=m: tar.extractfile(m).read())) for m in tar if m.isfile() and _is_image_name(m.name))
        return _fingerprint_items(items)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _fingerprint_items(items: Iterable[tuple[str, object]]) -> EvalSet:
    from pipeline.images import MAX_PIXELS, BadImage, _squish

    done, failures = [], []
    for name, read in items:
        try:
            image, _ = _squish(read(), SIZE, MAX_PIXELS)
        except BadImage as err:
            failures.append((name, f"{err.reason}: {err}"))
            continue
        except OSError as err:
            failures.append((name, f"unreadable: {err}"))
            continue
        done.append((name, fingerprint(image)))
    done.sort()
    failures.sort()
    return EvalSet([n for n, _ in done], np.array([f for _, f in done], dtype=np.uint64), failures)
