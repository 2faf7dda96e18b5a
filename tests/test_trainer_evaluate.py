"""``python -m trainer evaluate``: a run's (or a weights file's) validation equals the run's last
validation in metrics.jsonl, its outputs, and the one-line errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from trainer.cli import main
from trainer.export import read_export

TINY = ["--model", "test_resnet", "--input-size", "32", "--batch-size", "16", "--epochs", "1",
        "--steps-per-epoch", "4", "--workers", "0", "--randaugment", "none", "--cutout", "0", "--no-progress"]
EVAL = ["--batch-size", "16", "--workers", "0", "--no-progress"]  # as the run validated
ROOT = Path(__file__).resolve().parents[1]


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


# ------------------------------------------------------------------ --imagenet1k-val
CHURCH = "n03028079"  # the demo's one ImageNet-1K class (index 497)
SCORED = [CHURCH, "n01858441", "n12268246", "n01861778", "n02913152"]  # kept: church, swan, oak, mammal, building
# a class list in the order of a benchmark: kept classes (some without a folder), a dropped one, one never in the demo
CLASS_LIST = [*SCORED, "n01503061", "n12269241", "n04341686", "n02876657", "n01440764"]
DROPPED, ANIMAL = "n02876657", "n00015388"  # bottle (dropped by the build), animal (kept, in no list)


@pytest.fixture(scope="module")
def val_dir(trainer_dataset, tmp_path_factory) -> Path:
    """An ILSVRC2012-style folder of the demo archive's own images: 3 per scored class (church's third
    one unreadable), 2 of a dropped class, 2 of a kept class outside the list, 2 in a wnid-shaped folder of
    no class, 2 in a folder not named by a wnid."""
    import io
    import tarfile

    root = tmp_path_factory.mktemp("in1k") / "val"
    take = {**dict.fromkeys(SCORED, 3), DROPPED: 2, ANIMAL: 2}
    with tarfile.open(trainer_dataset.parent / "demo.tar") as outer:
        for member in outer:
            wnid = member.name.removesuffix(".tar")
            if wnid not in take:
                continue
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(member).read())) as inner:
                jpegs = sorted((m for m in inner if m.name.endswith(".JPEG")), key=lambda m: m.name)[:take[wnid]]
                (root / wnid).mkdir(parents=True)
                for m in jpegs:
                    (root / wnid / m.name).write_bytes(inner.extractfile(m).read())
    assert sorted(p.name for p in root.iterdir()) == sorted(take)
    for folder in ("n99999999", "misc"):
        (root / folder).mkdir()
        for image in sorted((root / "n01858441").iterdir())[:2]:
            (root / folder / image.name).write_bytes(image.read_bytes())
    broken = sorted((root / CHURCH).iterdir())[-1]
    broken.write_bytes(broken.read_bytes()[:200])  # cut short: no image left
    (root / "LOC_val_solution.csv").write_text("not an image\n")
    return root


def reference(run: Path, val_dir: Path, class_list: list[str]) -> dict:
    """Top-1 / top-5 counts by hand: predict's image loading, the model's logits at the listed classes' rows."""
    from hierarchy import SemanticTree
    from trainer.predict import UnreadableImage, load_image
    from trainer.trained_model import load_trained_model

    model = load_trained_model(run).model.eval()
    tree = SemanticTree.load(run / "semantic_tree.json")
    rows = [tree.index_of(w) for w in class_list if w in tree.class_list]
    top1 = top5 = images = 0
    for wnid in sorted(p.name for p in val_dir.iterdir() if p.is_dir()):
        if wnid not in {tree.class_list[r] for r in rows}:
            continue
        for path in sorted((val_dir / wnid).iterdir()):
            try:
                image = load_image(path, 32)
            except UnreadableImage:
                continue
            with torch.no_grad():
                logits = model(image)[0, rows]
            ranked = [tree.class_list[rows[i]] for i in logits.topk(min(5, len(rows))).indices.tolist()]
            top1, top5, images = top1 + (ranked[0] == wnid), top5 + (wnid in ranked), images + 1
    return {"images": images, "top1_correct": top1, "top5_correct": top5}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "evaluate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_imagenet1k_val_scores_the_models_imagenet1k_classes(run, val_dir, trainer_dataset):
    classes = pq.read_table(trainer_dataset / "classes.parquet").to_pylist()
    assert {c["wnid"]: c["imagenet1k_index"] for c in classes if c["imagenet1k_index"] is not None} == {CHURCH: 497}
    tree = json.loads((run / "semantic_tree.json").read_text())
    assert tree["imagenet1k_index"] == {CHURCH: 497}

    out = run_cli("--run", run, "--imagenet1k-val", val_dir, "--batch-size", 4, "--workers", 2, "--no-progress")
    assert out.returncode == 0, out.stderr
    result = json.loads((run / "eval-imagenet1k-val" / "eval_imagenet1k.json").read_text())
    assert result["classes"] == {"listed": 1000, "in_model": 1} and result["class_list"] == "timm imagenet_synsets.txt"
    # one ImageNet-1K class in the model: its two readable images are always right
    assert result["scored"] == {"images": 2, "folders": 1, "top1": 100.0, "top5": 100.0, "top1_correct": 2, "top5_correct": 2}
    skipped = result["not_scored"]
    assert skipped["not_in_model"] == {"images": 4, "folders": [DROPPED, "n99999999"]}
    assert skipped["not_in_class_list"] == {"images": 14, "folders": sorted([*SCORED[1:], ANIMAL])}
    assert skipped["unknown_folders"] == {"images": 2, "folders": ["misc"]}
    assert skipped["unreadable"]["images"] == 1 and skipped["unreadable"]["files"][0].startswith(str(val_dir / CHURCH))
    assert "the model has 1 of the 1,000 ImageNet-1K classes" in out.stdout
    assert "2 images of 1 class scored: top-1 100.00%, top-5 100.00%" in out.stdout
    assert ("not scored: 4 images in 2 folders of classes the model lacks, 2 images in 1 folder not named nXXXXXXXX, "
            "14 images in 5 folders of model classes outside the list, 1 unreadable") in out.stdout


