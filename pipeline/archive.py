"""Read the raw ImageNet-21K archive in place: its layout and its class containers.

Six layouts are accepted (see :func:`detect_layout`; :func:`layout_of` gives each its
:class:`pipeline.archive_layout.ArchiveLayout`):

``tar``              fall11 style: an uncompressed outer tar of per-class tars ``nXXXXXXXX.tar``.
``tar.gz``           winter21 style: the same, gzip-compressed; inflated as one stream, never copied.
``tars-dir``         a directory of per-class ``nXXXXXXXX.tar`` files.
``folders-dir``      a directory of per-class folders ``nXXXXXXXX/`` of image files.
``released``         the official, already processed ImageNet-21K-P download (``imagenet21k_resized/``):
                     a train and a val folder of class folders, and optionally a small-classes
                     folder (:data:`RELEASE_FOLDERS` lists the names recognised).
``released.tar.gz``  that download as its ``.tar.gz``, read in place.

Nothing is extracted. A *container* is a class tar (or folder); :func:`list_containers` lists
them in the order the build reads them (byte order for ``tar``: the outer tar is walked by
:class:`pipeline.tarstream.TarReader` over a :class:`pipeline.streams.PreadStream`, one 512-byte
``pread`` per outer member, jumping over the class tars; name order for folders). A class tar is
walked front to back by the same :class:`~pipeline.tarstream.TarReader`, a class folder listed by
:func:`folder_files`. Member names are data, never paths.
"""
from __future__ import annotations

import functools
import os
import re
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.archive_layout import LAYOUTS as LAYOUT_TYPES
from pipeline.archive_layout import RAW_LAYOUTS, ArchiveLayout
from pipeline.errors import ArchiveError
from pipeline.streams import MemoryStream, PreadStream
from pipeline.tarstream import BLOCK, Entry, TarDamage, TarReader, parse_header

LAYOUTS = tuple(LAYOUT_TYPES)  # layout names; RAW_LAYOUTS: the raw ImageNet-21K release, as given or unpacked
#: Folder names of the official processed download (``imagenet21k_resized.tar.gz`` unpacks to
#: ``imagenet21k_resized/imagenet21k_train`` etc.) and the shorter names users rename them to.
RELEASE_FOLDERS = {"train": ("imagenet21k_train", "train"),
                   "validation": ("imagenet21k_val", "val", "validation"),
                   "small": ("imagenet21k_small_classes", "small_classes")}
CLASS_TAR_RE = re.compile(r"^(n\d{8})\.tar$")
CLASS_DIR_RE = re.compile(r"^n\d{8}$")
MEMBER_RE = re.compile(r"^(n\d{8})_(\d+)\.([A-Za-z]+)$")
IMAGE_EXTENSIONS = {"jpeg", "jpg", "png"}


@dataclass(frozen=True)
class Container:
    """One class's images: a class tar inside the archive, a class tar file, or a folder."""

    name: str  # e.g. "n01440764.tar" or "n01440764"
    wnid: str | None  # None when the name is not a class name (it will be rejected)
    source: str  # file relative to the archive root ("" = the archive file itself)
    offset: int  # byte offset of the class tar's data in ``source`` (0 for files/folders)
    size: int  # bytes of the class tar (0 for folders and non-files)
    kind: str  # "tar", "folder", "other" (not a class container), "duplicate" (a wnid seen before)
    #            or "val_only" (released layout: a val class folder with no train folder)
    weight: int = 0  # work estimate for splitting the build into tasks: bytes, or files of a folder
    split: str = ""  # released layout: the folder's split (train, validation, small); "" otherwise


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
        if release_root(p) is not None:
            return "released"
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
        released = any(release_member_split(name) for name in first_gzip_members(p))
        return "released.tar.gz" if released else "tar.gz"
    if len(head) == BLOCK and head[257:262] == b"ustar":
        return "tar"
    if len(head) == BLOCK:
        try:
            parse_header(head)
            return "tar"
        except tarfile.TarError:
            pass
    raise ArchiveError(f"{p} is not a tar, a .tar.gz or a directory of class tars/folders")


