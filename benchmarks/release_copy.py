"""Building from the official processed download: the copy path against the resize path, same files.

The bench photos are squish-resized once to 224² baseline JPEGs (what the download holds) and
laid out twice: as the download (``imagenet21k_train`` / ``imagenet21k_val`` class folders: the
build copies them byte for byte) and as a raw folder of class folders (the build decodes,
resizes and re-encodes every one). Measured, taking turns, best of ``--rounds``:

1. the convert stage in one process (the layout's folder converter + writing the part): copy vs resize
   img/s and their ratio (target ≥ 10×);
2. the I/O floor of that stage: reading the same files (open + read) and writing their bytes to
   one fsynced file, nothing else — the copy path's img/s against it shows whether it is limited
   by the disk (≈ 1) or by its own CPU;
3. whole builds, ``luigi --module pipeline BuildImageNet21KP --workers N``, both layouts.

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

from photo_archive import class_members, load_photos  # noqa: E402

from pipeline.archive import list_containers  # noqa: E402
from pipeline.archive_layout import LAYOUTS  # noqa: E402
from pipeline.convert import ConvertSettings  # noqa: E402
from pipeline.images import squish_resize  # noqa: E402
from hierarchy.atomic import atomic_write_bytes  # noqa: E402

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


def convert_stage(root: Path, layout: str, out: Path) -> float:
    """Seconds of one process converting every class folder of ``root`` into one written part."""
    settings = ConvertSettings(min_images=20, val_per_class=VAL)
    containers = list_containers(root, layout)
    start = time.perf_counter()
    part = LAYOUTS[layout].converter()(root, containers, settings, lambda wnid: True)
    part.write(out / f"part-{layout}")
    return time.perf_counter() - start


def io_floor(root: Path, out: Path) -> float:
    """Seconds to read every file under ``root`` and write their bytes to one fsynced file."""
    start = time.perf_counter()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    atomic_write_bytes(out / "floor.bin", (p.read_bytes() for p in files))
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
        stage = {"copy": [], "resize": [], "floor": []}
        walls = {"copy": [], "resize": []}
        scratch = tmp / "scratch"
        scratch.mkdir()
        for _ in range(args.rounds):  # taking turns; each from a clean page-cache writeback state
            for name, measure in (("copy", lambda: convert_stage(released, "released", scratch)),
                                  ("resize", lambda: convert_stage(raw, "folders-dir", scratch)),
                                  ("floor", lambda: io_floor(released, scratch))):
                os.sync()
                stage[name].append(measure())
        for _ in range(args.rounds):
            os.sync()
            walls["copy"].append(timed_build(released, tmp / "out-copy", args.workers))
            os.sync()
            walls["resize"].append(timed_build(raw, tmp / "out-resize", args.workers))
    best = {k: min(v) for k, v in stage.items()}
    print(f"{images:,} 224² JPEGs ({args.classes} classes), best of {args.rounds}; copy path rounds: "
          + ", ".join(f"{t:.2f} s" for t in stage["copy"]))
    print("convert stage, one process:")
    print(f"  copy (released layout)   {best['copy']:6.2f} s  {images / best['copy']:8.0f} img/s")
    print(f"  resize (folders-dir)     {best['resize']:6.2f} s  {images / best['resize']:8.0f} img/s")
    print(f"  I/O floor (read + write) {best['floor']:6.2f} s  {images / best['floor']:8.0f} img/s")
    print(f"  copy / resize = {best['resize'] / best['copy']:.1f}× (target ≥ 10×); copy / I/O floor = "
          f"{best['floor'] / best['copy']:.2f}× (1 = limited by the disk)")
    wall = {k: min(v) for k, v in walls.items()}
    print(f"whole builds, {args.workers} workers: copy {images / wall['copy']:.0f} img/s, resize "
          f"{images / wall['resize']:.0f} img/s: {wall['resize'] / wall['copy']:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
