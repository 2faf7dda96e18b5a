"""trainer.report: metrics.jsonl and the plots after an epoch, the printed lines, the model card."""
from __future__ import annotations

import json

from tests.trainer_fixtures import fixture_tree
from trainer import export
from trainer import report
from trainer.config import TrainConfig

VAL = {"semantic_top1": 61.25, "semantic_top1_class_weighted": 55.5, "top1": 40.0, "top5": 70.0,
       "map_macro": 33.3333, "semantic_top1_per_level": [80.0, 60.0, 50.0, 40.0, 30.0]}


def test_epoch_files_and_lines(tmp_path):
    history = [{"epoch": 1, "global_step": 5, "lr": 0.001, "train": {"loss": 2.5}},
               {"epoch": 2, "global_step": 10, "lr": 0.0005, "train": {"loss": 1.25}, "val": VAL}]
    report.write_epoch_files(tmp_path, history, fixture_tree())
    lines = (tmp_path / report.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert lines[0] == json.dumps(history[0], sort_keys=True)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["accuracy_per_level.png", "curves.png"]
    assert report.epoch_line(history[0], 40) == "epoch 1/40: loss 2.5000"
    assert report.epoch_line(history[1], 40) == (
        "epoch 2/40: loss 1.2500 | val semantic top-1 61.25% (class-weighted 55.50%), "
        "top-1 40.00%, top-5 70.00%, mAP 33.33%")
    text = report.outputs_lines(tmp_path, tmp_path / export.EXPORT_WEIGHTS)
    assert "plots      accuracy_per_level.png, curves.png" in text and "continue with --resume" in text


def test_model_card_falls_back_to_the_pipelines_defaults(tmp_path):
    config = TrainConfig(data=str(tmp_path), output="o", model="resnet18", input_size=96)
    card = report.model_card(config, 15, global_batch=64, lr=1.06e-4)
    assert card == {"model": "resnet18", "num_classes": 15, "input_size": 96, "scheme": "semantic",
                    "weights": "model.safetensors", "tree": "semantic_tree.json", "image_size": 224, "jpeg_quality": 95,
                    "global_batch": 64, "batch_size_per_rank": 64, "accum_steps": 1, "peak_lr": 1.06e-4,
                    "optimizer": "adam", "weight_decay": 1e-4, "epochs": 80}
