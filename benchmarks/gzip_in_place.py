"""winter21 ``.tar.gz`` read in place against the same archive as ``.tar``, side by side in one run.

    python benchmarks/gzip_in_place.py [--classes 20] [--per-class 1000] [--workers 2]

Writes the same fall11-style tar of real photos twice (``benchmarks/photo_archive.py``), plain and
gzipped (level 6, ``gzip``'s default), builds each with ``luigi --module pipeline
BuildImageNet21KP --workers N`` and prints: wall time of both builds and their ratio, the peak
bytes under the work dir during each build (sampled every 50 ms) against the archive's size, and
whether the shards of the two builds are byte-identical. Targets (issue 9): ``.tar.gz`` wall
<= 1.15x the ``.tar`` build, peak work dir <= 0.35x the archive, identical shards.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from photo_archive import write_archive  # noqa: E402

TARGET_WALL, TARGET_WORK = 1.15, 0.35


def tree_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:  # renamed or removed while we looked
                pass
    return total


def timed_build(archive: Path, out: Path, workers: int, min_images: int) -> tuple[float, int]:
    """Wall seconds of a build and the peak bytes under its work dir."""
    cmd = [sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP", "--local-scheduler",
           "--workers", str(workers), "--archive", str(archive), "--output-dir", str(out),
           "--min-images", str(min_images), "--val-per-class", "5", "--samples-per-shard", "500"]
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], tree_bytes(out / "_work"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    t = time.perf_counter()
    watcher.start()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    done.set()
    watcher.join()
    if proc.returncode or not (out / "_info.json").is_file():
        raise SystemExit(f"build of {archive} failed:\n{proc.stderr[-3000:]}")
    return elapsed, peak[0]


def shard_digest(out: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(out.glob("*/*.tar")):
        h.update(path.relative_to(out).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="builds of each, taking turns; the best counts")
    args = parser.parse_args(argv)
    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as tmp:
        tmp = Path(tmp)
        archives = {fmt: tmp / f"photos.{fmt}" for fmt in ("tar", "tar.gz")}
        for fmt, archive in archives.items():
            n = write_archive(archive, fmt, args.classes, args.per_class)
        results = {}
        for round_ in range(args.rounds):
            for fmt, archive in archives.items():
                out = tmp / f"out-{fmt}-{round_}"
                wall, peak = timed_build(archive, out, args.workers, args.per_class // 2)
                best = results.get(fmt, (0, float("inf"), 0, ""))
                results[fmt] = (archive.stat().st_size, min(wall, best[1]), max(peak, best[2]), shard_digest(out))
                shutil.rmtree(out)
    print(f"{n} real photos, {args.workers} workers, builds from scratch, best of {args.rounds} taking turns")
    for fmt, (size, wall, peak, _) in results.items():
        print(f"  .{fmt:6s} {size / 1e9:5.2f} GB  wall {wall:6.1f} s  {n / wall:6.0f} img/s  "
              f"peak work dir {peak / 1e9:5.2f} GB = {peak / size:.2f}x the archive")
    ratio = results["tar.gz"][1] / results["tar"][1]
    work = results["tar.gz"][2] / results["tar.gz"][0]
    same = results["tar"][3] == results["tar.gz"][3]
    print(f"  .tar.gz / .tar wall {ratio:.2f}x (target <= {TARGET_WALL}: {'met' if ratio <= TARGET_WALL else 'NOT met'}); "
          f"peak work dir {work:.2f}x (target <= {TARGET_WORK}: {'met' if work <= TARGET_WORK else 'NOT met'}); "
          f"shards {'byte-identical' if same else 'DIFFER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
