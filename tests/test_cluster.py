"""Cluster mode: a real luigid on 127.0.0.1 and two worker processes sharing one build."""
from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest

from buildutil import ROOT, Luigid, luigi_cmd, output_digest, run_build, temp_files, write_config
from tools.demo_archive import make_archive


@pytest.fixture(scope="module", params=["tar", "tar.gz"])
def archive(request, tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("cluster") / f"demo.{request.param}", format=request.param,
                        seed=3).path


def test_two_workers_through_luigid_match_a_local_build(archive, tmp_path):
    config = write_config(tmp_path / "luigi.cfg", scheduler={"stable_done_cooldown_secs": 0, "retry_delay": 5},
                          resources={"archive_io": 2})
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(config))
    luigid = Luigid(tmp_path, config)
    try:
        out = tmp_path / "cluster-out"
        cmd = luigi_cmd(archive, out, "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid.port),
                        "--worker-keep-alive", "--workers", "1", "--log-level", "INFO",  # Luigi's summary too
                        "--samples-per-shard", "24", "--shard-tasks", "8")  # a longer shard phase to share
        workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for _ in range(2)]
        logs = [w.communicate(timeout=600)[0] for w in workers]
    finally:
        luigid.stop()
    # each worker's exit code counts the other's tasks as "not run": judge by the outputs
    assert (out / "_info.json").is_file(), logs
    writes = Counter(line.split("\t")[0] for line in
                     next((out / "_work").rglob("writes.log")).read_text().splitlines())
    assert writes and set(writes.values()) == {1}, f"shards written more than once: {writes}"
    # both processes took part (which tasks each got is up to the scheduler)
    assert all("ran successfully" in log for log in logs), "\n".join(log[-1500:] for log in logs)
    assert temp_files(out) == []

    local = tmp_path / "local-out"
    proc = run_build(archive, local, "--samples-per-shard", "24", "--shard-tasks", "8", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert output_digest(out) == output_digest(local)
