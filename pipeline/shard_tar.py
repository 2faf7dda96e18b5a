"""The shard format: one WebDataset tar of 224×224 JPEGs, byte-identical on every rerun.

Each sample is ``KEY.cls`` (class index, ASCII), ``KEY.jpg`` and ``KEY.json`` (wnid, class index,
semantic chain, original width/height). Tar metadata is fixed (mtime 0, uid/gid 0, no user
names, mode 0444, USTAR headers) and members follow the plan order, so the same plan and
parameters always give the same bytes. They are the bytes webdataset's own ``TarWriter`` writes
with that metadata (a test checks it), but headers are packed here (:func:`ustar_header`):
``TarWriter`` (``tarfile.addfile`` per member) takes several times longer per sample
(``benchmarks/shard_tar.py`` prints the ratio and the CPU time at ImageNet-21K-P's 11.6 M samples).
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from typing import Iterable, NamedTuple

from hierarchy.atomic import atomic_write_bytes
from pipeline.checksums import hashing
from pipeline.crashpoints import crash_point

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


def _reference_header() -> bytes:
    ti = tarfile.TarInfo("x")
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0o444, 0, 0, "", ""
    return ti.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


# the fixed fields, taken from what this Python's tarfile writes for such a member
_HEAD = _reference_header()[100:124]  # mode, uid, gid
_MTIME = _reference_header()[136:148]
_TAIL = _reference_header()[156:]  # type, linkname, magic, version, uname, gname, dev numbers, prefix
_TAIL_SUM = sum(_TAIL) + 8 * 32  # the checksum field itself counts as 8 spaces
_ZEROS = bytes(RECORD + 2 * BLOCK)


def sample_json(wnid: str, class_index: int, chain: list[int], width: int, height: int) -> bytes:
    """The ``.json`` member of a sample (compact, sorted keys)."""
    return json.dumps(dict(wnid=wnid, class_index=class_index, semantic_chain=chain,
                           width=width, height=height), sort_keys=True, separators=(",", ":")).encode()


def sample_json_maker(chains: list[list[int]]):
    """A fast :func:`sample_json` for many samples: ``make(wnid, class_index, width, height)``
    (the same bytes, from per-class templates; wnids are ``nXXXXXXXX``, nothing to escape)."""
    templates = [('{"class_index":%d,"height":%%d,"semantic_chain":%s,"width":%%d,"wnid":"%%s"}'
                  % (ci, json.dumps(chain, separators=(",", ":")))).encode() for ci, chain in enumerate(chains)]

    def make(wnid: str, class_index: int, width: int, height: int) -> bytes:
        return templates[class_index] % (height, width, wnid.encode())
    return make


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte USTAR header of a regular file with the shards' fixed metadata."""
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8 ** 11:  # tarfile splits long names into prefix/name
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o444, 0, 0, "", ""
        return ti.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    head = raw.ljust(100, b"\0") + _HEAD + b"%011o\0" % size + _MTIME
    return head + b"%06o\0 " % (sum(head) + _TAIL_SUM) + _TAIL


def tar_bytes(samples: Iterable[tuple[str, dict[str, bytes]]]) -> tuple[list, int]:
    """The pieces of a tar holding ``(key, {ext: bytes})`` samples (extensions sorted) and the sample count."""
    pieces, count, total = [], 0, 0
    zeros = memoryview(_ZEROS)
    for key, fields in samples:
        for ext in sorted(fields):
            data = fields[ext]
            pad = -len(data) % BLOCK
            pieces += [ustar_header(f"{key}.{ext}", len(data)), data, zeros[:pad]]
            total += BLOCK + len(data) + pad
        count += 1
    total += 2 * BLOCK
    pieces.append(zeros[:2 * BLOCK + (-total % RECORD)])  # end-of-archive marker, record padding
    return pieces, count


class WrittenShard(NamedTuple):
    samples: int
    size: int
    sha256: str


def write_shard(path: str | os.PathLike, samples: Iterable[tuple[str, dict[str, bytes]]]) -> WrittenShard:
    """Write ``(key, {ext: bytes})`` samples to ``path`` atomically; return the sample count and
    the file's size and SHA-256 (hashed from the bytes as they are written, never read back).

    The file appears only when complete (temp file in the same folder, fsync, rename); a temp
    file left by a killed writer is named ``.NAME.tmp-*``.
    """
    pieces, count = tar_bytes(samples)
    sha = hashlib.sha256()
    size = atomic_write_bytes(path, hashing(pieces, sha), before_rename=lambda: crash_point("shard_temp"))
    return WrittenShard(count, size, sha.hexdigest())
