"""The build's intermediate: the squish-resized images of a run of class containers (a *part*).

One convert task (or one stretch of the winter21 stream) writes one part, as files beside
each other (``BASE`` = ``.../part-00042``):

``BASE.bin``              the JPEGs back to back: validation samples in (wnid, member) order, then
                          train samples in train order (:func:`train_order`, a seeded hash of the key)
``BASE.samples.parquet``  one row per sample (:data:`SAMPLE_SCHEMA`): where its JPEG is in ``.bin``
``BASE.classes.parquet``  one row per class container (:data:`CLASS_SCHEMA`): kept or why dropped
``BASE.rejects.parquet``  reject rows (:data:`pipeline.members.REJECT_SCHEMA`)
``BASE.json``             the part's counts, written last: the part is done when it exists

Because every part lists its train samples in the global train order, the samples of one train
shard form one contiguous byte range per part, and the shard writers read each part front to
back (:mod:`pipeline.assemble`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from pipeline.crashpoints import crash_point
from pipeline.members import REJECT_SCHEMA
from pipeline.outputs import write_parquet

SAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("wnid", pa.string()),
    ("member", pa.string()),
    ("split", pa.string()),     # train | validation
    ("order", pa.uint64()),     # train: train_order(seed, key); validation: rank in its class
    ("offset", pa.int64()),     # of the JPEG in BASE.bin
    ("length", pa.int64()),
    ("width", pa.int64()),      # of the original image
    ("height", pa.int64()),
    ("fingerprint", pa.uint64()),  # of the resized pixels (pipeline.near_duplicates); null: not taken
    ("variants", pa.list_(pa.uint64())),  # validation samples: their eval_fingerprints; else null
])
CLASS_SCHEMA = pa.schema([
    ("wnid", pa.string()),
    ("container", pa.string()),
    ("n_images", pa.int64()),   # image members (names checked, duplicates removed)
    ("kept", pa.bool_()),
    ("drop_reason", pa.string()),  # null when kept; not_in_wordnet | too_few_images
])
SUFFIXES = (".bin", ".rejects.parquet", ".classes.parquet", ".samples.parquet", ".json")


def train_order(seed: int, key: str) -> int:
    """Where a train sample goes in the shuffled train split: a 64-bit hash of (seed, key)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


@dataclass
class PartBuilder:
    """Collects one part's samples, class rows and rejects in memory, then writes it."""

    samples: list[tuple] = field(default_factory=list)  # (sort key, row, jpeg bytes)
    classes: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    entries: int = 0        # archive entries seen: members, containers rejected whole, damaged tails
    bytes_read: int = 0     # raw archive bytes of the part's containers
    copied: int = 0         # samples whose bytes were already a ready JPEG (released layout)
    resized: int = 0        # samples squish-resized (released layout; raw layouts: every sample)

    def add_sample(self, key: str, wnid: str, member: str, split: str, order: int, jpg: bytes,
                   width: int, height: int, fingerprint: int | None = None,
                   variants: list[int] | None = None) -> None:
        row = dict(key=key, wnid=wnid, member=member, split=split, order=order, width=width, height=height,
                   fingerprint=fingerprint, variants=variants)
        sort_key = (0, wnid, member) if split == "validation" else (1, order, key)
        self.samples.append((sort_key, row, jpg))

    def add_class(self, wnid: str, container: str, n_images: int, drop_reason: str | None) -> None:
        self.classes.append(dict(wnid=wnid, container=container, n_images=n_images,
                                 kept=drop_reason is None, drop_reason=drop_reason))

    def write(self, base: str | Path) -> dict:
        """Write the part's files at ``base`` (the summary last); return the summary."""
        base = Path(base)
        remove_stale_temp_files_of(base)
        self.samples.sort(key=lambda s: s[0])
        rows, offset = [], 0
        for _, row, jpg in self.samples:
            row["offset"], row["length"] = offset, len(jpg)
            offset += len(jpg)
            rows.append(row)
        atomic_write_bytes(base.with_name(base.name + ".bin"), (jpg for _, _, jpg in self.samples))
        rejects = sorted(self.rejects, key=lambda r: (r["wnid"] or "", r["member"], r["reason"]))
        write_parquet(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), f"{base}.rejects.parquet")
        classes = sorted(self.classes, key=lambda c: (c["wnid"], c["container"]))
        write_parquet(pa.Table.from_pylist(classes, schema=CLASS_SCHEMA), f"{base}.classes.parquet")
        write_parquet(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), f"{base}.samples.parquet")
        crash_point("convert_part")
        summary = dict(entries=self.entries, samples=len(rows), rejects=len(rejects), classes=len(classes),
                       bytes_read=self.bytes_read, jpeg_bytes=offset)
        if self.copied or self.resized:
            summary.update(copied=self.copied, resized=self.resized)
        atomic_write_text(f"{base}.json", json.dumps(summary, sort_keys=True) + "\n")
        return summary


def part_done(base: str | Path) -> bool:
    return Path(f"{base}.json").is_file()


def remove_stale_temp_files_of(base: str | Path) -> None:
    """Delete the temp files a killed writer of this part left (other parts may be being written)."""
    base = Path(base)
    for suffix in SUFFIXES:
        remove_stale_temp_files(base.with_name(base.name + suffix))


def read_parts(bases: list[str], table: str, columns: list[str] | None = None) -> pa.Table:
    """One of the parts' tables (``"classes"``, ``"samples"``, ``"rejects"``) of every part, in order."""
    return pa.concat_tables([pq.read_table(f"{b}.{table}.parquet", columns=columns) for b in bases])
