"""The convert stage per worker against the image path alone, side by side in one process.

    python benchmarks/convert_stage.py [--classes 4] [--per-class 600] [--repeat 3]

Writes a fall11-style tar of real photos (``benchmarks/photo_archive.py``) and times, in turns:

* **squish_resize alone** — ``pipeline.images.squish_resize`` over the same photos, already in memory;
* **convert stage** — ``pipeline.convert.convert_tar_range`` over the whole tar (what one convert
  task does: read the byte range front to back with read-ahead, parse the class tars, keep/drop,
  convert, split, and write the part with its tables);

and prints images per second of wall time for each (best of ``--repeat``) and the ratio. Target
(issue 9): the convert stage >= 0.9x the image path alone, i.e. reading, parsing and writing cost
less than a tenth of the time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from photo_archive import class_members, load_photos, write_archive  # noqa: E402
from pipeline.archive import list_containers  # noqa: E402
from pipeline.convert import ConvertSettings, convert_tar_range  # noqa: E402
from pipeline.images import squish_resize  # noqa: E402

TARGET = 0.9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    images = [data for members in class_members(args.classes, args.per_class, load_photos()).values()
              for _, data in members]
    settings = ConvertSettings(min_images=args.per_class // 2, val_per_class=5)
    best = {"squish_resize alone": 0.0, "convert stage": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "photos.tar"
        write_archive(archive, "tar", args.classes, args.per_class)
        containers = list_containers(archive, "tar")
        for round_ in range(args.repeat + 1):  # the first round warms up
            t = time.perf_counter()
            for data in images:
                squish_resize(data)
            alone = len(images) / (time.perf_counter() - t)
            t = time.perf_counter()
            part = convert_tar_range(archive, containers, settings, lambda wnid: True)
            part.write(Path(tmp) / f"part-{round_}")
            stage = len(part.samples) / (time.perf_counter() - t)
            if round_:
                best["squish_resize alone"] = max(best["squish_resize alone"], alone)
                best["convert stage"] = max(best["convert stage"], stage)
    print(f"{len(images)} real photos in {args.classes} class tars, one process, best of {args.repeat}")
    for name, rate in best.items():
        print(f"  {name:22s} {rate:7.1f} img/s")
    ratio = best["convert stage"] / best["squish_resize alone"]
    print(f"  ratio                  {ratio:7.2f}x (target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
