"""How the build reads the raw archive: bytes read and distance jumped, measured with ``strace``.

    python benchmarks/read_pattern.py [--classes 10] [--per-class 500] [--formats tar,tar.gz,tars-dir,folders-dir]

For each layout, writes an archive of real photos (``benchmarks/photo_archive.py``; default 5,000
photos), runs ``luigi --module pipeline BuildImageNet21KP --workers 2 --samples-per-shard 500``
under ``strace -f -y`` (every ``read``, ``pread64`` and ``lseek`` of every process and thread,
with the path of each descriptor) and reports, over the reads of archive files only:

* bytes read / archive size (target <= 1.1: every byte at most once, headers included);
* distance jumped / archive size: the sum over every open file of |offset of a read - end of
  the previous read| (target <= 1.5, the outer header scan included);
* reads that went backwards (target: none: within a task, increasing offsets only);
* for ``.tar.gz``: passes over the compressed file (target <= 2).

:func:`read_pattern` is also what ``tests/test_read_pattern.py`` runs on the demo archive.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CALL = re.compile(r"^(\d+) +(?:<\.\.\. )?(pread64|read|lseek|openat|close)(?: resumed>|\()(.*)$")
FD = re.compile(r"^(\d+)<([^>]*)>")
RESULT = re.compile(r"\)\s+=\s+(-?\d+)")
TARGET_READ, TARGET_JUMP = 1.1, 1.5


def parse_trace(trace: Path, is_archive) -> dict:
    """Per open file (thread, descriptor, n-th open), the ``(offset, length)`` reads of archive
    files, in order."""
    pending: dict[str, str] = {}  # thread -> the start of an <unfinished ...> call
    sequences: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    position: dict[tuple, int] = defaultdict(int)
    opened: dict[tuple[str, str], int] = defaultdict(int)  # (thread, fd) -> opens so far
    for line in trace.read_text(errors="replace").splitlines():
        m = CALL.match(line)
        if not m:
            continue
        tid, call, rest = m.groups()
        if rest.endswith("<unfinished ...>"):
            pending[tid] = rest[: -len("<unfinished ...>")]
            continue
        if " resumed>" in line:
            rest = pending.pop(tid, "") + rest
        result = RESULT.search(rest)
        if call == "openat":
            if result and int(result.group(1)) >= 0:
                opened[(tid, result.group(1))] += 1
            continue
        fd = FD.match(rest)
        if not fd or not result or not is_archive(fd.group(2)):
            continue
        key, ret = (tid, fd.group(1), opened[(tid, fd.group(1))], fd.group(2)), int(result.group(1))
        if call == "close" or ret < 0:
            continue
        args = rest[: result.start()].split(", ")
        if call == "lseek":
            position[key] = ret
        elif call == "pread64":
            sequences[key].append((int(args[-1]), ret))
        else:
            sequences[key].append((position[key], ret))
            position[key] += ret
    return sequences


def summarize(sequences: dict, archive_bytes: int) -> dict:
    read = jumped = backwards = 0
    for reads in sequences.values():
        end = None
        for offset, length in reads:
            if length == 0:
                continue
            if end is not None:
                jumped += abs(offset - end)
                backwards += offset < end
            read += length
            end = offset + length
    return {"read": read / archive_bytes, "jumped": jumped / archive_bytes, "backwards": backwards,
            "files_opened": len(sequences)}


def read_pattern(archive: Path, out: Path, extra_args: list[str], workers: int = 2) -> dict:
    """Build ``archive`` under strace; return the read figures (see the module docstring)."""
    archive = archive.resolve()
    trace = out.with_name(out.name + ".strace")
    cmd = ["strace", "-f", "-y", "-s", "0", "-qq", "-e", "trace=openat,close,read,pread64,lseek", "-o", str(trace),
           sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP", "--local-scheduler",
           "--workers", str(workers), "--archive", str(archive), "--output-dir", str(out), *extra_args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode or not (out / "_info.json").is_file():
        raise RuntimeError(f"traced build failed:\n{proc.stderr[-3000:]}")
    if archive.is_dir():
        size = sum(f.stat().st_size for f in archive.rglob("*") if f.is_file())
        prefix = str(archive) + os.sep
        is_archive = lambda path: path.startswith(prefix)  # noqa: E731
    else:
        size = archive.stat().st_size
        is_archive = lambda path: path == str(archive)  # noqa: E731
    figures = summarize(parse_trace(trace, is_archive), size)
    trace.unlink()
    return figures


def main(argv=None) -> int:
    from photo_archive import write_archive

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--formats", default="tar,tar.gz,tars-dir,folders-dir")
    args = parser.parse_args(argv)
    if not shutil.which("strace"):
        raise SystemExit("strace is not installed")
    (ROOT / ".bench").mkdir(exist_ok=True)
    print(f"{args.classes * args.per_class} real photos, 2 workers, 500 samples per shard, "
          "reads of the archive's files by every process")
    for fmt in args.formats.split(","):
        with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as tmp:
            archive = Path(tmp) / f"photos.{fmt}"
            write_archive(archive, fmt, args.classes, args.per_class)
            f = read_pattern(archive, Path(tmp) / "out", ["--min-images", str(args.per_class // 2),
                                                          "--val-per-class", "5", "--samples-per-shard", "500"])
        passes = f"  passes over the .gz {f['read']:.2f} (target <= 2)" if fmt == "tar.gz" else ""
        print(f"  {fmt:12s} read {f['read']:.3f}x  jumped {f['jumped']:.3f}x  backwards {f['backwards']}  "
              f"files opened {f['files_opened']}{passes}")
    print(f"targets: read <= {TARGET_READ}x, jumped <= {TARGET_JUMP}x, no backward reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
