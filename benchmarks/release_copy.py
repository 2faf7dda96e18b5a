"""Building from the official processed download: the copy path against the resize path, same files.

The bench photos are squish-resized once to 224² baseline JPEGs (what the download holds) and
laid out twice: as the download (``imagenet21k_train`` / ``imagenet21k_val`` class folders: the
build copies them byte for byte) and as a raw folder of class folders (the build decodes,
resizes and re-encodes every one). Both are built with ``luigi --module pipeline
BuildImageNet21KP --workers N``, taking turns, best of ``--rounds``; printed: img/s of each and the
ratio, plus the per-image CPU cost of the two paths alone (``release_image`` on a ready JPEG vs
``convert_image``). Target: copy ≥ 10× the resize path's img/s.

    .venv/bin/python benchmarks/release_copy.py [--classes 20] [--per-class 500] [--workers 2] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from loader import cpu_rate  # noqa: E402
from photo_archive import class_members, load_photos  # noqa: E402

from pipeline.convert import ConvertSettings, convert_image  # noqa: E402
from pipeline.images import squish_resize  # noqa: E402
from pipeline.release import release_image  # noqa: E402

VAL = 10


def write_layouts(tmp: Path, classes: int, per_class: int) -> tuple[Path, Path, int]:
    """The same 224² JPEGs as the download's layout and as a raw folders-dir."""
    ready = {}
    released, raw = tmp / "imagenet21k_resized", tmp / "raw"
    members = class_members(classes, per_class, load_photos())
    for wnid, files in members.items():
        for i, (name, data) in enumerate(sorted(files)):
            jpeg = ready.setdefault(data, squish_resize(data, 224, 95))
            split = "imagenet21k_val" if i < VAL else "imagenet21k_train"
            for path in (released / split / wnid / name, raw / wnid / name):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jpeg)
    return released, raw, sum(len(f) for f in members.values())


def timed_build(archive: Path, out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP", "--local-scheduler",
           "--workers", str(workers), "--archive", str(archive), "--output-dir", str(out),
           "--min-images", "20", "--val-per-class", str(VAL)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        released, raw, images = write_layouts(tmp, args.classes, args.per_class)
        walls = {"copy (released layout)": [], "resize (folders-dir)": []}
        for _ in range(args.rounds):
            walls["copy (released layout)"].append(timed_build(released, tmp / "out-copy", args.workers))
            walls["resize (folders-dir)"].append(timed_build(raw, tmp / "out-resize", args.workers))
        sample = [p.read_bytes() for p in sorted((raw).rglob("*.JPEG"))[:200]]
    settings = ConvertSettings()
    copy_rate = cpu_rate(lambda: [release_image(j, settings) for j in sample], len(sample), 3)
    resize_rate = cpu_rate(lambda: [convert_image(j, 224, 95) for j in sample], len(sample), 3)
    print(f"{images:,} 224² JPEGs, {args.workers} workers, best of {args.rounds}")
    best = {name: min(w) for name, w in walls.items()}
    for name, wall in best.items():
        print(f"  {name:<24} {wall:6.2f} s  {images / wall:8.0f} img/s")
    ratio = best["resize (folders-dir)"] / best["copy (released layout)"]
    print(f"build: copy / resize = {ratio:.1f}× (target ≥ 10×)")
    print(f"per image, one process: copy path {copy_rate:,.0f} img/s, resize path {resize_rate:,.0f} img/s "
          f"per CPU second: {copy_rate / resize_rate:.0f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
