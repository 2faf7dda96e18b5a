"""``trainer.steplog``: the record maths, a real run's ``steps.jsonl`` and TensorBoard event files,
records after a resume's step dropped, 2 ranks against 1 process, and a missing tensorboard."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.cli import main
from trainer.steplog import STEPS_FILE, TENSORBOARD_DIR, period_summary, records_up_to, scalar_tags

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "test_resnet", "--input-size", "32", "--batch-size", "16", "--epochs", "2",
        "--steps-per-epoch", "5", "--workers", "0", "--randaugment", "none", "--cutout", "0",
        "--no-progress", "--log-every", "2"]
RECORD_STEPS = [2, 4, 5, 6, 8, 10]  # every 2 steps and each epoch's last (5 steps per epoch)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: a resumed run must do its float sums as the uninterrupted one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def steps(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / STEPS_FILE).read_text().splitlines()]


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def scalars(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    return events


def series(events: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    """The steps and values (float32) of one scalar tag."""
    points = events.Scalars(tag)
    return [p.step for p in points], [p.value for p in points]


def subprocess_env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture(scope="module")
def watched_run(trainer_dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("steplog") / "run"
    assert main(["--data", str(trainer_dataset), "--output", str(run), *TINY]) == 0
    return run


# ------------------------------------------------------------------------------ record maths
def test_period_summary_means_over_micro_batches_and_rates_over_all_ranks():
    # 2 ranks x 3 micro-batches, 2 levels: sums of loss, count, level losses, confidences,
    # then 96 images, 1.5 s waited and 8 s of wall time (4 s per rank)
    totals = [12.0, 6.0, 3.0, 6.0, 6.0, 3.0, 96.0, 1.5, 8.0]
    assert period_summary(totals, num_levels=2, world_size=2) == {
        "loss": 2.0, "level_loss": [0.5, 1.0], "teacher_confidence": [1.0, 0.5],
        "img_per_s": 24.0, "img_per_s_per_device": 12.0, "data_wait": 0.1875}


def test_records_up_to_drops_later_and_torn_lines():
    text = "".join(json.dumps({"global_step": s, "loss": 1.0}) + "\n" for s in (50, 100, 150))
    assert records_up_to(text, 100) == "".join(text.splitlines(keepends=True)[:2])
    assert records_up_to(text + '{"global_step": 20', 150) == text  # killed mid-line
    assert records_up_to(text, 0) == ""


def test_scalar_tags_flatten_levels_and_skip_missing_numbers():
    values = {"loss": 2.5, "level_loss": [1.0, None, 0.5], "lr": 1e-3, "other": 7}
    assert scalar_tags("train", values, ["loss", "level_loss", "teacher_confidence", "lr"]) == [
        ("train/loss", 2.5), ("train/level_loss/0", 1.0), ("train/level_loss/2", 0.5), ("train/lr", 1e-3)]


# ------------------------------------------------------------------------------ a real run
def test_a_run_records_every_log_every_steps_and_each_epoch_end(watched_run):
    records = steps(watched_run)
    assert [r["global_step"] for r in records] == RECORD_STEPS
    assert [r["epoch"] for r in records] == [0.4, 0.8, 1.0, 1.2, 1.6, 2.0]
    for record in records:
        assert set(record) == {"global_step", "epoch", "time", "loss", "level_loss", "lr", "img_per_s",
                               "img_per_s_per_device", "data_wait"}  # CPU: no gpu_mem_gb, no KD
        assert record["loss"] > 0 and len(record["level_loss"]) == 4 and record["lr"] > 0
        assert record["img_per_s"] == record["img_per_s_per_device"] > 0  # one process
        assert 0 < record["data_wait"] < 1  # --workers 0: the loop decodes its own batches
    # each record's mean loss covers its steps: weighted by them, they give the epochs' losses
    bounds = [0, *RECORD_STEPS]
    covered = [b - a for a, b in zip(bounds, bounds[1:])]
    for entry, epoch in zip(history(watched_run), (slice(0, 3), slice(3, 6))):
        mean = sum(r["loss"] * n for r, n in zip(records[epoch], covered[epoch])) / 5
        assert mean == pytest.approx(entry["train"]["loss"], abs=1e-5)


def test_tensorboard_holds_the_step_scalars_and_the_validations(watched_run):
    events = scalars(watched_run)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/level_loss/0", "train/level_loss/3", "speed/img_per_s",
            "speed/img_per_s_per_device", "speed/data_wait", "val/semantic_top1",
            "val/semantic_top1_per_level/0", "val/semantic_top1_class_weighted", "val/map_macro"} <= tags
    loss_steps, losses = series(events, "train/loss")
    assert loss_steps == RECORD_STEPS and losses == pytest.approx([r["loss"] for r in steps(watched_run)])
    entries = history(watched_run)
    for key, tag in [("semantic_top1", "val/semantic_top1"), ("top5", "val/top5")]:
        val_steps, values = series(events, tag)
        assert val_steps == [e["global_step"] for e in entries] == [5, 10]
        assert values == pytest.approx([e["val"][key] for e in entries])
    _, level_1 = series(events, "val/semantic_top1_per_level/1")
    assert level_1 == pytest.approx([e["val"]["semantic_top1_per_level"][1] for e in entries])


def test_a_resume_drops_the_records_after_its_checkpoint(trainer_dataset, watched_run, tmp_path):
    """As after a kill -9: records (and event files) past the checkpoint's step, one torn line."""
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "resumed"
    args = ["--data", str(trainer_dataset), "--output", str(run), *TINY]
    assert main([*args, "--stop-after-steps", "7"]) == 0  # checkpoint at global step 7
    assert [r["global_step"] for r in steps(run)] == [2, 4, 5, 6]
    orphans = [{"global_step": s, "loss": 999.0} for s in (8, 9)]
    with open(run / STEPS_FILE, "a") as file:
        file.write("".join(json.dumps(r) + "\n" for r in orphans) + '{"global_step": 10, "lo')
    with SummaryWriter(str(run / TENSORBOARD_DIR)) as writer:
        for record in orphans:
            writer.add_scalar("train/loss", record["loss"], record["global_step"])
    time.sleep(1.1)  # event files are read in name order, which starts with a whole-second time
    assert main([*args, "--resume"]) == 0
    records = steps(run)
    assert [r["global_step"] for r in records] == RECORD_STEPS and 999.0 not in [r["loss"] for r in records]
    loss_steps, losses = series(scalars(run), "train/loss")
    assert loss_steps == RECORD_STEPS and losses == pytest.approx([r["loss"] for r in records])
    # the timings went to steps.jsonl only: metrics.jsonl and the weights are the uninterrupted run's
    assert (run / "metrics.jsonl").read_bytes() == (watched_run / "metrics.jsonl").read_bytes()
    assert (run / "model.safetensors").read_bytes() == (watched_run / "model.safetensors").read_bytes()


