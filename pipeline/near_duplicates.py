"""Perceptual fingerprints of the build's 224² pixels, and exact lookup of near-duplicates of evaluation images.

Contract. :func:`fingerprint` maps the squish-resized image the convert stage already holds (the
PIL image, RGB or RGBX, of ``pipeline.images._squish``, or the ``(224, 224, 3)`` array of
:func:`pipeline.images.squish_resized_array`; the same pixels give the same value) to an unsigned
64-bit int (in the convert stage: :func:`centre_cells` per image, ~20 µs, then one
:func:`fingerprints_of_cells` per class, ~7 µs an image). An evaluation image, put through the
same squish to 224² first, gets :data:`VARIANT_COUNT` (49) fingerprints
(:func:`eval_fingerprints`). A training image is a near-duplicate of
an evaluation image when its fingerprint is within ``threshold`` bits (Hamming distance,
:data:`DEFAULT_THRESHOLD`) of one of the evaluation image's. :class:`EvalIndex` answers, for a
batch of query fingerprints, every ``(query, eval, distance)`` within the threshold (distance: the
smallest over the variants) — exactly what :func:`brute_force_matches` finds by comparing every
pair, without comparing every pair. Hash files (:func:`write_hash_file`, :func:`read_hash_file`)
share evaluation fingerprints without the images; a file of another algorithm or version is
refused in one line (:class:`HashFileError`).

The fingerprint (``centre-dct64`` version 2) is a DCT pHash of the centre of the image: the
224² image box-reduced to a 28x28 luma grid (``Image.reduce(8)``, the inner 26x26 cells from the
inner box alone, then ``convert("L")``), its
region inside a 5 % margin (:data:`MARGIN`) box-resampled to 32x32 and put through the 2-D DCT-II
(orthonormal) — both folded into one fixed-point 11x28 matrix per axis, so the arithmetic is exact
and a fingerprint the same on every machine and in any batch — the 64 lowest frequencies after
DC in zig-zag order, each bit ``coefficient > median`` (so 32 bits are set, fewer only for
flat images with tied coefficients: distances are even). The median makes it blind to contrast, dropping DC to brightness, and a gray copy has the luma of its
colour original; squish and aspect changes are absorbed by the squish itself. A crop of up to 5 %
per side, in either direction (the training image a crop of the evaluation image, or the other way
round), moves the query's centre region to a region of the evaluation image that lies wholly
inside it: :func:`eval_fingerprints` fingerprints the evaluation image at 49 such regions
(:data:`VARIANTS`) (per axis each
side cropped 0 or 5 % or both 2.5 %, each direction), so no fingerprint has to absorb more than
a sliver of misalignment. Bits are stored interleaved (frequency rank ``r`` at bit
``63 - (r % 8 * 8 + r // 8)``) so that any chunk :class:`EvalIndex` cuts holds low and high
frequencies alike. Measured recall, false matches, distance distributions, cost and lookup
scaling: ``benchmarks/near_duplicates.py``.
"""
from __future__ import annotations

import io
import math
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from PIL import Image

ALGORITHM = "centre-dct64"
ALGORITHM_VERSION = 2  # 2: the inner cells of the grid reduced from the inner box alone
HASH_BITS = 64
#: Near-duplicate when the Hamming distance is at most this (chosen in benchmarks/near_duplicates.py).
DEFAULT_THRESHOLD = 6
#: The side of the image the fingerprint is defined on (the build's squish size).
SIZE = 224
#: The largest crop per side the design absorbs, and the query's margin (they must be equal or the
#: margin larger: the query's centre then always lies inside the evaluation image).
MARGIN = 0.05
_GRID = 32
_ROWS = 11  # DCT rows needed for the first 65 zig-zag positions
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


#: Flat indices into the 11x11 low block of the 64 coefficients used, lowest frequency first.
_COEFFS = np.array([u * _ROWS + v for u, v in _zigzag(_ROWS)[1:HASH_BITS + 1]], dtype=np.intp)


