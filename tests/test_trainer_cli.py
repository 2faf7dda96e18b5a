"""End to end: ``python -m trainer`` on a small real dataset (uneven shards) - learning, the three
schemes and semantic KD, 2-process torchrun vs 1 process, exact resume after a stop and after
kill -9, the export and ``predict``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from hierarchy import SemanticTree
from trainer.cli import main
from trainer.data import read_split

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "test_resnet", "--batch-size", "16", "--lr", "2e-3", "--no-progress"]
NO_AUGMENT = ["--randaugment", "none", "--cutout", "0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as in the subprocesses (OMP_NUM_THREADS=1): runs that cross a
    process boundary (kill -9, then resume here) must do their float sums the same way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(trainer_dataset):
    """A dataset whose shards are deliberately uneven (37 samples, the last one fewer)."""
    return trainer_dataset


@pytest.fixture(scope="module")
def tree(dataset):
    return SemanticTree.load(dataset / "semantic_tree.json")


@pytest.fixture(scope="module")
def val_samples(dataset):
    return read_split(dataset, "validation").num_samples


@pytest.fixture(scope="module")
def trained_run(dataset, tmp_path_factory):
    """A semantic-softmax run that learns the dataset (used as teacher and by predict)."""
    run = tmp_path_factory.mktemp("learn") / "run"
    code = main(["--data", str(dataset), "--output", str(run), "--epochs", "2",
                 "--steps-per-epoch", "30", "--input-size", "64", "--workers", "1", *TINY,
                 *NO_AUGMENT])
    assert code == 0
    return run


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_semantic_training_learns_and_exports(trained_run, tree, val_samples):
    entries = history(trained_run)
    assert [e["epoch"] for e in entries] == [1, 2]
    val = entries[-1]["val"]
    chance = 100 * sum(1 / len(level) for level in tree.levels) / tree.num_levels
    assert val["semantic_top1"] > max(80, 2 * chance)
    assert val["semantic_top1_class_weighted"] > max(80, 2 * chance)
    assert len(val["semantic_top1_per_level"]) == tree.num_levels
    assert val["samples"] == val_samples
    assert entries[-1]["train"]["loss"] < entries[0]["train"]["loss"]
    for name in ("accuracy_per_level.png", "curves.png", "checkpoint.pt", "semantic_tree.json"):
        assert (trained_run / name).is_file()
    card = json.loads((trained_run / "model.json").read_text())
    model = timm.create_model(card["model"], num_classes=card["num_classes"])
    model.load_state_dict(load_file(trained_run / "model.safetensors"))


@pytest.mark.parametrize("scheme", ["single", "multi"])
def test_single_and_multi_label_schemes_run(dataset, val_samples, tmp_path, scheme):
    run = tmp_path / scheme
    assert main(["--data", str(dataset), "--output", str(run), "--scheme", scheme,
                 "--epochs", "1", "--steps-per-epoch", "4", "--input-size", "32",
                 "--workers", "0", *TINY]) == 0
    (entry,) = history(run)
    assert entry["global_step"] == 4 and entry["train"]["loss"] > 0
    assert entry["val"]["samples"] == val_samples and 0 <= entry["val"]["map_macro"] <= 100
    assert (run / "model.safetensors").is_file()


def test_semantic_kd_runs_and_plots_teacher_confidence(dataset, tree, trained_run, tmp_path):
    run = tmp_path / "kd"
    assert main(["--data", str(dataset), "--output", str(run), "--epochs", "1",
                 "--steps-per-epoch", "4", "--input-size", "64", "--workers", "0",
                 "--teacher", "test_resnet", "--teacher-checkpoint", str(trained_run),
                 *TINY, *NO_AUGMENT]) == 0
    (entry,) = history(run)
    confidence = entry["train"]["teacher_confidence"]
    assert len(confidence) == tree.num_levels and all(0 < c <= 1 for c in confidence)
    assert confidence[0] == 1.0  # every class has a root-level label
    assert (run / "teacher_confidence.png").is_file()


def test_two_rank_torchrun_matches_one_process(dataset, val_samples, tmp_path):
    common = ["--data", str(dataset), "--epochs", "1", "--steps-per-epoch", "6",
              "--input-size", "32", "--data-lanes", "2", "--model", "test_vit", "--lr", "1e-3",
              "--no-progress", *NO_AUGMENT]
    single, double = tmp_path / "one", tmp_path / "two"
    assert main([*common, "--output", str(single), "--batch-size", "8", "--workers", "0"]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "trainer", *common, "--output", str(double), "--batch-size", "4",
         "--workers", "1"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (one,), (two,) = history(single), history(double)
    assert two["global_step"] == one["global_step"] == 6
    assert two["train"]["loss"] == pytest.approx(one["train"]["loss"], rel=1e-4)
    assert two["val"]["samples"] == one["val"]["samples"] == val_samples
    for key in ("semantic_top1", "top1", "top5"):  # at most one flipped near-tie prediction
        assert two["val"][key] == pytest.approx(one["val"][key], abs=100 / val_samples + 1e-6)
    assert_close_weights(double, single)


def assert_close_weights(run: Path, reference: Path) -> None:
    """Same weights up to float rounding (Adam moves a weight by ~lr whatever the size of its
    gradient, so rounding noise in a tiny gradient may move one weight by up to ~lr)."""
    a = load_file(reference / "model.safetensors")
    b = load_file(run / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)
    difference = sum((b[n] - a[n]).float().norm() ** 2 for n in a) ** 0.5
    assert difference / sum(a[n].float().norm() ** 2 for n in a) ** 0.5 < 1e-4


def test_gradient_accumulation_matches_the_large_batch(dataset, tmp_path):
    common = ["--data", str(dataset), "--epochs", "1", "--steps-per-epoch", "4",
              "--input-size", "32", "--data-lanes", "2", "--model", "test_vit", "--lr", "1e-3",
              "--workers", "0", "--no-progress", *NO_AUGMENT]
    large, accumulated = tmp_path / "large", tmp_path / "accumulated"
    assert main([*common, "--output", str(large), "--batch-size", "8"]) == 0
    assert main([*common, "--output", str(accumulated), "--batch-size", "4",
                 "--accum-steps", "2"]) == 0
    (one,), (two,) = history(large), history(accumulated)
    assert one["global_step"] == two["global_step"] == 4
    assert two["train"]["loss"] == pytest.approx(one["train"]["loss"], rel=1e-4)
    assert_close_weights(accumulated, large)


RESUME = ["--epochs", "2", "--steps-per-epoch", "5", "--input-size", "32", "--workers", "2",
          "--seed", "7", "--model", "test_vit", "--batch-size", "8", "--lr", "1e-3",
          "--no-progress"]  # augmentation on: RandAugment + Cutout must replay exactly


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("resume") / "full"
    assert main(["--data", str(dataset), "--output", str(run), *RESUME]) == 0
    return run


def assert_same_run(run: Path, reference: Path) -> None:
    assert (run / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert (run / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()


def test_resume_after_stop_mid_epoch_is_exact(dataset, uninterrupted, tmp_path):
    run = tmp_path / "stopped"
    args = ["--data", str(dataset), "--output", str(run), *RESUME]
    assert main([*args, "--stop-after-steps", "7"]) == 0  # epoch 2, step 2
    assert not (run / "model.safetensors").exists() and len(history(run)) == 1
    assert main([*args, "--resume"]) == 0
    assert_same_run(run, uninterrupted)


def test_resume_after_kill_9_is_exact(dataset, uninterrupted, tmp_path):
    run = tmp_path / "killed"
    args = ["--data", str(dataset), "--output", str(run), *RESUME]
    process = subprocess.Popen([sys.executable, "-m", "trainer", *args, "--checkpoint-every", "2"],
                               cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoint.pt").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert not (run / "model.safetensors").exists()  # it really was interrupted
    assert main([*args, "--resume"]) == 0
    assert_same_run(run, uninterrupted)


def test_resume_refuses_changed_settings(dataset, uninterrupted, tmp_path, capsys):
    args = ["--data", str(dataset), "--output", str(uninterrupted), *RESUME]
    assert main([*args, "--lr", "5e-4", "--resume"]) == 2
    assert "settings differ from the checkpoint: peak_lr (0.001 -> 0.0005)" in capsys.readouterr().err
    assert main([*args, "--cutout", "0.25", "--randaugment", "none", "--resume"]) == 2
    assert ("settings differ from the checkpoint: randaugment ('rand-m9-mstd101' -> ''), cutout (0.5 -> 0.25)"
            in capsys.readouterr().err)


def test_resume_takes_the_checkpoints_data_lanes_with_other_workers(dataset, uninterrupted, tmp_path):
    """The data order depends on the lanes the checkpoint records, not on the loader workers: a
    run stopped with 2 workers resumes with 1 (default --data-lanes) and ends the same."""
    run = tmp_path / "fewer-workers"
    args = ["--data", str(dataset), "--output", str(run), *RESUME]
    assert main([*args, "--stop-after-steps", "7"]) == 0
    assert main([*args, "--workers", "1", "--resume"]) == 0
    assert_same_run(run, uninterrupted)


def deepest_validation_image(dataset: Path, tree, out: Path) -> tuple[Path, int]:
    """Extract the validation JPEG whose class sits deepest in the tree."""
    split = read_split(dataset, "validation")
    samples = []
    for shard in split.files:
        with tarfile.open(shard) as archive:
            members = {m.name: m for m in archive.getmembers()}
            for name, member in members.items():
                if name.endswith(".cls"):
                    label = int(archive.extractfile(member).read())
                    jpeg = archive.extractfile(members[name[:-4] + ".jpg"]).read()
                    samples.append((len(tree.chain(label)), label, jpeg))
    depth, label, jpeg = max(samples, key=lambda s: s[:2])
    out.write_bytes(jpeg)
    return out, label


def test_predict_prints_semantic_chains(trained_run, dataset, tree, tmp_path, capsys):
    image, label = deepest_validation_image(dataset, tree, tmp_path / "deep.jpg")
    args = ["predict", "--checkpoint", str(trained_run), str(image), "--min-prob", "0"]
    assert main([*args, "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)["chain"]
    picks = [c["class_index"] for c in chain]
    assert picks[0] == tree.chain(label)[-1]  # the right root
    for parent, child in zip(picks, picks[1:]):  # a path down the tree ...
        assert parent in tree.ancestors(child)
    assert len(picks) == tree.num_levels or not any(  # ... followed as deep as it goes
        picks[-1] in tree.ancestors(c) for c in range(tree.num_classes))
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"{image}: " + " > ".join(
        f"{c['name']} ({c['probability']:.2f})" for c in chain)


def test_cli_help_and_clear_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trainer", "--help"], cwd=ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--data", "--scheme", "--teacher-checkpoint", "--resume", "--input-size",
                 "--stop-after-steps", "--data-lanes", "predict"):
        assert flag in result.stdout
    result = subprocess.run([sys.executable, "-m", "trainer", "--data", str(tmp_path),
                             "--output", str(tmp_path / "run"), "--device", "cpu"],
                            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / '_info.json'} not found: --data must be a dataset built by the "
        "pipeline"]


def test_an_existing_run_needs_resume_or_overwrite(trained_run, dataset, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(p.name for p in run.iterdir())
    args = ["--data", str(dataset), "--output", str(run), "--epochs", "1", "--steps-per-epoch", "1",
            "--input-size", "64", "--workers", "0", *TINY, *NO_AUGMENT]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {run} already holds a run (") and "--resume continues it, --overwrite" in error
    assert sorted(p.name for p in run.iterdir()) == before and len(history(run)) == 2  # untouched
    assert main([*args, "--resume", "--overwrite"]) == 2
    assert "give one" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert [e["epoch"] for e in history(run)] == [1]  # a new run, not the old one continued


def test_predict_reports_each_bad_input_and_goes_on(trained_run, dataset, tree, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    image, _ = deepest_validation_image(dataset, tree, folder / "a.jpg")
    (folder / "more" / "b.JPEG").write_bytes(image.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image: skipped when a folder is expanded")
    (tmp_path / "empty").mkdir()
    code = main(["predict", "--checkpoint", str(trained_run), str(tmp_path / "README.md"), str(folder),
                 str(tmp_path / "empty"), "--min-prob", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(folder / "a.jpg"), str(folder / "more" / "b.JPEG")]
    errors = err.splitlines()
    assert errors[0] == f"error: {tmp_path / 'README.md'}: no such file or folder"
    assert errors[1] == f"error: {tmp_path / 'empty'}: a folder holding no image files"
    assert errors[2].startswith(f"error: {folder / 'broken.jpg'}: not a readable image")
    assert errors[3] == "error: 3 of 5 input(s) could not be read (listed above)"


def test_the_curves_have_whole_epoch_ticks(trained_run):
    from trainer.plots import curves_figure

    figure = curves_figure(history(trained_run))
    for axis in figure.axes:
        ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_fused_optimizer_resumes_exactly(dataset, tmp_path):
    fused = [*RESUME, "--fused-optimizer", "on"]
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert main(["--data", str(dataset), "--output", str(full), *fused]) == 0
    args = ["--data", str(dataset), "--output", str(stopped), *fused]
    assert main([*args, "--stop-after-steps", "7"]) == 0
    assert main([*args, "--resume"]) == 0
    assert_same_run(stopped, full)


def test_compiled_training_exports_plain_timm_weights(dataset, tree, tmp_path, capsys):
    """--compile (torch.compile, inductor, here on the CPU) trains and exports the same plain
    state dict as eager training: no ``_orig_mod.`` prefixes."""
    run = tmp_path / "compiled"
    assert main(["--data", str(dataset), "--output", str(run), "--epochs", "1", "--steps-per-epoch", "3",
                 "--input-size", "32", "--workers", "0", "--compile", "--fused-optimizer", "on", *TINY,
                 *NO_AUGMENT]) == 0
    assert "fused optimizer on, compile on" in capsys.readouterr().out
    model = timm.create_model("test_resnet", num_classes=tree.num_classes)
    model.load_state_dict(load_file(run / "model.safetensors"))  # strict: every key matches
    assert [e["epoch"] for e in history(run)] == [1]


def test_a_running_checkpoint_exports_the_same_class_order_weights(trained_run, tmp_path):
    """checkpoint.pt keeps a semantic head in level order (as trained); read_export turns it back."""
    import shutil

    from trainer.export import read_export

    run = tmp_path / "running"
    shutil.copytree(trained_run, run)
    (run / "model.safetensors").unlink()  # as if the run were still going after its last epoch's checkpoint
    _, from_checkpoint, _ = read_export(run)
    exported = load_file(trained_run / "model.safetensors")
    assert from_checkpoint.keys() == exported.keys()
    assert all(torch.equal(from_checkpoint[k].cpu(), exported[k]) for k in exported)