def test_two_ranks_record_the_losses_of_the_global_batch(trainer_dataset, tmp_path):
    common = ["--data", str(trainer_dataset), "--epochs", "1", "--steps-per-epoch", "4", "--input-size", "32",
              "--data-lanes", "2", "--model", "test_vit", "--lr", "1e-3", "--randaugment", "none",
              "--cutout", "0", "--no-progress", "--log-every", "2", "--no-tensorboard"]
    single, double = tmp_path / "one", tmp_path / "two"
    assert main([*common, "--output", str(single), "--batch-size", "8", "--workers", "0"]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "trainer",
         *common, "--output", str(double), "--batch-size", "4", "--workers", "0"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = steps(single), steps(double)
    assert [r["global_step"] for r in two] == [r["global_step"] for r in one] == [2, 4]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["level_loss"] == pytest.approx(a["level_loss"], rel=1e-4)
        assert b["img_per_s_per_device"] == pytest.approx(b["img_per_s"] / 2, abs=0.1)  # both rounded
    assert not (single / TENSORBOARD_DIR).exists() and not (double / TENSORBOARD_DIR).exists()


def test_a_missing_tensorboard_package_warns_once_and_keeps_steps_jsonl(trainer_dataset, tmp_path):
    hidden = tmp_path / "hide" / "tensorboard"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('tensorboard hidden by the test')\n")
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--data", str(trainer_dataset), "--output", str(run), *TINY,
         "--epochs", "1", "--steps-per-epoch", "2"],
        cwd=ROOT, env=subprocess_env(PYTHONPATH=f"{tmp_path / 'hide'}{os.pathsep}{ROOT}"),
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "tensorboard" in warnings[0] and "--no-tensorboard" in warnings[0]
    assert [r["global_step"] for r in steps(run)] == [2]
    assert not (run / TENSORBOARD_DIR).exists()