def test_a_class_list_gives_top1_and_top5_as_computed_by_hand(run, val_dir, tmp_path):
    listed = tmp_path / "classes.txt"
    listed.write_text("".join(f"{w}\n" for w in CLASS_LIST))
    out = run_cli("--run", run, "--imagenet1k-val", val_dir, "--class-list", listed, "--output", tmp_path / "out",
                  "--batch-size", 5, "--workers", 0, "--no-progress")
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "out" / "eval_imagenet1k.json").read_text())
    assert result["classes"] == {"listed": 10, "in_model": 8}
    want = reference(run, val_dir, CLASS_LIST)
    assert want["images"] == 14  # 3 + 3 + 3 + 3 + 2 readable; 8 candidate rows, so top-5 can miss
    scored = result["scored"]
    assert {k: scored[k] for k in want} == want and scored["folders"] == 5
    assert scored["top1"] == round(100 * want["top1_correct"] / 14, 4)
    assert result["not_scored"]["not_in_class_list"] == {"images": 2, "folders": [ANIMAL]}
    assert "the model has 8 of the 10 classes.txt classes" in out.stdout


def test_a_run_whose_tree_predates_the_imagenet1k_map_still_evaluates(run, val_dir, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("eval-*"))
    doc = json.loads((old / "semantic_tree.json").read_text())
    del doc["imagenet1k_index"]
    (old / "semantic_tree.json").write_text(json.dumps(doc))
    assert main(["evaluate", "--run", str(old), "--imagenet1k-val", str(val_dir), *EVAL]) == 0
    result = json.loads((old / "eval-imagenet1k-val" / "eval_imagenet1k.json").read_text())
    assert result["classes"]["in_model"] == 1 and result["scored"]["top1_correct"] == 2


def test_imagenet1k_failures_are_one_error_line(run, val_dir, tmp_path, capsys):
    source = ["--run", str(run), *EVAL]
    assert main(["evaluate", *source, "--imagenet1k-val", str(tmp_path / "nowhere")]) == 2
    assert one_error_line(capsys) == f"error: --imagenet1k-val {tmp_path / 'nowhere'}: no such folder"
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    assert main(["evaluate", *source, "--imagenet1k-val", str(tmp_path / "flat")]) == 2
    assert "holds no class folders named by wnid" in one_error_line(capsys)
    assert main(["evaluate", *source]) == 2
    assert "--data is needed" in one_error_line(capsys)
    assert main(["evaluate", *source, "--data", "x", "--class-list", "y"]) == 2
    assert "--class-list goes with --imagenet1k-val" in one_error_line(capsys)
    (tmp_path / "bad.txt").write_text("tench\n")
    assert main(["evaluate", *source, "--imagenet1k-val", str(val_dir), "--class-list", str(tmp_path / "bad.txt")]) == 2
    assert "'tench' is not a wnid" in one_error_line(capsys)
    weights = tmp_path / "w.pth"
    torch.save(read_export(run)[1], weights)
    assert main(["evaluate", "--weights", str(weights), "--model", "test_resnet", "--output", str(tmp_path / "o"),
                 "--imagenet1k-val", str(val_dir), *EVAL]) == 2
    assert "--weights needs --data" in one_error_line(capsys)
