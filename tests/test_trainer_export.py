"""trainer.export: a finished run directory is a timm model folder (``model.safetensors``,
``config.json``, ``labels.txt``) that timm's own routes load with the trained model's outputs and
preprocessing; a run directory, a weights file or timm's pretrained weights start a run
(``--init-checkpoint``, ``--pretrained``) with one ``init:`` line or one ``error:`` line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from hierarchy import SemanticTree
from tests.trainer_fixtures import fixture_tree
from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.export import export_model

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["--model", "test_resnet", "--input-size", "32", "--epochs", "1", "--steps-per-epoch", "2",
            "--batch-size", "8", "--workers", "0", "--randaugment", "none", "--cutout", "0", "--no-progress"]


@pytest.fixture(scope="module")
def run(trainer_dataset, tmp_path_factory) -> Path:
    """A finished semantic run (its head trained in level order)."""
    run = tmp_path_factory.mktemp("export") / "run"
    assert main(["--data", str(trainer_dataset), "--output", str(run), *TINY_RUN]) == 0
    return run


@pytest.fixture(scope="module")
def tree(run) -> SemanticTree:
    return SemanticTree.load(run / "semantic_tree.json")


def class_order_outputs(run: Path, images: torch.Tensor) -> torch.Tensor:
    """The trained model's outputs in class order: the model of ``checkpoint.pt`` as it trained
    (head rows in level order, row ``r`` = class ``order[r]``), its columns put back by hand."""
    state = load_checkpoint(run)
    order = torch.tensor(state["head_rows"]["order"])
    model = timm.create_model("test_resnet", num_classes=len(order))
    model.load_state_dict(state["model"])
    with torch.no_grad():
        level_outputs = model.eval()(images)
    outputs = torch.empty_like(level_outputs)
    outputs[:, order] = level_outputs
    return outputs


def test_the_run_directory_is_a_timm_model_folder(run, tree):
    names = {p.name for p in run.iterdir()}
    assert {"model.safetensors", "config.json", "labels.txt", "model.json", "semantic_tree.json"} <= names
    assert "model.pth" not in names and not [n for n in names if n.startswith(".")]  # no temp files left
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = class_order_outputs(run, images)
    num_classes = tree.num_classes
    by_folder = timm.create_model(f"local-dir:{run}", pretrained=True)
    by_overlay = timm.create_model("test_resnet", pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=dict(
        file=str(run / "model.safetensors"), num_classes=num_classes))
    for model in (by_folder, by_overlay):
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(images), expected)
    data = timm.data.resolve_data_config({}, model=by_folder)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()} == {
        "input_size": (3, 32, 32), "interpolation": "bilinear", "mean": (0, 0, 0), "std": (1, 1, 1),
        "crop_pct": 1.0, "crop_mode": "squash"}
    config = json.loads((run / "config.json").read_text())
    assert (config["architecture"], config["num_classes"]) == ("test_resnet", num_classes)
    assert config["label_names"] == list(tree.class_list) == list(by_folder.pretrained_cfg["label_names"])
    assert config["label_descriptions"] == {w: tree.name(i) for i, w in enumerate(tree.class_list)}
    assert "tag" not in config["pretrained_cfg"] and "license" not in config["pretrained_cfg"]
    assert (run / "labels.txt").read_text().splitlines() == [
        f"{i}\t{wnid}\t{tree.name(i)}" for i, wnid in enumerate(tree.class_list)]


def test_the_same_tensors_export_the_same_bytes(tmp_path):
    tree = fixture_tree()
    state = timm.create_model("test_resnet", num_classes=tree.num_classes).state_dict()
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        assert export_model(folder, "test_resnet", state, tree, 64) == folder / "model.safetensors"
    assert sorted(p.name for p in first.iterdir()) == ["config.json", "labels.txt", "model.safetensors"]
    for name in ("model.safetensors", "config.json", "labels.txt"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_a_run_directory_and_a_weights_file_start_runs(run, trainer_dataset, tmp_path, capsys):
    args = ["--data", str(trainer_dataset), *TINY_RUN, "--steps-per-epoch", "1"]
    assert main([*args, "--output", str(tmp_path / "from-run"), "--init-checkpoint", str(run)]) == 0
    assert f"init: loaded 90 of 92 tensors from {run} (skipped: fc.weight, fc.bias)" in capsys.readouterr().out
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), weights)
    assert main([*args, "--output", str(tmp_path / "refused"), "--init-checkpoint", str(weights)]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"error: {weights} does not fit test_resnet: 75 of its 90 tensors besides the classifier are "
        "missing from the source or shaped otherwise (conv1.0.weight: missing, conv1.1.weight: missing, "
        "conv1.1.bias: missing, conv1.1.running_mean: missing, conv1.1.running_var: missing, and 70 more); "
        "--init-partial loads the 9 that fit and leaves the rest as initialised"]
    assert main([*args, "--output", str(tmp_path / "partial"), "--init-checkpoint", str(weights),
                 "--init-partial"]) == 0
    assert (f"init: loaded 9 of 92 tensors from {weights} (skipped: fc.weight, fc.bias; 75 left as "
            "initialised; 6 BatchNorm counters not in the source; 64 source tensors unused)") in capsys.readouterr().out
    assert main([*args, "--output", str(tmp_path / "missing"), "--init-checkpoint", str(tmp_path / "no.pth")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: weights {tmp_path / 'no.pth'} not found (a weights file or a trainer run directory)"]


def test_pretrained_weights_neither_cached_nor_reachable(trainer_dataset, tmp_path):
    """``--pretrained`` offline with an empty Hugging Face cache: one error line, exit 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}
    result = subprocess.run([sys.executable, "-m", "trainer", "--data", str(trainer_dataset), "--output",
                             str(tmp_path / "run"), *TINY_RUN, "--model", "resnet18", "--pretrained"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: timm's weights for resnet18 (timm/resnet18.a1_in1k) are neither in the "
                           "local cache nor reachable (LocalEntryNotFoundError: ")
    assert line.endswith("fetch them where the hub is reachable (HF_HOME is the cache) or pass "
                         "--init-checkpoint FILE")
    assert not list((tmp_path / "hf").rglob("*.safetensors"))  # nothing downloaded
