"""Atomic file output for every package: a file (or folder) appears complete or not at all.

A writer writes ``.NAME.tmp-XXXXXXXXXXXX`` beside ``NAME``, flushes it to disk and renames it over
``NAME``; a writer killed on the way leaves only such a temp file, which
:func:`remove_stale_temp_files` (one file's) and :func:`remove_stale_temp_files_in` (a folder's)
delete. That one name pattern is the contract. (It lives in ``hierarchy``, the one package both
the pipeline and the trainer import without Luigi, torch or pyarrow.)
"""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

TEMP_MARK = ".tmp-"
WRITEV_PIECES, WRITEV_BYTES = 512, 8 << 20  # one writev per this many pieces or bytes


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temp name beside ``path``, in the pattern the cleanups look for."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:12]}")


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True, before_rename: Callable[[], None] | None = None):
    """Yield a temp path beside ``path`` to write; on success flush it to disk (unless not
    ``durable``: progress notes and the like) and rename it to ``path``; on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes | Iterable[bytes], durable: bool = True,
                       before_rename: Callable[[], None] | None = None) -> int:
    """Write ``data`` (bytes, or an iterable of byte strings: many small JPEGs go out in
    ``writev`` calls, never joined) to ``path`` atomically; return the byte count."""
    pieces = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    n = 0
    with atomic_path(path, durable, before_rename) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pending, size = [], 0
            for piece in pieces:
                pending.append(piece)
                size += len(piece)
                if len(pending) >= WRITEV_PIECES or size >= WRITEV_BYTES:
                    _write_all(fd, pending)
                    n, pending, size = n + size, [], 0
            _write_all(fd, pending)
            n += size
        finally:
            os.close(fd)
    return n


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """Write a UTF-8 text file atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), durable)


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temp folder beside ``path`` to fill; on success it replaces ``path`` (a folder
    there before is moved aside, then deleted); on error it is removed."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = temp_path(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_all(fd: int, pieces: list) -> None:
    """``os.writev`` until every byte of ``pieces`` is written (a short write resumes mid-piece)."""
    first = 0
    while first < len(pieces):
        written = os.writev(fd, pieces[first:first + 1024])  # IOV_MAX
        while first < len(pieces) and written >= len(pieces[first]):
            written -= len(pieces[first])
            first += 1
        if written:
            pieces[first] = memoryview(pieces[first])[written:]


def remove_stale_temp_files(path: str | os.PathLike) -> int:
    """Delete the temp files (or folders) a killed writer of ``path`` left; return how many.

    Safe while other processes write other files of the same folder (unlike
    :func:`remove_stale_temp_files_in`).
    """
    path = Path(path)
    return _remove(path.parent.glob(f".{path.name}{TEMP_MARK}*")) if path.parent.is_dir() else 0


def remove_stale_temp_files_in(folder: str | os.PathLike) -> int:
    """Delete every temp file (or folder) a killed writer left directly in ``folder``."""
    folder = Path(folder)
    return _remove(folder.glob(f".*{TEMP_MARK}*")) if folder.is_dir() else 0


def _remove(stale) -> int:
    removed = 0
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed
