"""benchmarks/train_throughput.py in its CPU form (tiny model, 64 px, a few steps): it runs the
trainer's real step from memory and from pipeline-built shards and reports figures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_throughput_benchmark_produces_figures(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--source", "demo", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["input_size"] == 64
    [run] = figures["runs"]
    assert run["model"] == "test_resnet" and run["variant"] == "off"
    for key in ("synthetic_img_s", "loader_img_s", "loader_over_synthetic", "synthetic_over_paper"):
        assert run[key] > 0
    assert set(figures["input_pipeline_img_s_per_core"]) == {"RandAugment + Cutout", "decode only"}
    assert figures["workers_per_device"] >= 1
    assert "(b)/(a)" in proc.stdout and "loader workers per device" in proc.stdout