def _regions(margin: float = MARGIN) -> tuple[tuple[float, float, float, float], ...]:
    """The evaluation-side regions ``(left, top, right, bottom)`` as fractions of the image; centre first.

    Per axis, ``(l, r)``: the query cut ``l`` and ``r`` off the evaluation image's sides (crop) or
    the evaluation image is the query with those cut off (extension); the query's centre region
    ``[margin, 1 - margin]`` then is ``[s, e]`` of the evaluation image, computed here.
    """
    cuts = [(0.0, 0.0), (margin, 0.0), (0.0, margin), (margin, margin), (margin / 2, margin / 2)]

    def crop(l, r):
        return l + margin * (1 - l - r), 1 - r - margin * (1 - l - r)

    def extension(l, r):
        return (margin - l) / (1 - l - r), (1 - margin - l) / (1 - l - r)

    regions = {}
    for direction in (crop, extension):
        spans = [direction(l, r) for l, r in cuts]
        for sy, ey in spans:
            for sx, ex in spans:
                key = tuple(round(v, 9) for v in (sx, sy, ex, ey))
                regions.setdefault(key, key)
    return tuple(regions)


#: The evaluation-side regions; ``VARIANTS[0]`` is the query's own (the centre inside the margin).
VARIANTS = _regions()
VARIANT_COUNT = len(VARIANTS)
#: The luma grid the fingerprint starts from: the 224² image box-reduced by 8 (``Image.reduce``): 28x28.
_REDUCE = 8
_CELLS = SIZE // _REDUCE
#: The pixels of the grid's inner 26x26 cells, the only ones the query's centre region touches.
_INNER_BOX = (_REDUCE, _REDUCE, SIZE - _REDUCE, SIZE - _REDUCE)
#: Fixed-point scale of the per-axis matrices: every product and sum of the transform is then an
#: integer below 2^46, exact in float64 whatever the order of summation (BLAS, batch size, CPU):
#: the same pixels give the same fingerprint everywhere, one image at a time or in batches.
_SCALE = 2.0 ** 14


