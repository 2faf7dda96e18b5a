"""pipeline.output_lock: two builds into one output dir on one host — the later one stops at once
naming the other; a lock never outlives its holder; real processes, every layout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from buildutil import ROOT, luigi_cmd, output_digest, run_build, temp_files

from pipeline.output_lock import LOCK_FILE
from tools.demo_archive import make_archive

LAYOUTS = ("tar", "tar.gz", "tars-dir", "folders-dir")


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    return {layout: make_archive(root / f"demo-{layout}.tar", format=layout, seed=7, num_classes=6).path
            for layout in LAYOUTS}


def start_build(archive, out) -> subprocess.Popen:
    return subprocess.Popen(luigi_cmd(archive, out, "--local-scheduler"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_lock(out, proc, timeout=120) -> dict:
    """The lock file's holder record, once the build running as ``proc`` has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads((out / LOCK_FILE).read_text())
        except (OSError, ValueError):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
    raise AssertionError("the build never took the lock")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_second_build_stops_at_once_naming_the_first(layout, archives, tmp_path):
    out = tmp_path / "out"
    first = start_build(archives[layout], out)
    holder = wait_for_lock(out, first)
    first.send_signal(signal.SIGSTOP)  # the first build holds the lock, mid-way
    try:
        started = time.monotonic()
        second = run_build(archives[layout], out)
        assert time.monotonic() - started < 60
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 9, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: another build is writing"), second.stderr
    assert f"pid {first.pid}" in lines[0] and f"host {holder['host']}" in lines[0]
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert not (out / LOCK_FILE).exists() and temp_files(out) == []
    assert "is complete, nothing to do" in run_build(archives[layout], out).stdout


@pytest.mark.parametrize("layout", ("tar.gz", "folders-dir"))
def test_two_builds_started_together_give_one_build(layout, archives, tmp_path):
    reference = tmp_path / "reference"
    assert run_build(archives[layout], reference).returncode == 0
    out = tmp_path / "out"
    builds = [start_build(archives[layout], out) for _ in range(2)]
    results = [(b.wait(timeout=600), b.communicate()[1]) for b in builds]
    assert sorted(code for code, _ in results) in ([0, 0], [0, 9]), results
    assert output_digest(out) == output_digest(reference)


@pytest.mark.parametrize("layout", ("tar", "tar.gz"))
def test_kill_9_of_the_holder_leaves_no_lock_behind(layout, archives, tmp_path):
    out = tmp_path / "out"
    first = start_build(archives[layout], out)
    wait_for_lock(out, first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert (out / LOCK_FILE).exists()  # the file stays; the kernel dropped the lock with its holder
    again = run_build(archives[layout], out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (out / LOCK_FILE).exists()
