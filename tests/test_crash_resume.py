"""kill -9 at exact points of a build (and at a random moment), rerun, compare with a clean build."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from buildutil import ROOT, luigi_cmd, output_digest, run_build, temp_files
from pipeline.crashpoints import ENV_VAR
from tools.demo_archive import make_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("crash") / "demo.tar", seed=5, num_classes=12).path


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "ds"
    proc = run_build(archive, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return output_digest(out)


@pytest.mark.parametrize("point", ["convert_part:2", "shard_written:2", "shard_temp:3", "tables:2"])
def test_kill_at_a_crash_point_then_rerun(point, archive, reference, tmp_path):
    out = tmp_path / "ds"
    crashed = run_build(archive, out, env=dict(os.environ, **{ENV_VAR: point}))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert not (out / "_info.json").exists()
    if point.startswith("shard_temp"):
        assert temp_files(out), "the killed writer should have left its temp file behind"
    rerun = run_build(archive, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert temp_files(out) == []
    assert output_digest(out) == reference


MANY_SHARDS = ("--samples-per-shard", "16")  # a shard phase long enough to be killed in


@pytest.fixture(scope="module")
def reference_many_shards(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference-many") / "ds"
    proc = run_build(archive, out, *MANY_SHARDS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return output_digest(out)


@pytest.mark.parametrize("moment", ["convert", "shards"])
def test_kill_9_of_a_two_worker_build_then_rerun(moment, archive, reference_many_shards, tmp_path):
    """A real kill -9 of the scheduler and its task processes once the first part (mid-convert)
    or the first shard (mid-shards) is on disk."""
    out = tmp_path / "ds"
    proc = subprocess.Popen(luigi_cmd(archive, out, "--local-scheduler", "--workers", "2", *MANY_SHARDS), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pattern = "_work/**/part-*.json" if moment == "convert" else "train/*.tar"
    deadline = time.monotonic() + 300
    while not list(out.glob(pattern)):
        assert proc.poll() is None and time.monotonic() < deadline, f"build ended before the {moment} stage"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the scheduler process and its forked task processes
    proc.wait()
    assert not (out / "_info.json").exists()
    rerun = run_build(archive, out, "--workers", "2", *MANY_SHARDS)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert temp_files(out) == []
    assert output_digest(out) == reference_many_shards


def test_ctrl_c_is_one_line_and_a_rerun_resumes(archive, reference_many_shards, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group: the command and its task processes) once
    the first part is on disk: one line, exit 130, and the rerun finishes byte-identical."""
    out = tmp_path / "ds"
    proc = subprocess.Popen(luigi_cmd(archive, out, "--local-scheduler", "--workers", "2", *MANY_SHARDS), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list(out.glob("_work/**/part-*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "build ended before the convert stage"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.splitlines() == ["error: interrupted; rerun the same command to resume (finished work is kept)"]
    assert stdout == "" and not (out / "_info.json").exists()
    rerun = run_build(archive, out, "--workers", "2", *MANY_SHARDS)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert temp_files(out) == []
    assert output_digest(out) == reference_many_shards


def test_kill_9_of_a_gz_build_mid_stream_then_rerun(archive, reference_many_shards, tmp_path):
    """The same archive gzipped, killed once its first part is written (a part per class): the
    rerun converts only the rest and gives the dataset of the .tar, byte for byte."""
    import gzip

    gz = tmp_path / "demo.tar.gz"
    gz.write_bytes(gzip.compress(archive.read_bytes(), compresslevel=1, mtime=0))
    out = tmp_path / "ds"
    small_parts = ("--gzip-part-mb", "1", "--gzip-processes", "2")
    proc = subprocess.Popen(luigi_cmd(gz, out, "--local-scheduler", *MANY_SHARDS, *small_parts), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("_work/**/part-*-000-*.json")) and not list(out.glob("_work/**/part-*-001-*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "build ended before a part was written"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "_info.json").exists()
    finished = set(out.glob("_work/**/part-*.json"))
    rerun = run_build(gz, out, *MANY_SHARDS, *small_parts)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert finished <= set(out.glob("_work/**/part-*.json"))  # kept, not converted again
    assert temp_files(out) == []
    naming_the_archive = {"stats.json", "_params.json", "README.md",  # they record its path and layout
                          "_sizes.json", "SHA256SUMS"}  # and so do their sizes and hashes
    same = lambda digest: {k: v for k, v in digest.items() if k not in naming_the_archive}  # noqa: E731
    assert same(output_digest(out)) == same(reference_many_shards)


def test_failed_build_exits_non_zero_with_a_clear_message(tmp_path):
    missing = tmp_path / "nope.tar"
    proc = run_build(missing, tmp_path / "ds")
    assert proc.returncode == 3
    assert proc.stderr == f"error: archive not found: {missing}\n"


def test_a_deleted_shard_is_rebuilt_byte_identical(archive, reference, tmp_path):
    out = tmp_path / "ds"
    assert run_build(archive, out).returncode == 0
    victim = sorted((out / "train").glob("*.tar"))[1]
    victim.unlink()
    rerun = run_build(archive, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert output_digest(out) == reference
