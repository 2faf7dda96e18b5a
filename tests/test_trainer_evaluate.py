"""``python -m trainer evaluate``: a run's (or a weights file's) validation equals the run's last
validation in metrics.jsonl, its outputs, and the one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from trainer.cli import main
from trainer.export import read_export

TINY = ["--model", "test_resnet", "--input-size", "32", "--batch-size", "16", "--epochs", "1",
        "--steps-per-epoch", "4", "--workers", "0", "--randaugment", "none", "--cutout", "0", "--no-progress"]
EVAL = ["--batch-size", "16", "--workers", "0", "--no-progress"]  # as the run validated


@pytest.fixture(scope="module")
def run(trainer_dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("evaluate") / "run"
    assert main(["--data", str(trainer_dataset), "--output", str(run), *TINY]) == 0
    return run


def last_validation(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["val"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_evaluating_a_run_repeats_its_last_validation(run, trainer_dataset, capsys):
    training_plot = (run / "accuracy_per_level.png").read_bytes()
    assert main(["evaluate", "--run", str(run), "--data", str(trainer_dataset), *EVAL]) == 0
    out = capsys.readouterr().out
    folder = run / f"eval-{trainer_dataset.name}"
    result = json.loads((folder / "eval.json").read_text())
    assert result["val"] == last_validation(run)  # every number, exactly
    assert result["run"] == str(run) and result["model"] == "test_resnet" and result["input_size"] == 32
    assert (folder / "accuracy_per_level.png").is_file()
    assert (run / "accuracy_per_level.png").read_bytes() == training_plot
    val = result["val"]
    assert f"semantic top-1 {val['semantic_top1']:.2f}%" in out and f"{val['samples']} validation samples" in out
    assert f"level 0: {val['semantic_top1_per_level'][0]:.2f}%" in out


def test_evaluating_a_weights_file_gives_the_same_numbers(run, trainer_dataset, tmp_path):
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in read_export(run)[1].items()}, weights)
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(weights), "--model", "test_resnet", "--input-size", "32",
                 "--data", str(trainer_dataset), "--output", str(out), *EVAL]) == 0
    assert json.loads((out / "eval.json").read_text())["val"] == last_validation(run)


def test_known_failures_are_one_error_line(run, trainer_dataset, tmp_path, capsys):
    data = ["--data", str(trainer_dataset)]
    assert main(["evaluate", "--run", str(tmp_path / "nowhere"), *data, *EVAL]) == 2
    assert "is not a trainer run directory" in one_error_line(capsys)
    assert main(["evaluate", "--run", str(run), "--data", str(tmp_path), *EVAL]) == 2
    assert "--data must be a dataset built by the pipeline" in one_error_line(capsys)
    weights = tmp_path / "resnet.pth"
    torch.save(read_export(run)[1], weights)
    assert main(["evaluate", "--weights", str(weights), "--model", "test_vit", *data,
                 "--output", str(tmp_path / "vit"), *EVAL]) == 2
    assert f"the weights of {weights} do not fit test_vit" in one_error_line(capsys)
    assert main(["evaluate", "--weights", str(weights), "--model", "test_resnet", *data, *EVAL]) == 2
    assert "--weights needs --model" in one_error_line(capsys)
    assert main(["evaluate", "--run", str(run), *data, "--output", str(run), *EVAL]) == 2
    assert "holds a training run" in one_error_line(capsys)
    assert not (run / "eval.json").exists()