def release_root(path: Path) -> tuple[str, dict[str, str]] | None:
    """``(prefix, {split: folder})`` when ``path`` (or its one subfolder: the folder the
    ``.tar.gz`` unpacks to, given by its parent) holds the released layout's train and val
    folders; None otherwise."""
    found = _split_folders(path)
    if found:
        return "", found
    subdirs = [e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]
    if len(subdirs) == 1:
        found = _split_folders(path / subdirs[0])
        if found:
            return subdirs[0] + "/", found
    return None


def _split_folders(base: Path) -> dict[str, str] | None:
    """``{split: folder name}`` of ``base`` when it has a train and a val folder; raises
    :class:`ArchiveError` for two folders of one split (``train`` and ``imagenet21k_train``)."""
    found = {}
    for split, names in RELEASE_FOLDERS.items():
        present = [n for n in names if (base / n).is_dir()]
        if len(present) > 1:
            raise ArchiveError(f"{base} holds both {' and '.join(present)}: keep one {split} folder")
        if present:
            found[split] = present[0]
    return found if "train" in found and "validation" in found else None


def release_member_split(name: str | None) -> tuple[str, str, list[str]] | None:
    """``(split, split folder, the path's parts after it)`` for a member path of the released
    ``.tar.gz`` (``imagenet21k_resized/imagenet21k_train/n01440764/n01440764_10026.JPEG``)."""
    if not name:
        return None
    parts = [p for p in name.strip("/").split("/") if p not in ("", ".")]
    for i, part in enumerate(parts[:2]):
        for split, names in RELEASE_FOLDERS.items():
            if part in names and (i == 0 or not parts[0].startswith("n")):
                return split, part, parts[i + 1:]
    return None


def first_gzip_members(path: Path, limit: int = 8) -> list[str]:
    """Names of the first members of a ``.tar.gz`` whose headers lie in its first 64 KiB, inflated."""
    import zlib

    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:
        data = zlib.decompressobj(31).decompress(head, 1 << 17)
    except zlib.error:
        return []
    names: list[str] = []
    try:
        for entry in TarReader(MemoryStream(data)):
            names.append(entry.name)
            if len(names) == limit:
                break
    except TarDamage:
        pass  # the inflated head ends (or the tar is damaged): the names before
    return names


def class_wnid(container_name: str, kind: str) -> str | None:
    """The wnid a container name stands for, or None."""
    if kind == "tar":
        m = CLASS_TAR_RE.match(container_name)
        return m.group(1) if m else None
    return container_name if CLASS_DIR_RE.match(container_name) else None


def tar_member_container(entry: Entry, source: str = "", weight: int = 0) -> Container:
    """The container a member of an outer tar is: a class tar when it is a file named ``*.tar``
    (``wnid`` when the name is a class name), else ``other``."""
    kind = "tar" if entry.is_file and entry.name.endswith(".tar") else "other"
    wnid = class_wnid(entry.name, "tar") if entry.is_file else None
    return Container(entry.name, wnid, source, entry.data_offset, entry.size, kind, weight)


def layout_of(path: str | os.PathLike) -> ArchiveLayout:
    """The :class:`~pipeline.archive_layout.ArchiveLayout` of ``path`` (looked at once per
    process); raises :class:`ArchiveError` with the reason."""
    return _layout_of(str(path))


@functools.cache
def _layout_of(path: str) -> ArchiveLayout:
    return LAYOUT_TYPES[detect_layout(path)]


def list_containers(root: str | os.PathLike, layout: str) -> list[Container]:
    """All containers of an uncompressed layout (by name), in read order (see the module docstring).

    Entries that are not class containers come back too (``wnid=None``, kind ``other``), and a
    second container of a wnid already listed gets kind ``duplicate``, so both can be rejected
    with a reason. Raises :class:`ArchiveError` for a truncated or corrupt outer tar.
    """
    return mark_duplicates(LAYOUT_TYPES[layout].lister()(Path(root)))


