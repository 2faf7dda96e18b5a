"""Stage 3 — assemble: shards written from the parts' JPEG bytes (no decoding) in plan order.

Shards are numbered train first, then validation, and each shard task takes a contiguous range
of them (:func:`shard_range`). A train shard's samples are one contiguous byte range in every
part (parts list train samples in the global train order), validation samples one range per
class, so a task reads each part front to back with one ``pread`` per (shard, part) run.

A task's summary (``group-NNNNN.json``) records each shard's samples, byte size and SHA-256 (hashed
as the bytes are written); a shard on disk of another size than recorded (cut short, replaced)
is written again, byte-identical, on the next run (:func:`shards_intact`, one ``stat`` per shard).
"""
from __future__ import annotations

import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.checksums import file_record, files_intact
from pipeline.crashpoints import crash_point
from hierarchy.atomic import atomic_write_text, remove_stale_temp_files
from pipeline.dataset_format import IMAGE, LABEL, META, SPLITS, shard_name
from pipeline.shard_tar import sample_json_maker, write_shard

WRITES_LOG = "writes.log"
SAMPLE_COLUMNS = ["key", "wnid", "class_index", "part", "offset", "length", "width", "height"]


def shards_intact(output_dir, entries: list[dict]) -> bool:
    """True when the shard of every summary entry is on disk at its recorded size (one stat per
    shard, no reads; an entry without a size, from a version before checksums: the file exists)."""
    return files_intact(output_dir, {e["name"]: e.get("size") for e in entries})


def read_summary(path: Path) -> dict[str, dict]:
    """The shard entries ``{name: entry}`` of a task's summary; ``{}`` when there is none."""
    try:
        return {e["name"]: e for e in json.loads(Path(path).read_text())["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def log_write(log_dir: Path, name: str) -> None:
    """Append ``name host pid`` to the audit log of shard writes (one small O_APPEND write)."""
    line = f"{name}\t{socket.gethostname()}\t{os.getpid()}\n".encode()
    fd = os.open(log_dir / WRITES_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def all_shards(shard_counts: dict[str, int]) -> list[tuple[str, int]]:
    """Every (split, shard) in global order: train shards, then validation shards."""
    return [(split, s) for split in SPLITS for s in range(shard_counts.get(split, 0))]


def shard_range(shard_counts: dict[str, int], task: int, tasks: int) -> list[tuple[str, int, int]]:
    """``(split, shard, global index)`` of the shards of ``task`` of ``tasks``: a contiguous range."""
    shards = all_shards(shard_counts)
    lo, hi = task * len(shards) // tasks, (task + 1) * len(shards) // tasks
    return [(split, s, g) for g, (split, s) in enumerate(shards) if lo <= g < hi]


class PartFiles:
    """The parts' ``.bin`` files, read by coalesced byte runs (at most ``max_open`` kept open:
    a shard of ImageNet-21K reads from over a thousand parts)."""

    def __init__(self, bases: list[str], max_open: int = 256):
        self.bases, self.max_open, self._fds = bases, max_open, {}

    def read_runs(self, part: int, spans: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``(offset, length)`` span (sorted by offset) of one part."""
        fd = self._fds.get(part)
        if fd is None:
            if len(self._fds) >= self.max_open:
                self.close()
            fd = self._fds[part] = os.open(f"{self.bases[part]}.bin", os.O_RDONLY)
        out, i = [], 0
        while i < len(spans):
            start, end, j = spans[i][0], spans[i][0] + spans[i][1], i + 1
            while j < len(spans) and spans[j][0] == end:  # adjacent: one read
                end += spans[j][1]
                j += 1
            run = os.pread(fd, end - start, start)
            if len(run) != end - start:
                raise OSError(f"{self.bases[part]}.bin is shorter than its index says (byte {start})")
            view = memoryview(run)
            out += [view[o - start:o - start + n] for o, n in spans[i:j]]  # no copies
            i = j
        return out

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def shard_samples(rows: dict[str, list], parts: PartFiles, sample_json) -> list[tuple[str, dict]]:
    """The samples of one shard (its plan rows, in position order) with their JPEG bytes;
    ``sample_json(wnid, class_index, width, height)`` makes the ``.json`` member."""
    n = len(rows["key"])
    by_part: dict[int, list[int]] = {}
    for i in range(n):
        by_part.setdefault(rows["part"][i], []).append(i)
    jpgs: list = [None] * n
    for part in sorted(by_part):
        idx = sorted(by_part[part], key=lambda i: rows["offset"][i])
        for i, data in zip(idx, parts.read_runs(part, [(rows["offset"][i], rows["length"][i]) for i in idx])):
            jpgs[i] = data
    samples = []
    for i in range(n):
        ci = rows["class_index"][i]
        samples.append((rows["key"][i], {
            IMAGE: jpgs[i], LABEL: b"%d" % ci,
            META: sample_json(rows["wnid"][i], ci, rows["width"][i], rows["height"][i])}))
    return samples


def write_shards(plan_path: str | Path, part_bases: list[str], task: int, tasks: int, output_dir: Path,
                 work_dir: Path, chains: list[list[int]], progress=None, recorded: dict[str, dict] | None = None
                 ) -> dict:
    """Write every shard of ``task`` that is missing, or of another size than ``recorded`` (the
    entries of the task's previous summary); return its summary: each shard's name, samples,
    size and SHA-256. A shard on disk with no recorded checksum (a killed run renamed it, or an
    older version wrote it) is kept and hashed."""
    recorded = recorded or {}
    work_dir.mkdir(parents=True, exist_ok=True)
    counts = json.loads(Path(plan_path).with_suffix(".shards.json").read_text())
    mine = shard_range(counts, task, tasks)
    summary = {"task": task, "tasks": tasks, "shards": []}
    plan = pq.ParquetFile(plan_path)  # one row group per shard, in global shard order
    parts = PartFiles(part_bases)
    make_json = sample_json_maker(chains)

    def write(target: Path, samples: list, name: str, entry: dict) -> None:
        written = write_shard(target, samples)
        entry.update(size=written.size, sha256=written.sha256)
        log_write(work_dir, name)
        crash_point("shard_written")

    # the next shard is gathered while the previous one is written and flushed to disk
    pending = None
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="shard-write") as writer:
            for i, (split, shard, g) in enumerate(mine):
                name = shard_name(split, shard)
                target = output_dir / name
                remove_stale_temp_files(target)
                entry = {"name": name, "split": split, "shard": shard,
                         "num_samples": plan.metadata.row_group(g).num_rows}
                old = recorded.get(name, {})
                try:
                    size = target.stat().st_size if target.is_file() else None
                except FileNotFoundError:
                    size = None
                if size is not None and size == old.get("size") and "sha256" in old:
                    entry.update(size=old["size"], sha256=old["sha256"])  # intact: kept
                elif size is not None and "size" not in old:
                    entry.update(file_record(target))  # complete (written atomically), but not recorded
                else:  # missing, or cut short / replaced since it was recorded
                    rows = plan.read_row_group(g, columns=SAMPLE_COLUMNS).to_pydict()
                    samples = shard_samples(rows, parts, make_json)
                    if pending:
                        pending.result()
                    pending = writer.submit(write, target, samples, name, entry)
                summary["shards"].append(entry)
                if progress:
                    progress(i + 1, f"{name} ({i + 1}/{len(mine)} shards of task {task})")
            if pending:
                pending.result()
    finally:
        parts.close()
    return summary


def write_summary(path: Path, summary: dict) -> None:
    atomic_write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")