def _box_matrix(start: float, end: float, cells: int = _CELLS, out: int = _GRID) -> np.ndarray:
    """(out, cells): box resampling of the span [start, end] (fractions) of ``cells`` cells to ``out`` samples."""
    edges = start + (end - start) * np.arange(out + 1) / out
    cell = np.arange(cells + 1) / cells
    lo = np.maximum(edges[:-1, None], cell[None, :-1])
    hi = np.minimum(edges[1:, None], cell[None, 1:])
    weights = np.clip(hi - lo, 0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def _dct_of_span(start: float, end: float) -> np.ndarray:
    """(11, cells): the DCT rows applied to the 32 box samples of the span, in fixed point (integers)."""
    return np.round(_dct_rows(_GRID, _ROWS) @ _box_matrix(start, end) * _SCALE)


#: Per region, the row (y) and column (x) matrices: coefficients of region v are ``Y[v] @ grid @ X[v].T``.
_Y = np.stack([_dct_of_span(top, bottom) for left, top, right, bottom in VARIANTS])  # (V, 11, cells)
_X = np.stack([_dct_of_span(left, right) for left, top, right, bottom in VARIANTS])
_XT = np.ascontiguousarray(_X.transpose(0, 2, 1))
#: Column of the packed (big-endian) bit array that holds frequency rank r (interleaved).
_POSITION = np.array([r % 8 * 8 + r // 8 for r in range(HASH_BITS)])
_RANK_AT = np.argsort(_POSITION)
#: The centre region's matrices without the outer ring of cells, which they give weight 0.
assert not (_Y[0][:, [0, -1]].any() or _XT[0][[0, -1]].any())
_Y_INNER = np.ascontiguousarray(_Y[0][:, 1:-1])
_XT_INNER = np.ascontiguousarray(_XT[0][1:-1])


def _as_square(image) -> Image.Image:
    """``image`` as a 224² PIL image (a numpy array, HxWx3 uint8, is taken as RGB; another size is box-resized)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image[:, :, :3]) if image.ndim == 3 else image)
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    return image


def centre_cells(image) -> Image.Image:
    """The per-image part of a query's fingerprint (~20 µs): the inner 26x26 cells of the grid,
    ``Image.reduce(8)`` of the 224² image's inner box (:data:`_INNER_BOX`), still in the image's mode.

    The convert stage keeps the cells of a class and calls :func:`fingerprints_of_cells` once for
    all of them. The outer ring of the grid is never read: the query's fingerprint gives it weight
    0 (it lies outside the centre region, :data:`MARGIN`).
    """
    return _as_square(image).reduce(_REDUCE, box=_INNER_BOX)


def fingerprints_of_cells(cells: Sequence[Image.Image]) -> np.ndarray:
    """The fingerprints (uint64) of a batch of :func:`centre_cells` (a few µs each).

    The cells are pasted into one image, so their luma is taken and read out once for the batch.
    """
    inner = _CELLS - 2
    if not len(cells):
        return np.empty(0, dtype=np.uint64)
    mosaic = Image.new("RGBX", (inner, inner * len(cells)))
    for k, image in enumerate(cells):
        mosaic.paste(image, (0, inner * k))
    luma = np.frombuffer(mosaic.convert("L").tobytes(), dtype=np.uint8).reshape(len(cells), inner, inner)
    return _centre_fingerprints(luma)


def _centre_fingerprints(inner: np.ndarray) -> np.ndarray:
    """Fingerprints of (n, 26, 26) inner luma grids: ``Y[0] @ grid @ X[0].T`` for each as two plain
    matrix products (exact: integers in float64), the column transform first so the one transpose
    copies 11 columns, not 26."""
    n = len(inner)
    g = inner.astype(np.float64).reshape(n * (_CELLS - 2), _CELLS - 2)
    cols = (g @ _XT_INNER).reshape(n, _CELLS - 2, _ROWS).transpose(1, 0, 2).reshape(_CELLS - 2, n * _ROWS)
    coeffs = (_Y_INNER @ cols).reshape(_ROWS, n, _ROWS).transpose(1, 0, 2).reshape(n, _ROWS * _ROWS)
    return _pack(coeffs[:, _COEFFS])


def luma_grid(image) -> np.ndarray:
    """The whole 28x28 uint8 luma grid of an image (``Image.reduce(8)`` of the 224² image, then luma):
    what :func:`eval_fingerprints` starts from. Its inner cells are :func:`centre_cells`' (Pillow
    may round a cell of the whole-image reduce differently), so the centre variant of an
    evaluation image is exactly its :func:`fingerprint`."""
    image = _as_square(image)
    grid = _luma(image.reduce(_REDUCE)).copy()
    grid[1:-1, 1:-1] = _luma(centre_cells(image))
    return grid


def _luma(small: Image.Image) -> np.ndarray:
    if small.mode != "L":
        small = small.convert("L")
    return np.frombuffer(small.tobytes(), dtype=np.uint8).reshape(small.height, small.width)


def _pack(coeffs: np.ndarray) -> np.ndarray:
    """(n, 64) coefficients, lowest frequency first -> (n,) uint64: bit = coefficient above the median."""
    bits = coeffs > np.sort(coeffs, axis=1)[:, HASH_BITS // 2 - 1:HASH_BITS // 2]  # the 32 largest
    packed = np.packbits(bits[:, _RANK_AT], axis=1)
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


def fingerprint(image) -> int:
    """The 64-bit fingerprint of a squish-resized image (PIL image RGB/RGBX/L, or an HxWx3 uint8 array)."""
    return int(fingerprints_of_cells([centre_cells(image)])[0])


def eval_fingerprints(image) -> np.ndarray:
    """The :data:`VARIANT_COUNT` fingerprints of an evaluation image (squish-resized like the build's), uint64.

    ``eval_fingerprints(x)[0] == fingerprint(x)``.
    """
    g = luma_grid(image).astype(np.float64)
    coeffs = (_Y @ g @ _XT).reshape(VARIANT_COUNT, _ROWS * _ROWS)
    return _pack(coeffs[:, _COEFFS])


def jpeg_eval_fingerprints(jpeg: bytes) -> list[int]:
    """:func:`eval_fingerprints` of a squish-resized JPEG the build wrote: a validation image's
    variants, so the validation/train check finds crops as the evaluation sets do (the convert
    stage keeps only the centre cells of its images, so it decodes the few it needs: ~0.5 ms each)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return eval_fingerprints(image.convert("RGB")).tolist()


def fingerprint_array(images: Iterable) -> np.ndarray:
    """:func:`fingerprint` of each image, as a uint64 array (cells made one by one, fingerprinted in one batch)."""
    return fingerprints_of_cells([centre_cells(image) for image in images])


def hamming(a, b) -> np.ndarray:
    """Bitwise Hamming distance of uint64 fingerprints (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


class Matches(NamedTuple):
    """Pairs within the threshold, sorted by (query, eval): index arrays into the queries and the eval set."""

    query: np.ndarray
    eval: np.ndarray
    distance: np.ndarray


def _empty_matches() -> Matches:
    return Matches(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8))


def _sorted_matches(query: np.ndarray, eval_: np.ndarray, distance: np.ndarray) -> Matches:
    order = np.lexsort((eval_, query))
    return Matches(query[order].astype(np.int64), eval_[order].astype(np.int64), distance[order].astype(np.uint8))


def _as_eval_matrix(fingerprints) -> np.ndarray:
    """Eval fingerprints as an (N, V) uint64 array: one row per eval image, one column per variant."""
    fps = np.asarray(fingerprints, dtype=np.uint64)
    if fps.ndim == 1:
        fps = fps[:, None]
    if fps.ndim != 2:
        raise ValueError(f"eval fingerprints must be (N,) or (N, variants), got shape {fps.shape}")
    return np.ascontiguousarray(fps)


def brute_force_matches(queries, evals, threshold: int = DEFAULT_THRESHOLD) -> Matches:
    """Every (query, eval) pair within ``threshold`` by comparing all pairs: the reference for :class:`EvalIndex`.

    ``evals``: (N,) or (N, variants); the distance is the smallest over an eval image's variants.
    """
    q = np.asarray(queries, dtype=np.uint64).ravel()
    e = _as_eval_matrix(evals)
    batch = max(1, 2 ** 24 // max(1, e.size))  # bounds the (batch, N, variants) distance array
    parts = []
    for start in range(0, len(q), batch):
        d = hamming(q[start:start + batch, None, None], e[None]).min(axis=2)
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


#: Relative cost of one probe (table look-up) in a table of at most 2^16 keys (cache-resident), in
#: a larger one (cache misses), and of one candidate (gather, XOR, popcount, compare): fitted to
#: the timings of benchmarks/near_duplicates.py on this project's machine (a probe ~15 ns at 2.45 M
#: evaluation fingerprints, ~35 ns at 27 M; a candidate ~10-13 ns).
_SMALL_PROBE_COST, _LARGE_PROBE_COST, _CANDIDATE_COST = 1.0, 3.0, 1.0
#: The widest chunk: its table has 2^24 entries (128 MB).
_MAX_CHUNK_BITS = 24
#: The largest search radius in a chunk the planner considers (a ball of radius 4 in 24 bits is
#: 12,951 probes: more chunks are always cheaper).
_MAX_RADIUS = 3


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
        return sum(_chunk_cost(w, r, n) for w, r in zip(self.widths, self.radii))


def _chunk_cost(width: int, radius: int, n: int) -> float:
    probes = _ball_size(width, radius)
    return probes * ((_SMALL_PROBE_COST if width <= 16 else _LARGE_PROBE_COST) + n / 2 ** width * _CANDIDATE_COST)


def chunk_plan(threshold: int, n: int, chunks: int | None = None, bits: int = HASH_BITS) -> ChunkPlan:
    """The cheapest exact plan for ``n`` eval fingerprints (or with the given number of ``chunks``).

    Exact by pigeonhole: disjoint chunks of radii r_i with sum(r_i + 1) > threshold; a pair within
    the threshold then lies within r_i on at least one chunk i, whose Hamming ball is probed (the
    chunks need not cover every bit). Searched: every number of chunks, every split of the radii
    (each at most :data:`_MAX_RADIUS` unless ``chunks`` forces more), and for each the widths of
    least cost (at most :data:`_MAX_CHUNK_BITS` each, :func:`_chunk_cost`), by dynamic programming
    over the bits used. Deterministic: ties go to the first found.
    """
    n = max(n, 1)
    best: tuple[float, tuple[int, ...], tuple[int, ...]] | None = None
    for k in ([chunks] if chunks is not None else range(1, min(threshold + 1, bits) + 1)):
        cap = _MAX_RADIUS if chunks is None else bits
        for radii in _radius_splits(max(0, threshold + 1 - k), k, cap):
            found = _cheapest_widths(radii, n, bits)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], found[1], radii)
    if best is None:
        raise ValueError(f"no exact plan for threshold {threshold} with {chunks} chunk(s) of {bits} bits")
    _, widths, radii = best
    shifts = tuple(bits - sum(widths[:i + 1]) for i in range(len(widths)))
    return ChunkPlan(shifts, widths, radii)


def _radius_splits(total: int, k: int, cap: int):
    """Non-increasing k-tuples of radii in 0..cap that sum to ``total``."""
    if k == 0:
        if total == 0:
            yield ()
        return
    for first in range(min(cap, total), -(-total // k) - 1, -1):
        for rest in _radius_splits(total - first, k - 1, first):
            yield (first,) + rest


def _cheapest_widths(radii: tuple[int, ...], n: int, bits: int) -> tuple[float, tuple[int, ...]] | None:
    """``(cost, widths)`` of least cost for chunks of these radii within ``bits`` bits, or None."""
    options: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}  # bits used -> cheapest so far
    for radius in radii:
        grown: dict[int, tuple[float, tuple[int, ...]]] = {}
        for used, (cost, widths) in options.items():
            for width in range(max(1, radius), min(_MAX_CHUNK_BITS, bits - used) + 1):
                option = (cost + _chunk_cost(width, radius, n), widths + (width,))
                if used + width not in grown or option[0] < grown[used + width][0]:
                    grown[used + width] = option
        options = grown
    return min(options.values()) if options else None


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
        self.fingerprints = _as_eval_matrix(fingerprints)  # (N, variants)
        if names is not None and len(names) != len(self.fingerprints):
            raise ValueError(f"{len(names)} names for {len(self.fingerprints)} fingerprints")
        if not (isinstance(threshold, (int, np.integer)) and 0 <= threshold < HASH_BITS):
            raise ValueError(f"threshold must be an int in 0..{HASH_BITS - 1}, got {threshold!r}")
        self.names = list(names) if names is not None else None
        self.threshold = int(threshold)
        flat = self.fingerprints.ravel()
        if len(flat) >= 2 ** 32:
            raise ValueError(f"{len(flat):,} evaluation fingerprints: at most 2^32 - 1 fit an index")
        self.plan = chunk_plan(self.threshold, len(flat), chunks)
        self._variants = self.fingerprints.shape[1]
        self._tables = []
        for shift, width, radius in zip(*self.plan):
            keys = self._keys(flat, shift, width)
            order = np.argsort(keys, kind="stable")
            starts = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:])
            bounds = starts[:-1] | (starts[1:] << 32)  # a key's (start, end) in one int64: one read a probe
            self._tables.append(_ChunkTable(shift, width, _ball(width, radius), bounds,
                                            flat[order], (order // self._variants).astype(np.int32)))

    def __len__(self) -> int:
        return len(self.fingerprints)

    @staticmethod
    def _keys(fingerprints: np.ndarray, shift: int, width: int) -> np.ndarray:
        return ((fingerprints >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)

    def query(self, queries, threshold: int | None = None, batch: int = 4096, workers: int | None = None) -> Matches:
        """Every (query, eval, distance) with distance <= ``threshold`` (at most the index's), sorted.

        Batches of ``batch`` queries run on ``workers`` threads (default: the cores this process
        may use; numpy releases the GIL in the work: 1.5-1.85x on 2 cores); the result is the same.
        """
        if not isinstance(threshold, (type(None), int, np.integer)):
            raise ValueError(f"threshold must be an int, got {threshold!r}")
        limit = self.threshold if threshold is None else int(threshold)
        if not 0 <= limit <= self.threshold:
            raise ValueError(f"threshold {threshold} outside 0..{self.threshold} (the index's)")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.uint64).ravel())
        if not len(q) or not len(self.fingerprints):
            return _empty_matches()
        # per chunk, the queries in the order of their chunk key: a batch then probes one region of
        # the chunk's tables (1.3x faster than in query order at 27 M fingerprints and 100,000
        # queries; the more queries, the closer their keys)
        jobs = []
        for table in self._tables:
            keys = self._keys(q, table.shift, table.width)
            order = np.argsort(keys, kind="stable")
            jobs += [(table, order[s:s + batch], keys) for s in range(0, len(q), batch)]
        workers = min(len(jobs), workers or len(os.sched_getaffinity(0)))
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="eval-index") as pool:
                parts = list(pool.map(lambda job: self._probe(*job, q, limit), jobs))
        else:
            parts = [self._probe(*job, q, limit) for job in jobs]
        qi, ei, d = (np.concatenate(p) for p in zip(*parts))
        # a pair found through several chunks or variants is reported once, at its smallest distance
        key = qi.astype(np.int64) * len(self.fingerprints) + ei
        by_distance = np.lexsort((d, key))
        _, first = np.unique(key[by_distance], return_index=True)
        keep = by_distance[first]
        return _sorted_matches(qi[keep], ei[keep], d[keep])

    @staticmethod
    def _probe(table: "_ChunkTable", rows: np.ndarray, keys: np.ndarray, q: np.ndarray, limit: int):
        """``(query, eval, distance)`` within ``limit`` found through one chunk for the queries ``q[rows]``
        (``keys``: every query's key in this chunk)."""
        qb = q[rows]
        probes = (keys[rows][:, None] ^ table.ball[None, :]).ravel()
        bounds = table.bounds[probes]
        n = (bounds >> 32) - (bounds & 0xFFFFFFFF)
        hit = np.flatnonzero(n)  # the non-empty probed buckets
        n = n[hit]
        ends = np.cumsum(n)
        # the candidates, bucket after bucket: positions in the chunk's sorted table, and their query
        pos = np.repeat((bounds[hit] & 0xFFFFFFFF) - (ends - n), n)
        pos += np.arange(len(pos))
        d = np.bitwise_count(table.sorted_fingerprints[pos] ^ np.repeat(qb[hit // len(table.ball)], n))
        keep = np.flatnonzero(d <= limit)
        bucket = np.searchsorted(ends, keep, side="right")  # of each kept candidate
        return rows[hit[bucket] // len(table.ball)], table.order[pos[keep]], d[keep]


class _ChunkTable(NamedTuple):
    """One chunk of :class:`EvalIndex`: its bits, Hamming ball, and the eval set sorted by it."""

    shift: int
    width: int
    ball: np.ndarray  # XOR masks, int32
    bounds: np.ndarray  # bounds[key] = start | end << 32: that key's rows of the sorted arrays
    sorted_fingerprints: np.ndarray
    order: np.ndarray  # eval image (row of the (N, variants) array) of each sorted entry


class HashFileError(Exception):
    """A hash file that cannot be used here; ``str()`` is one line saying why and what to do."""


#: Parquet schema metadata of a hash file (bytes keys, as Arrow stores them).
_META_ALGORITHM = b"near_duplicates.algorithm"
_META_VERSION = b"near_duplicates.version"
_META_BITS = b"near_duplicates.hash_bits"
_META_VARIANTS = b"near_duplicates.variants"
_PARQUET_MAGIC = b"PAR1"


def write_hash_file(path, names: Sequence[str], fingerprints) -> None:
    """Write ``names`` and their fingerprints to a Parquet hash file.

    Columns ``name`` (string) and ``fingerprints`` (fixed-size list of uint64: the
    :data:`VARIANT_COUNT` of :func:`eval_fingerprints`, or 1 for a plain (N,) array); the schema
    metadata names the algorithm, its version, the hash width and the variant count. Written to a
    temporary name and renamed, so a reader never sees half a file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    fps = _as_eval_matrix(fingerprints)
    if len(names) != len(fps):
        raise ValueError(f"{len(names)} names for {len(fps)} fingerprints")
    variants = fps.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(fps.ravel(), pa.uint64()), variants)
    schema = pa.schema([("name", pa.string()), ("fingerprints", column.type)],
                       metadata={_META_ALGORITHM: ALGORITHM.encode(), _META_VERSION: str(ALGORITHM_VERSION).encode(),
                                 _META_BITS: str(HASH_BITS).encode(), _META_VARIANTS: str(variants).encode()})
    table = pa.Table.from_arrays([pa.array(list(names), pa.string()), column], schema=schema)
    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pq.write_table(table, temp, compression="zstd")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_hash_file(path) -> tuple[list[str], np.ndarray]:
    """``(names, fingerprints)`` of a hash file, fingerprints (N, variants) uint64.

    Raises :class:`HashFileError` (one line) for a file of another algorithm, version or hash
    width, or one that is not a hash file.
    """
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
        found = f"{algorithm or '(no algorithm)'} version {version or '?'} ({bits or '?'} bits)"
        raise HashFileError(f"{path}: fingerprints of {found}, but this build computes {ALGORITHM} version "
                            f"{ALGORITHM_VERSION} ({HASH_BITS} bits): recompute them from the images")
    if schema.names != ["name", "fingerprints"]:
        raise HashFileError(f"{path}: a hash file has columns name, fingerprints; this one has {', '.join(schema.names)}")
    table = pq.read_table(path)
    column = table.column("fingerprints").combine_chunks()
    variants = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.uint64)
    return table.column("name").to_pylist(), values.reshape(len(table), variants)


class EvalSet(NamedTuple):
    """Fingerprints of an evaluation set, in sorted name order, and the files that could not be read."""

    names: list[str]
    fingerprints: np.ndarray  # uint64: (N,) the centre fingerprints, or (N, VARIANT_COUNT) with variants=True
    failures: list[tuple[str, str]]  # (name, reason)


def fingerprints_of_eval_set(source, variants: bool = False) -> EvalSet:
    """The fingerprints of an evaluation set: a folder of images (recursive), a tar of images, or a hash file.

    Images are put through the build's squish to 224² (``pipeline.images``) and fingerprinted:
    with ``variants``, all :data:`VARIANT_COUNT` of :func:`eval_fingerprints` (the measured
    recall for crops needs them: ``benchmarks/near_duplicates.py``), else :func:`fingerprint` only
    (an (N,) array). Names are paths relative to the folder, or tar member names (a tar is read in
    place, in member order). A file that cannot be decoded is listed in ``failures`` as
    ``(name, reason)`` (reason ``BadImage.reason: message``), never raised. Files whose name does
    not end in one of :data:`IMAGE_SUFFIXES` are skipped. A hash file gives what it holds
    (column 0, the centre fingerprint, without ``variants``); one written without variants cannot
    give them (:class:`HashFileError`).
    """
    source = Path(source)
    if source.is_dir():
        items = ((p.relative_to(source).as_posix(), p.read_bytes) for p in source.rglob("*")
                 if p.is_file() and _is_image_name(p.name))
        return _fingerprint_items(items, variants)
    with open(source, "rb") as f:
        magic = f.read(4)
    if magic == _PARQUET_MAGIC:
        names, fps = read_hash_file(source)
        if variants and fps.shape[1] != VARIANT_COUNT:
            raise HashFileError(f"{source}: {fps.shape[1]} fingerprint(s) per image, not the {VARIANT_COUNT} variants; "
                                "write it from the images with variants")
        order = sorted(range(len(names)), key=names.__getitem__)
        return EvalSet([names[i] for i in order], fps[order] if variants else fps[order, 0], [])
    if not tarfile.is_tarfile(source):
        raise ValueError(f"{source}: neither a folder, a tar of images nor a Parquet hash file")
    with tarfile.open(source, "r:*") as tar:
        items = ((m.name, (lambda m=m: tar.extractfile(m).read())) for m in tar if m.isfile() and _is_image_name(m.name))
        return _fingerprint_items(items, variants)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _fingerprint_items(items: Iterable[tuple[str, object]], variants: bool) -> EvalSet:
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
        done.append((name, eval_fingerprints(image) if variants else fingerprint(image)))
    done.sort(key=lambda item: item[0])
    failures.sort()
    fps = np.array([f for _, f in done], dtype=np.uint64)
    return EvalSet([n for n, _ in done], fps.reshape(len(done), VARIANT_COUNT) if variants else fps, failures)
