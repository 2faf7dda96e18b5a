"""Checksums of an output dir: recorded as its files are written, checked by ``python -m pipeline verify``.

Each output file's byte size and SHA-256 are recorded when it is written: a shard's from the
bytes as they go out (:func:`pipeline.shard_tar.write_shard`; its task's summary keeps them), the
tables' and the tree's by stage 4 (its accounting, in the work dir), the report files by the final
task, which then writes, last::

    OUT/_sizes.json   {"files": {path: bytes}, "total_bytes": N}: every file SHA256SUMS lists but itself
    OUT/SHA256SUMS    "<sha256>  <path>" per file, sorted by path: what ``sha256sum -c SHA256SUMS`` reads

SHA256SUMS covers every output file but itself (``_sizes.json`` included); it is written last, so a
dir that has it holds a finished build. The same inputs give the same bytes, so the same manifest.

``python -m pipeline verify OUT`` compares each file's size (one ``stat``), then its SHA-256 (in
threads: hashlib lets go of the GIL while it hashes), and names the files missing or damaged. A
rerun of the build rewrites a missing file or one whose size differs from the record (the tasks'
``complete()`` compare sizes, never hashes); ``--remove-damaged`` deletes the others so that a
rerun rewrites them too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from hierarchy.atomic import atomic_write_bytes
from pipeline.dataset_format import MANIFEST_FILE, SIZES_FILE

#: ``verify``'s exit status when a file is missing or damaged (not one of :mod:`pipeline.errors`'s).
DAMAGED_EXIT = 11
#: ``verify``'s exit status when the dir has no manifest (no finished build) or is no folder.
NOT_VERIFIABLE_EXIT = 2
CHUNK = 8 << 20
_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


# ---- recording -------------------------------------------------------------------------------
def record(size: int, sha256: str) -> dict:
    return {"size": size, "sha256": sha256}


def hashing(pieces: Iterable, sha) -> Iterator:
    """Yield ``pieces`` (byte strings, memoryviews) unchanged, feeding each to ``sha`` on the way."""
    update = sha.update
    for piece in pieces:
        update(piece)
        yield piece


def bytes_record(data: bytes) -> dict:
    return record(len(data), hashlib.sha256(data).hexdigest())


def file_record(path: str | os.PathLike, progress=None) -> dict:
    """Size and SHA-256 of a file, read in chunks (``progress(n)`` after each chunk)."""
    sha, size = hashlib.sha256(), 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        while True:
            n = f.readinto(buf)
            if not n:
                break
            sha.update(view[:n])
            size += n
            if progress is not None:
                progress(n)
    return record(size, sha.hexdigest())


def record_of(path: str | os.PathLike, entry: dict) -> dict:
    """``entry``'s recorded size and SHA-256; a file recorded without them (by a version before
    checksums) is hashed instead."""
    if "size" in entry and "sha256" in entry:
        return record(entry["size"], entry["sha256"])
    return file_record(path)


def files_intact(root: str | os.PathLike, sizes: dict[str, int | None]) -> bool:
    """True when every file ``{relative path: size}`` under ``root`` is a regular file of its
    recorded size (``None``: any size). One ``stat`` per file, no reads."""
    for name, size in sizes.items():
        try:
            st = os.stat(os.path.join(root, name))
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
            return False
    return True


def manifest_text(sums: dict[str, str]) -> str:
    """``sha256sum``'s format: ``<hex>  <path>`` per line, sorted by path."""
    for name in sums:
        if "\n" in name or "\\" in name or name.startswith("/") or not name:
            raise ValueError(f"{name!r} cannot be listed in {MANIFEST_FILE}")
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


def write_manifest(output_dir: str | os.PathLike, records: dict[str, dict]) -> None:
    """``_sizes.json``, then ``SHA256SUMS`` (last: it marks the build complete) for ``records``
    ``{relative path: {"size", "sha256"}}``: every output file but these two."""
    out = Path(output_dir)
    sizes = {"files": {name: records[name]["size"] for name in sorted(records)},
             "total_bytes": sum(r["size"] for r in records.values())}
    sizes_bytes = (json.dumps(sizes, indent=1, sort_keys=True) + "\n").encode()
    atomic_write_bytes(out / SIZES_FILE, sizes_bytes)
    sums = {name: r["sha256"] for name, r in records.items()}
    sums[SIZES_FILE] = hashlib.sha256(sizes_bytes).hexdigest()
    atomic_write_bytes(out / MANIFEST_FILE, manifest_text(sums).encode())


def read_sizes(output_dir: str | os.PathLike) -> dict[str, int]:
    """``_sizes.json``'s ``{path: bytes}``; raises OSError / ValueError when it is missing or unreadable."""
    files = json.loads((Path(output_dir) / SIZES_FILE).read_text())["files"]
    if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
        raise ValueError(f"{SIZES_FILE} does not list sizes")
    return files


# ---- checking --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # "missing" or "damaged"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Report:
    files: int
    bytes: int
    seconds: float
    problems: list[Problem]


def read_manifest(output_dir: str | os.PathLike) -> tuple[dict[str, str], list[Problem]]:
    """``SHA256SUMS`` as ``{path: sha256}``, and a problem for each line that is not a safe entry.
    Raises FileNotFoundError when there is none."""
    sums, problems = {}, []
    text = (Path(output_dir) / MANIFEST_FILE).read_bytes().decode("utf-8", "replace")
    for i, line in enumerate(text.splitlines(), 1):
        m = _LINE.fullmatch(line)
        parts = Path(m.group(2)).parts if m else ()
        if not m or m.group(2).startswith("/") or ".." in parts or MANIFEST_FILE == m.group(2):
            problems.append(Problem(MANIFEST_FILE, "damaged", f"line {i} is not '<sha256>  <relative path>'"))
            continue
        sums[m.group(2)] = m.group(1)
    if not text.endswith("\n"):
        problems.append(Problem(MANIFEST_FILE, "damaged", "cut short"))
    return sums, problems


