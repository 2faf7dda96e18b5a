"""Progress of a build. Every task reports to Luigi's web UI (throttled RPCs) and, when the
command runs the build locally, to a small file in the run's report dir; the command itself
draws one terminal bar from those files (tqdm, with an ETA), whichever process runs each task.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from hierarchy.atomic import atomic_write_text
from pipeline.archive_layout import RAW_BYTES_PER_IMAGE

#: Set by a build's run (:mod:`pipeline.build_run`) for the processes of a local build.
RUN_DIR_ENV = "IMAGENET21KP_RUN_DIR"
#: Images per raw byte assumed before a convert task of the run has finished; afterwards the
#: measured ratio is used.
IMAGES_PER_BYTE = 1 / RAW_BYTES_PER_IMAGE


def report_file(run_dir, task_id: str) -> Path:
    return Path(run_dir) / f"{task_id}.progress.json"


class TaskProgress:
    """Report ``done / total`` of one task at most every ``interval`` s: to Luigi's UI (no-op
    outside a worker) and to the run's report dir when there is one."""

    def __init__(self, task, total: int, what: str, interval: float = 2.0):
        self.task, self.total, self.what, self.interval = task, max(int(total), 0), what, interval
        self._last = 0.0
        run_dir = os.environ.get(RUN_DIR_ENV)
        self._file = report_file(run_dir, task.task_id) if run_dir else None

    def update(self, done: int, message: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval or done >= self.total:
            self._last = now
            fraction = done / self.total if self.total else 1.0
            self._send(fraction, message or f"{self.what}: {done}/{self.total}")

    def close(self, message: str | None = None, images: int | None = None) -> None:
        """The task's work is done; ``images``: how many archive entries it read."""
        self._send(1.0, message or f"{self.what}: done", images=images, closed=True)

    def _send(self, fraction: float, message: str, **extra) -> None:
        try:
            self.task.set_progress_percentage(round(100 * fraction, 1))
            self.task.set_status_message(message)
        except Exception:  # no scheduler behind the task (run() called directly)
            pass
        if self._file is not None:
            try:
                atomic_write_text(self._file, json.dumps(dict(fraction=fraction, **extra)), durable=False)
            except OSError:  # the command that reads these is gone
                pass


@dataclass
class Work:
    """A task whose progress the bar shows: its id, its size (raw bytes, or files of a folder)
    and, when it is known (finished before this run), the images it read."""

    task_id: str
    weight: int
    images: int | None = None


class BuildProgress:
    """The terminal bar of a local build: images converted (estimated from each convert task's
    fraction done and the images per byte measured so far), then the shard tasks; ``with``-block
    runs it in a thread. Drawn only on a terminal (tqdm's ``disable=None``) unless ``force``."""

    def __init__(self, run_dir, convert: list[Work], shards: list[Work], weight_is_images: bool,
                 interval: float = 1.0, force: bool = False):
        self.run_dir, self.convert, self.shards = Path(run_dir), convert, shards
        self.weight_is_images, self.interval = weight_is_images, interval
        self._disable = False if force else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="build-progress", daemon=True)
        self._bars: dict[str, tqdm] = {}

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for bar in self._bars.values():
            bar.close()

    def _reports(self, works: list[Work]) -> list[tuple[Work, dict]]:
        out = []
        for work in works:
            if work.images is not None:
                out.append((work, {"fraction": 1.0, "images": work.images}))
                continue
            try:
                report = json.loads(report_file(self.run_dir, work.task_id).read_text())
            except (OSError, ValueError):
                report = {"fraction": 0.0}
            if report.get("closed"):  # final: not read again
                work.images = report.get("images", work.weight)
            out.append((work, report))
        return out

    def images_estimate(self) -> tuple[float, float]:
        """(images done, images in all) over the convert tasks."""
        reports = self._reports(self.convert)
        if self.weight_is_images:
            per_unit = 1.0
        else:
            measured = [(r["images"], w.weight) for w, r in reports if r.get("images") is not None]
            bytes_measured = sum(b for _, b in measured)
            per_unit = sum(i for i, _ in measured) / bytes_measured if bytes_measured else IMAGES_PER_BYTE
        done = total = 0.0
        for work, report in reports:
            size = report["images"] if report.get("images") is not None else work.weight * per_unit
            total += size
            done += size * min(max(report.get("fraction", 0.0), 0.0), 1.0)
        return done, total

    def _draw(self) -> None:
        done, total = self.images_estimate()
        self._show("convert", "images", done, total)
        if done >= total and self.shards:
            shard_done = sum(r.get("fraction", 0.0) for _, r in self._reports(self.shards))
            self._show("shards", "tasks", shard_done, len(self.shards))

    def _show(self, name: str, unit: str, done: float, total: float) -> None:
        bar = self._bars.get(name)
        if bar is None:
            bar = self._bars[name] = tqdm(total=round(total), desc=name, unit=f" {unit}", disable=self._disable,
                                          dynamic_ncols=True, smoothing=0.1)
        bar.total = round(total)
        bar.update(round(done) - bar.n)

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self._draw()
            except Exception:  # a progress bar must never break the build
                pass
            if stopping:
                return
