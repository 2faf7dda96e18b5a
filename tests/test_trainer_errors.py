"""Known failures of ``python -m trainer``: one ``error:`` line, exit 2 (bad input) or 130
(Ctrl-C, naming ``--resume``), and no run folder left behind by a refused command."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainer.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "test_resnet", "--input-size", "32", "--batch-size", "16", "--workers", "0",
        "--randaugment", "none", "--cutout", "0", "--no-progress"]


def run_trainer(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=timeout)


@pytest.mark.parametrize("extra, message", [
    (["--model", "no_such_net"], "error: unknown timm model 'no_such_net'"),
    (["--batch-size", "7", "--data-lanes", "2"], "error: --batch-size 7 must be a multiple of the 2 data lanes"),
    (["--steps-per-epoch", "1", "--batch-size", "4096"], "error: the train split holds"),
    (["--randaugment", "rand-x9"], "error: --randaugment 'rand-x9' is not a timm RandAugment config"),
    (["--stop-after-steps", "0"], "error: --stop-after-steps must be >= 1"),
    (["--lr", "-1"], "error: --lr must be > 0"),
    (["--init-checkpoint", "missing.pth"], "error: "),
])
def test_a_refused_command_says_one_line_and_leaves_no_folder(trainer_dataset, tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    args = ["--data", str(trainer_dataset), "--output", str(run), "--epochs", "1", *TINY]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not run.exists()


def test_not_a_dataset_and_a_typo_are_one_line_each(tmp_path):
    result = run_trainer("--data", str(tmp_path), "--output", str(tmp_path / "run"), "--device", "cpu")
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [
        f"error: {tmp_path / '_info.json'} not found: --data must be a dataset built by the pipeline"])
    assert not (tmp_path / "run").exists()
    result = run_trainer("--data", str(tmp_path), "--output", str(tmp_path / "run"), "--init-check", "w.pth")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unrecognized arguments: --init-check w.pth (see python -m trainer --help)"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_one_line(trainer_dataset, tmp_path):
    result = run_trainer("--data", str(trainer_dataset), "--output", str(tmp_path / "run"), "--device", "cuda")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --device cuda: no CUDA device is available here")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_ctrl_c_ends_with_130_and_names_resume(trainer_dataset, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C (loader workers included)."""
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "--data", str(trainer_dataset), "--output", str(run), "--epochs", "50",
         *TINY[:-3], "--workers", "1", "--no-progress"],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():  # training is under way (an epoch has ended)
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert err.strip().splitlines() == [
        "error: interrupted (Ctrl-C): the same command with --resume continues from the last checkpoint "
        "(checkpoint.pt, written every --checkpoint-minutes and at each epoch end)"]