def list_outer_tar(root: Path) -> list[Container]:
    """The members of a fall11 tar: headers only, the class tars' data skipped by seeking."""
    with PreadStream(root) as stream:
        try:
            return [tar_member_container(e, weight=e.size) for e in TarReader(stream, stream.size)]
        except TarDamage as exc:
            raise ArchiveError(outer_damage_message(root, exc, stream.size)) from None


def list_tar_files(root: Path) -> list[Container]:
    """The class tar files of a directory (anything else: kind ``other``), by name."""
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(".tar"):
            size = entry.stat().st_size
            out.append(Container(entry.name, class_wnid(entry.name, "tar"), entry.name, 0, size, "tar", size))
        else:
            out.append(Container(entry.name, None, entry.name, 0, 0, "other"))
    return out


def list_folders(root: Path) -> list[Container]:
    """The class folders of a directory, weighed by their file counts (anything else: ``other``)."""
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir():
            files = sum(1 for _ in os.scandir(entry.path))  # names only: no stat per image
            out.append(Container(entry.name, class_wnid(entry.name, "folder"), entry.name, 0, 0, "folder", files))
        else:
            out.append(Container(entry.name, None, entry.name, 0, 0, "other"))
    return out


def list_release_containers(root: Path) -> list[Container]:
    """The released layout's class folders: train, then validation, then small classes (each by
    name), then anything else at the top (rejected). A val folder of a class with no train folder
    is kind ``val_only``."""
    prefix, folders = release_root(root)
    out: list[Container] = []
    for split in ("train", "validation", "small"):
        if split not in folders:
            continue
        top = f"{prefix}{folders[split]}"
        for entry in sorted(os.scandir(root / top), key=lambda e: e.name):
            name = f"{folders[split]}/{entry.name}"
            if entry.is_dir():
                files = sum(1 for _ in os.scandir(entry.path))
                out.append(Container(name, class_wnid(entry.name, "folder"), f"{top}/{entry.name}", 0, 0, "folder",
                                     files, split))
            else:
                out.append(Container(name, None, f"{top}/{entry.name}", 0, 0, "other", 0, split))
    trained = {c.wnid for c in out if c.split == "train" and c.kind == "folder"}
    out = [replace(c, kind="val_only") if c.split == "validation" and c.kind == "folder" and c.wnid not in trained
           else c for c in out]
    base = root / prefix
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        if entry.name not in folders.values():
            out.append(Container(entry.name, None, f"{prefix}{entry.name}", 0, 0, "other"))
    return out


def mark_duplicates(containers: list[Container]) -> list[Container]:
    """``containers`` with every container of an already listed wnid turned into kind ``duplicate``."""
    seen: set[tuple[str, str]] = set()
    out = []
    for c in containers:
        if c.wnid is not None and c.kind in ("tar", "folder"):
            if (c.split, c.wnid) in seen:
                c = replace(c, kind="duplicate")
            seen.add((c.split, c.wnid))
        out.append(c)
    return out


def outer_damage_message(path: Path, damage: TarDamage, file_size: int) -> str:
    """What :func:`list_containers` says of an outer tar cut short or corrupt at ``damage.offset``."""
    if damage.kind == "header":
        return f"truncated or corrupt archive {path}: unreadable header at byte {damage.offset}: {damage.detail}"
    if damage.kind == "overrun":
        return (f"truncated archive {path}: member {damage.member!r} at byte {damage.offset + BLOCK} needs "
                f"{damage.size} bytes but the file ends at byte {file_size}")
    return (f"truncated archive {path}: no end-of-archive marker "
            f"(the file ends at byte {file_size}, inside or right after a member)")


def folder_files(root: str | os.PathLike, container: Container) -> list[tuple[str, str, bool]]:
    """``(name, path, is_file)`` of the entries of a class folder, sorted by name."""
    folder = Path(root) / container.source
    return sorted((e.name, e.path, e.is_file(follow_symlinks=False)) for e in os.scandir(folder))


__all__ = ["LAYOUTS", "RAW_LAYOUTS", "RELEASE_FOLDERS", "ArchiveError", "Container", "class_wnid", "detect_layout",
           "folder_files", "layout_of", "list_containers", "release_member_split", "release_root", "tar_member_container"]
