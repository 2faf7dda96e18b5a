"""Streaming the WebDataset shards written by the pipeline: deterministic, resumable, DDP-exact.

An epoch's order is a pure function of ``(seed, epoch)``: shards permuted, cut into lanes, each
lane shuffled by a buffer simulated on indices, global batch ``b`` = the ``b``-th chunk of every
lane; ranks own groups of lanes, loader workers own lanes round-robin, and a resumed run skips
consumed samples by their tar headers. The full contract (why ``W`` ranks x ``B`` see exactly
the samples of 1 rank x ``W * B``): trainer/README.md, "Data streaming and determinism".
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.dataset_format import IMAGE, INFO_FILE, LABEL, TREE_FILE
from trainer.config import ConfigError
from trainer.transforms import ImageDecodeError, SampleTransform


class DataError(RuntimeError):
    """The dataset on disk is missing, inconsistent or holds an unreadable sample."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset: its shard files and the number of samples in each."""

    name: str
    files: tuple[str, ...]
    lengths: tuple[int, ...]

    @property
    def num_samples(self) -> int:
        return sum(self.lengths)


def read_split(dataset_dir: str | Path, split: str) -> Split:
    """Read ``split`` ("train" / "validation") from ``DIR/_info.json``, checking the shards exist."""
    dataset_dir = Path(dataset_dir)
    info_path = dataset_dir / INFO_FILE
    if not info_path.is_file():
        raise DataError(f"{info_path} not found: --data must be a dataset built by the pipeline")
    try:
        splits = json.loads(info_path.read_text())["splits"]
        entry = splits[split]
        files = tuple(str(dataset_dir / name) for name in entry["filenames"])
        lengths = tuple(int(n) for n in entry["shard_lengths"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{info_path}: no valid split {split!r} ({exc!r})") from None
    if len(files) != len(lengths) or not files:
        raise DataError(f"{info_path}: split {split!r} lists {len(files)} files but "
                        f"{len(lengths)} shard lengths")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(f"{len(missing)} shard(s) of split {split!r} are missing, e.g. {missing[0]}")
    return Split(split, files, lengths)


def load_tree(dataset_dir: str | Path):
    """The dataset's ``semantic_tree.json`` as a ``hierarchy.SemanticTree``."""
    from hierarchy import SemanticTree

    path = Path(dataset_dir) / TREE_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: --data must be a dataset built by the pipeline")
    return SemanticTree.load(path)


def dataset_identity(dataset_dir: str | Path) -> str:
    """A fingerprint of the dataset's content: SHA-256 of ``_info.json`` (shard names and
    sample counts) and ``semantic_tree.json`` (the classes and their order). The pipeline writes
    both byte for byte the same for the same build, so a moved or copied dataset keeps it."""
    digest = hashlib.sha256()
    for name in (INFO_FILE, TREE_FILE):
        digest.update(Path(dataset_dir, name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Segment:
    """Samples ``[start, stop)`` of shard ``shard`` (an index into ``Split.files``)."""

    shard: int
    start: int
    stop: int


def contiguous_segments(lengths, shard_order, begin: int, end: int) -> list[Segment]:
    """The shard segments covering positions ``[begin, end)`` of the shards concatenated in order."""
    segments, position = [], 0
    for shard in shard_order:
        length = lengths[shard]
        lo, hi = max(begin, position), min(end, position + length)
        if lo < hi:
            segments.append(Segment(int(shard), lo - position, hi - position))
        position += length
        if position >= end:
            break
    return segments


def even_range(total: int, parts: int, index: int) -> tuple[int, int]:
    """``[begin, end)`` of part ``index`` when ``total`` items are split into ``parts`` near-equal runs."""
    return total * index // parts, total * (index + 1) // parts


def shuffle_buffer_order(n: int, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """Output order of a shuffle buffer fed ``0 .. n-1``: a permutation where position ``t``
    holds an index ``< t + buffer_size`` (so at most ``buffer_size`` samples wait in memory).

    Like webdataset's ``shuffle``: fill the buffer, then emit a random slot and refill it with the
    next input; once the input is exhausted, emit the rest in random order.
    """
    buffer_size = max(1, min(buffer_size, n))
    out = np.empty(n, dtype=np.int64)
    slots = np.arange(buffer_size, dtype=np.int64)
    picks = rng.integers(0, buffer_size, size=n - buffer_size)
    for t, j in enumerate(picks.tolist()):
        out[t] = slots[j]
        slots[j] = buffer_size + t
    out[n - buffer_size:] = rng.permutation(slots)
    return out


@dataclass(frozen=True)
class TrainPlan:
    """The deterministic epoch layout of the train split (see the module docstring)."""

    lengths: tuple[int, ...]
    seed: int
    num_lanes: int
    chunk_size: int
    shuffle_buffer: int

    @property
    def global_batch(self) -> int:
        return self.num_lanes * self.chunk_size

    @property
    def batches_per_epoch(self) -> int:
        return sum(self.lengths) // self.global_batch

    def shard_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.lengths))

    def lane(self, epoch: int, lane: int) -> tuple[list[Segment], np.ndarray, np.ndarray]:
        """``(segments, order, seeds)`` of one lane for one epoch.

        ``order[t]`` is the lane-relative position of the ``t``-th sample the lane emits and
        ``seeds[t]`` its augmentation seed; both have ``batches_per_epoch * chunk_size`` entries.
        """
        begin, end = even_range(sum(self.lengths), self.num_lanes, lane)
        segments = contiguous_segments(self.lengths, self.shard_order(epoch), begin, end)
        rng = np.random.default_rng([self.seed, epoch, lane])
        used = self.batches_per_epoch * self.chunk_size
        order = shuffle_buffer_order(end - begin, self.shuffle_buffer, rng)[:used]
        seeds = rng.integers(0, 2**63, size=used, dtype=np.int64)
        return segments, order, seeds


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    return handle.read() if handle is not None else b""


def iter_shard(path: str, start: int, stop: int, wanted) -> Iterator[tuple[int, str, bytes, int]]:
    """Yield ``(index, key, jpeg, label)`` for samples ``start <= index < stop`` of one shard
    for which ``wanted(index)`` is true; other samples cost a tar header read, no data.

    A sample is the run of consecutive members sharing a key (name up to the first dot). The
    trainer walks shards itself rather than through webdataset's pipeline because exact resume
    and lanes need this: start mid-shard, and skip consumed or other lanes' samples by their
    headers without reading their data.
    """
    index, key, parts = -1, None, {}

    def finish():
        if IMAGE not in parts or LABEL not in parts:
            raise DataError(f"{path}: sample {key!r} lacks a .jpg or .cls member")
        try:
            label = int(parts[LABEL])
        except ValueError:
            raise DataError(f"{path}: sample {key!r} has a non-integer .cls") from None
        return index, key, parts[IMAGE], label

    try:
        with tarfile.open(path, mode="r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                member_key, _, ext = name.partition(".")
                if member_key != key:
                    if parts:
                        yield finish()
                    index, key, parts = index + 1, member_key, {}
                    if index >= stop:
                        return
                if start <= index and wanted(index) and ext in (IMAGE, LABEL):
                    parts[ext] = _read_member(archive, member)
            if parts:
                yield finish()
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: unreadable shard ({exc})") from None
    if index + 1 < stop:
        raise DataError(f"{path}: holds {index + 1} samples, _info.json says at least {stop}")


def read_lane(files, segments, order, first: int, last: int) -> Iterator[tuple[str, bytes, int, str]]:
    """Yield ``(key, jpeg, label, shard)`` for the lane's emitted samples ``first <= t < last``
    (``shard`` is the file the sample came from, for error messages).

    Reads the segments sequentially, keeps only samples still to be emitted (at most a shuffle
    buffer's worth wait in memory) and emits them in ``order``. A shard shorter than
    ``_info.json`` says raises :class:`DataError` in :func:`iter_shard`.
    """
    if first >= last:
        return
    needed = np.zeros(int(order.max()) + 1, dtype=bool)
    needed[order[first:last]] = True
    pending, t, base = {}, first, 0
    for segment in segments:
        def wanted(i, offset=base - segment.start):
            p = offset + i
            return p < len(needed) and needed[p]

        for index, key, jpeg, label in iter_shard(files[segment.shard], segment.start,
                                                  segment.stop, wanted):
            pending[base + index - segment.start] = (key, jpeg, label, files[segment.shard])
            while t < last and int(order[t]) in pending:
                yield pending.pop(int(order[t]))
                t += 1
            if t == last:
                return
        base += segment.stop - segment.start


def _decode(transform: SampleTransform, where: str, jpeg: bytes, seed: int,
            label: int, num_classes: int) -> np.ndarray:
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: class index {label} outside [0, {num_classes})")
    try:
        return transform(jpeg, seed)
    except ImageDecodeError as exc:
        raise DataError(f"{where}: {exc}") from None


def _collate(arrays: list[np.ndarray], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``H x W x 3`` arrays into a ``[n, 3, H, W]`` uint8 tensor (channels-last memory)."""
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return images, torch.tensor(labels, dtype=torch.int64)


def _worker_slot() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class TrainChunks(IterableDataset):
    """One epoch of one rank's train chunks for batches ``first_batch <= b < last_batch``.

    Yields ``(images uint8 [chunk, 3, H, W], labels int64 [chunk])`` for batch ``b``, lane
    ``l`` in the order ``(b, l)`` lexicographic over the rank's lanes - split over loader
    workers by lane, which PyTorch's round-robin worker order reassembles.
    """

    def __init__(self, split: Split, plan: TrainPlan, lanes: list[int], epoch: int,
                 first_batch: int, last_batch: int, transform: SampleTransform,
                 num_classes: int):
        if not 0 <= first_batch <= last_batch <= plan.batches_per_epoch:
            raise ValueError(f"batches [{first_batch}, {last_batch}) outside the epoch's "
                             f"{plan.batches_per_epoch}")
        self.split, self.plan, self.lanes, self.epoch = split, plan, list(lanes), epoch
        self.first_batch, self.last_batch = first_batch, last_batch
        self.transform, self.num_classes = transform, num_classes

    def __iter__(self):
        worker, num_workers = _worker_slot()
        mine = self.lanes[worker::num_workers]
        chunk = self.plan.chunk_size
        streams, seeds = [], []
        for lane in mine:
            segments, order, lane_seeds = self.plan.lane(self.epoch, lane)
            streams.append(read_lane(self.split.files, segments, order,
                                     self.first_batch * chunk, self.last_batch * chunk))
            seeds.append(lane_seeds)
        for batch in range(self.first_batch, self.last_batch):
            for stream, lane_seeds in zip(streams, seeds):
                arrays, labels = [], []
                for k in range(chunk):
                    key, jpeg, label, shard = next(stream)
                    seed = int(lane_seeds[batch * chunk + k])
                    where = f"{shard}: sample {key!r}"
                    arrays.append(_decode(self.transform, where, jpeg, seed, label, self.num_classes))
                    labels.append(label)
                yield _collate(arrays, labels)


class EvalBatches(IterableDataset):
    """One rank's share of a split in file order, in batches of ``batch_size`` (last one short).

    The split is cut into ``world_size * num_workers`` contiguous near-equal ranges, one per
    (rank, worker), so every sample is read exactly once across the job.
    """

    def __init__(self, split: Split, rank: int, world_size: int, batch_size: int,
                 transform: SampleTransform, num_classes: int):
        self.split, self.rank, self.world_size = split, rank, world_size
        self.batch_size, self.transform, self.num_classes = batch_size, transform, num_classes

    def __iter__(self):
        worker, num_workers = _worker_slot()
        begin, end = even_range(self.split.num_samples, self.world_size * num_workers,
                                self.rank * num_workers + worker)
        if begin == end:
            return
        segments = contiguous_segments(self.split.lengths, range(len(self.split.files)), begin, end)
        order = np.arange(end - begin)
        arrays, labels = [], []
        for key, jpeg, label, shard in read_lane(self.split.files, segments, order, 0, end - begin):
            where = f"{shard}: sample {key!r}"
            arrays.append(_decode(self.transform, where, jpeg, 0, label, self.num_classes))
            labels.append(label)
            if len(arrays) == self.batch_size:
                yield _collate(arrays, labels)
                arrays, labels = [], []
        if arrays:
            yield _collate(arrays, labels)


def make_loader(dataset: IterableDataset, workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over an iterable of ready-made batches (no re-batching).

    It gets its own generator for the worker base seed (unused: the streams carry their own
    seeds), so creating a loader never advances the global torch RNG - a resumed run's dropout
    stream stays identical to an uninterrupted one.
    """
    return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None, persistent_workers=False,
                      generator=torch.Generator())


def rank_batches(chunks: Iterator, lanes_per_rank: int, device: torch.device):
    """Join each run of ``lanes_per_rank`` consecutive chunks into one local batch on ``device``."""
    pending = []
    for images, labels in chunks:
        pending.append((images.to(device, non_blocking=True), labels.to(device, non_blocking=True)))
        if len(pending) == lanes_per_rank:
            yield (torch.cat([p[0] for p in pending]), torch.cat([p[1] for p in pending]))
            pending = []


def rank_plan(train_split: Split, config, world_size: int, rank: int) -> tuple[TrainPlan, list[int]]:
    """The epoch plan of a run and the lanes this rank owns (``--data-lanes``, default ranks x
    workers; each loader worker owns as many lanes; the batch splits evenly over a rank's lanes)."""
    workers = max(config.workers, 1)
    lanes = config.data_lanes or world_size * workers
    if lanes % world_size or (lanes // world_size) % workers:
        raise ConfigError(f"--data-lanes {lanes} must be a multiple of ranks ({world_size}) x "
                              f"loader workers ({workers}) so every worker owns as many lanes")
    per_rank = lanes // world_size
    if config.batch_size % per_rank:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of the "
                              f"{per_rank} data lanes per rank")
    plan = TrainPlan(train_split.lengths, config.seed, lanes, config.batch_size // per_rank, config.shuffle_buffer)
    first = rank * per_rank
    return plan, list(range(first, first + per_rank))