def verify(output_dir: str | os.PathLike, workers: int = 4, progress: bool = True) -> Report:
    """Check every file ``SHA256SUMS`` lists: its size (``_sizes.json``), then its SHA-256."""
    from tqdm import tqdm

    start = time.monotonic()
    out = Path(output_dir)
    sums, problems = read_manifest(out)
    sizes: dict[str, int] = {}
    data = b""
    if SIZES_FILE in sums:  # trusted only once its own hash matches
        try:
            data = (out / SIZES_FILE).read_bytes()
        except FileNotFoundError:
            problems.append(Problem(SIZES_FILE, "missing"))
        else:
            if hashlib.sha256(data).hexdigest() != sums[SIZES_FILE]:
                problems.append(Problem(SIZES_FILE, "damaged", "sha256 differs"))
            else:
                sizes = read_sizes(out)
    to_hash, total = [], 0
    for name in sorted(sums):
        if name == SIZES_FILE:
            continue
        try:
            st = os.stat(out / name)
        except FileNotFoundError:
            problems.append(Problem(name, "missing"))
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(Problem(name, "damaged", "not a regular file"))
        elif name in sizes and st.st_size != sizes[name]:
            problems.append(Problem(name, "damaged", f"{st.st_size} bytes, {sizes[name]} recorded"))
        else:
            to_hash.append(name)
            total += st.st_size
    lock = threading.Lock()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="verify", disable=not progress,
              file=sys.stderr) as bar:
        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def check(name: str) -> Problem | None:
            try:
                got = file_record(out / name, advance)["sha256"]
            except FileNotFoundError:
                return Problem(name, "missing")
            except OSError as exc:
                return Problem(name, "damaged", f"unreadable: {exc.strerror or exc}")
            return None if got == sums[name] else Problem(name, "damaged", "sha256 differs")

        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="verify") as pool:
            problems += [p for p in pool.map(check, to_hash) if p is not None]
    n_bytes = len(data) + (sum(sizes.get(n, 0) for n in sums) if sizes else total)
    return Report(files=len(sums), bytes=n_bytes, seconds=time.monotonic() - start,
                  problems=sorted(set(problems), key=lambda p: (p.path, p.kind, p.detail)))


def remove_damaged(output_dir: str | os.PathLike, problems: list[Problem]) -> list[str]:
    """Delete the damaged files of ``problems`` (a rerun of the build rewrites them); return their paths."""
    removed = []
    for path in sorted({p.path for p in problems if p.kind == "damaged"}):
        target = Path(output_dir) / path
        if target.is_file() or target.is_symlink():
            target.unlink()
            removed.append(path)
    return removed


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def main(argv=None) -> int:
    """``python -m pipeline verify OUT [--workers N] [--remove-damaged]``."""
    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number of at least 1")
        return int(text)

    parser = argparse.ArgumentParser(
        prog="python -m pipeline verify",
        description=f"Check every file of a built output dir against its {MANIFEST_FILE} (size, then SHA-256) "
                    f"and list those missing or damaged. Exit status: 0 all match; {DAMAGED_EXIT} a file is "
                    f"missing or damaged; {NOT_VERIFIABLE_EXIT} no {MANIFEST_FILE} (the build is not finished).")
    parser.add_argument("output_dir", metavar="OUT", help="the build's --output-dir")
    parser.add_argument("--workers", type=positive, default=min(16, os.cpu_count() or 1),
                        help="files hashed at once (default: one per core, at most 16)")
    parser.add_argument("--remove-damaged", action="store_true",
                        help="delete the damaged files, so that a rerun of the build rewrites them")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    if not out.is_dir():
        print(f"error: {out}: no such folder", file=sys.stderr)
        return NOT_VERIFIABLE_EXIT
    try:
        report = verify(out, args.workers, progress=not args.quiet)
    except FileNotFoundError as exc:
        if Path(exc.filename or "").name != MANIFEST_FILE:
            raise
        print(f"error: {out} has no {MANIFEST_FILE}: its build is not finished (or was made before builds "
              f"recorded checksums); rerun the build (the same command) to finish it and write {MANIFEST_FILE}",
              file=sys.stderr)
        return NOT_VERIFIABLE_EXIT
    if not report.problems:
        print(f"OK: {report.files} files, {report.bytes} bytes ({human(report.bytes)}) match {MANIFEST_FILE} "
              f"({report.seconds:.1f} s)")
        return 0
    for problem in report.problems:
        print(problem)
    n = len({p.path for p in report.problems})
    if args.remove_damaged:
        removed = remove_damaged(out, report.problems)
        for path in removed:
            print(f"removed: {path}")
        print(f"error: {n} of {report.files} files missing or damaged ({len(removed)} removed now); rerun the "
              "build (the same command) to rewrite them", file=sys.stderr)
    else:
        print(f"error: {n} of {report.files} files missing or damaged; rerun the build (the same command) to "
              "rewrite those missing or of the wrong size; a file damaged at its recorded size is rewritten once "
              "removed: run this again with --remove-damaged, then rerun the build", file=sys.stderr)
    return DAMAGED_EXIT


if __name__ == "__main__":
    sys.exit(main())
