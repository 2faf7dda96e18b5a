"""Read the raw ImageNet-21K archive in place.

Four layouts are accepted (see :func:`detect_layout`):

``tar``          fall11 style: an uncompressed outer tar of per-class tars ``nXXXXXXXX.tar``.
``tar.gz``       winter21 style: the same, gzip-compressed; :mod:`pipeline.gzip_extract` turns it
                 into a ``tars-dir`` in the work dir with one sequential pass.
``tars-dir``     a directory of per-class ``nXXXXXXXX.tar`` files.
``folders-dir``  a directory of per-class folders ``nXXXXXXXX/`` of image files.

Nothing is extracted from an uncompressed archive: a *container* is a class tar (or folder) and
every image is addressed by a :class:`Location` — a file relative to the archive root plus a byte
range — found by scanning tar headers with seeks. Member names are data, never paths.
"""
from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

LAYOUTS = ("tar", "tar.gz", "tars-dir", "folders-dir")
CLASS_TAR_RE = re.compile(r"^(n\d{8})\.tar$")
CLASS_DIR_RE = re.compile(r"^n\d{8}$")
MEMBER_RE = re.compile(r"^(n\d{8})_(\d+)\.([A-Za-z]+)$")
IMAGE_EXTENSIONS = {"jpeg", "jpg", "png"}
BLOCK = tarfile.BLOCKSIZE


class ArchiveError(RuntimeError):
    """The archive as a whole cannot be read (missing, wrong format, truncated)."""


@dataclass(frozen=True)
class Container:
    """One class's images: a class tar inside the archive, a class tar file, or a folder."""

    name: str  # e.g. "n01440764.tar" or "n01440764"
    wnid: str | None  # None when the name is not a class name (it will be rejected)
    source: str  # file relative to the archive root ("" = the archive file itself)
    offset: int  # byte offset of the class tar's data in ``source`` (0 for files/folders)
    size: int
    kind: str  # "tar" or "folder"


@dataclass(frozen=True)
class Member:
    """One file inside a container, before any name checks."""

    name: str  # name as stored (data, not a path)
    source: str
    offset: int
    size: int
    is_file: bool = True


def detect_layout(path: str | os.PathLike) -> str:
    """Which of :data:`LAYOUTS` ``path`` is; raises :class:`ArchiveError` with the reason."""
    p = Path(path)
    if not p.exists():
        raise ArchiveError(f"archive not found: {p}")
    if p.is_dir():
        try:
            entries = sorted(os.listdir(p))
        except OSError as exc:
            raise ArchiveError(f"archive directory unreadable: {p}: {exc}") from exc
        tars = [e for e in entries if CLASS_TAR_RE.match(e) and (p / e).is_file()]
        dirs = [e for e in entries if CLASS_DIR_RE.match(e) and (p / e).is_dir()]
        if tars and not dirs:
            return "tars-dir"
        if dirs and not tars:
            return "folders-dir"
        if tars and dirs:
            raise ArchiveError(f"{p} mixes class tars and class folders; use one layout")
        raise ArchiveError(f"{p} holds no class tars (nXXXXXXXX.tar) or class folders (nXXXXXXXX/)")
    try:
        with open(p, "rb") as f:
            head = f.read(BLOCK)
    except OSError as exc:
        raise ArchiveError(f"archive unreadable: {p}: {exc}") from exc
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if len(head) == BLOCK and head[257:262] == b"ustar":
        return "tar"
    if len(head) == BLOCK:
        try:
            tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
            return "tar"
        except tarfile.TarError:
            pass
    raise ArchiveError(f"{p} is not a tar, a .tar.gz or a directory of class tars/folders")


def class_wnid(container_name: str, kind: str) -> str | None:
    """The wnid a container name stands for, or None."""
    if kind == "tar":
        m = CLASS_TAR_RE.match(container_name)
        return m.group(1) if m else None
    return container_name if CLASS_DIR_RE.match(container_name) else None


def _checked_members(tf: tarfile.TarFile, file_size: int, what: str, base: int = 0) -> Iterator[tarfile.TarInfo]:
    """Iterate a tar's members, raising ArchiveError where data runs past the end of the file."""
    end = 0
    try:
        for ti in tf:
            if ti.isfile() and base + ti.offset_data + ti.size > file_size:
                raise ArchiveError(
                    f"truncated archive {what}: member {ti.name!r} at byte {base + ti.offset_data} "
                    f"needs {ti.size} bytes but the file ends at byte {file_size}"
                )
            end = ti.offset_data + ((ti.size + BLOCK - 1) // BLOCK) * BLOCK
            yield ti
    except tarfile.ReadError as exc:  # header cut in half, garbage where a header should be
        raise ArchiveError(f"truncated or corrupt archive {what} after byte {base + end}: {exc}") from exc
    if end and base + end >= file_size:
        raise ArchiveError(
            f"truncated archive {what}: no end-of-archive marker after the last member "
            f"(file ends at byte {file_size})"
        )


def list_containers(root: str | os.PathLike, layout: str) -> list[Container]:
    """All class containers of an uncompressed layout, sorted by name.

    For ``tar`` this scans the outer tar's headers with seeks (no data is read). Entries that are
    not class tars are returned too, with ``wnid=None``, so they can be rejected with a reason.
    """
    root = Path(root)
    out: list[Container] = []
    if layout == "tar":
        size = root.stat().st_size
        with open(root, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tf:
            for ti in _checked_members(tf, size, str(root)):
                kind = "tar" if ti.isfile() and ti.name.endswith(".tar") else "other"
                wnid = class_wnid(ti.name, "tar") if ti.isfile() else None
                out.append(Container(ti.name, wnid, "", ti.offset_data, ti.size, kind))
    elif layout == "tars-dir":
        for entry in os.scandir(root):
            if entry.is_file() and entry.name.endswith(".tar"):
                out.append(Container(entry.name, class_wnid(entry.name, "tar"), entry.name, 0,
                                     entry.stat().st_size, "tar"))
            else:
                out.append(Container(entry.name, None, entry.name, 0, 0, "other"))
    elif layout == "folders-dir":
        for entry in os.scandir(root):
            if entry.is_dir():
                out.append(Container(entry.name, class_wnid(entry.name, "folder"), entry.name, 0, 0, "folder"))
            else:
                out.append(Container(entry.name, None, entry.name, 0, 0, "other"))
    else:
        raise ValueError(f"list_containers needs an uncompressed layout, not {layout!r}")
    return sorted(out, key=lambda c: c.name)


class _Window:
    """A read-only file view of ``[offset, offset + size)`` of an open file (for tarfile)."""

    def __init__(self, f, offset: int, size: int):
        self._f, self._start, self._size, self._pos = f, offset, size, 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else min(n, self._size - self._pos)
        if n <= 0:
            return b""
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data


def list_members(root: str | os.PathLike, container: Container) -> list[Member]:
    """Files of one container with their byte ranges (tar headers scanned with seeks).

    Raises :class:`ArchiveError` when the class tar itself is unreadable or truncated.
    """
    root = Path(root)
    if container.kind == "folder":
        folder = root / container.source
        out = []
        for entry in os.scandir(folder):
            rel = f"{container.source}/{entry.name}"
            is_file = entry.is_file(follow_symlinks=False)
            out.append(Member(entry.name, rel, 0, entry.stat().st_size if is_file else 0, is_file))
        return sorted(out, key=lambda m: m.name)
    path = root if container.source == "" else root / container.source
    out = []
    with open(path, "rb") as f:
        window = _Window(f, container.offset, container.size)
        try:
            tf = tarfile.open(fileobj=window, mode="r:")
        except tarfile.TarError as exc:
            raise ArchiveError(f"class tar {container.name} is not a readable tar: {exc}") from exc
        with tf:
            for ti in _checked_members(tf, container.offset + container.size, container.name,
                                       base=container.offset):
                out.append(Member(ti.name, container.source, container.offset + ti.offset_data,
                                  ti.size, ti.isfile()))
    return out


class ArchiveReader:
    """Reads member bytes by location, keeping a small cache of open files."""

    def __init__(self, root: str | os.PathLike, max_open: int = 64):
        self.root = Path(root)
        self.max_open = max_open
        self._files: dict[str, object] = {}

    def read(self, source: str, offset: int, size: int) -> bytes:
        f = self._files.get(source)
        if f is None:
            if len(self._files) >= self.max_open:
                self.close()
            f = open(self.root if source == "" else self.root / source, "rb")
            self._files[source] = f
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise ArchiveError(f"short read: {source or self.root} byte {offset}: wanted {size}, got {len(data)}")
        return data

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
