"""Fixed costs of a build: the demo archive end to end, time to the first resized image, idle tasks.

    python benchmarks/fixed_costs.py [--workers 2]

Writes the demo archive (``python -m tools.demo_archive make-archive``: 878 entries, what ``make demo``
builds) and runs ``make demo``'s build command (``luigi --module pipeline BuildImageNet21KP
--local-scheduler --workers N --min-images 31 --val-per-class 5 --samples-per-shard 200``) in a
fresh interpreter, through a wrapper that records every task's start and end and the first call
of the image path (in whichever forked process makes it). Prints the wall time from before the
interpreter starts, the time to the first resized image, the timeline, and every task that had
nothing to do. Targets (issue 9): the demo builds in < 5 s; the first image is resized < 3 s
after the command starts; no task without work.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_FLAGS = ["--min-images", "31", "--val-per-class", "5", "--samples-per-shard", "200"]
WRAPPER = """
import json, os, sys, time
T0, LOG = float(os.environ["FIXED_COSTS_T0"]), os.environ["FIXED_COSTS_LOG"]
def record(event, what=""):
    with open(LOG, "a") as f:
        f.write(json.dumps([time.time() - T0, event, what]) + "\\n")
import luigi, pipeline, pipeline.convert as convert
real, first = convert.convert_image, []
def convert_image(*args):
    if not first:
        first.append(1)
        record("first image")
    return real(*args)
convert.convert_image = convert_image
for event in (luigi.Event.START, luigi.Event.SUCCESS):
    pipeline.DatasetTask.event_handler(event)(lambda task, event=event: record(
        event.split(".")[-1], task.task_family + str(getattr(task, "chunk", getattr(task, "group", "")))))
from luigi.cmdline import luigi_run
luigi_run(sys.argv[1:])
"""


def timed_build(archive: Path, out: Path, workers: int, log: Path) -> tuple[float, list]:
    cmd = [sys.executable, "-c", WRAPPER, "--module", "pipeline", "BuildImageNet21KP", "--local-scheduler",
           "--workers", str(workers), "--archive", str(archive), "--output-dir", str(out), *DEMO_FLAGS]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, FIXED_COSTS_T0=repr(t0), FIXED_COSTS_LOG=str(log)))
    wall = time.time() - t0
    if proc.returncode or not (out / "_info.json").is_file():
        raise SystemExit(proc.stderr[-3000:])
    return wall, sorted(tuple(json.loads(line)) for line in log.read_text().splitlines())


def idle_tasks(out: Path) -> list[str]:
    """Convert tasks that converted nothing and shard tasks that wrote no shard."""
    idle = []
    for path in out.glob("_work/**/convert-*.json"):
        if sum(s["samples"] + s["rejects"] + s["classes"] for s in json.loads(path.read_text())["summaries"]) == 0:
            idle.append(path.name)
    for path in out.glob("_work/**/shards-*/group-*.json"):
        if not json.loads(path.read_text())["shards"]:
            idle.append(path.name)
    return idle


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from tools.demo_archive import make_archive

    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as tmp:
        tmp = Path(tmp)
        archive = make_archive(tmp / "demo.tar", seed=0).path
        wall, events = timed_build(archive, tmp / "out", args.workers, tmp / "events.log")
        idle = idle_tasks(tmp / "out")
    first = next(t for t, event, _ in events if event == "first image")
    tasks = sum(1 for _, event, _ in events if event == "start")
    print(f"demo archive (878 entries), {args.workers} workers, make demo's build command in a fresh interpreter")
    print(f"  built in {wall:.2f} s wall (target < 5 s); first image resized {first:.2f} s after the command "
          f"started (target < 3 s); {tasks} tasks, {len(idle)} with nothing to do{': ' + ', '.join(idle) if idle else ''}")
    for t, event, what in events:
        if event != "first image" or t == first:
            print(f"    {t:6.2f} s  {event:12s} {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
