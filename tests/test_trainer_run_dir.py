"""trainer.run_dir: the run directory's claim (refused without --resume or --overwrite, no trace
left by the check) and the clearing of a previous run."""
from __future__ import annotations

import pytest

from trainer.checkpoint import CHECKPOINT
from trainer.config import ConfigError
from trainer.report import METRICS_FILE
from trainer.run_dir import check_run_dir, prepare_run_dir


def test_a_run_dir_is_checked_without_a_trace_then_prepared(tmp_path):
    run = tmp_path / "run"
    assert check_run_dir(run, resume=False, overwrite=False) == []
    assert not run.exists()  # checking leaves nothing behind
    prepare_run_dir(run, [])
    assert run.is_dir()
    for name in (CHECKPOINT, METRICS_FILE, "curves.png"):
        (run / name).write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds a run .*checkpoint.pt.*--resume.*--overwrite"):
        check_run_dir(run, resume=False, overwrite=False)
    assert check_run_dir(run, resume=True, overwrite=False) == []
    replaced = check_run_dir(run, resume=False, overwrite=True)
    assert (run / CHECKPOINT).is_file()  # deleted only once the new run has passed its checks
    prepare_run_dir(run, replaced)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # only a run's own files go
