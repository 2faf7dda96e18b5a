"""`python -m hierarchy` as a real process: build, show, --plot, errors; no torch import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Official winter21 classes around the dog fork (canine / domestic animal) and a bird.
CLASSES = """# wnids, one per line
n00015388
n01317541
n02083346
n02084071
n02085374
n02087122
n02087551
n02092468
n02102040
n02103406
n02109047
n01503061
n01549053
"""


def hierarchy_cli(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hierarchy", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONHASHSEED=hash_seed))


@pytest.fixture()
def classes_file(tmp_path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text(CLASSES)
    return path


def test_build_show_and_plot(classes_file, tmp_path, shared_dir):
    out, png = tmp_path / "tree.json", tmp_path / "levels.png"
    built = hierarchy_cli("build", "--classes", classes_file, "--out", out, "--source", "is_a",
                          "--is-a", shared_dir / "reference" / "is_a.txt",
                          "--words", shared_dir / "reference" / "words.txt")
    assert built.returncode == 0, built.stderr
    doc = json.loads(out.read_text())
    assert doc["source"] == "is_a" and len(doc["class_list"]) == 13
    assert doc["class_description"]["n01549053"] == "grey_kingbird"
    assert "13 classes, source is_a" in built.stdout

    shown = hierarchy_cli("show", out, "--plot", png)
    assert shown.returncode == 0, shown.stderr
    assert "level  classes  softmax   factor" in shown.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first_png = png.read_bytes()
    assert hierarchy_cli("show", out, "--plot", png).returncode == 0
    assert png.read_bytes() == first_png


def test_wordnet_build_does_not_depend_on_hash_seed(classes_file, tmp_path):
    # nltk 3.10 returns hypernyms in set order, which follows PYTHONHASHSEED.
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"tree-{seed}.json"
        built = hierarchy_cli("build", "--classes", classes_file, "--out", out, hash_seed=seed)
        assert built.returncode == 0, built.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    doc = json.loads(outputs[0])
    dog = doc["class_list"].index("n02084071")
    assert [doc["class_description"][doc["class_list"][i]] for i in doc["class_tree_list"][dog]] == [
        "dog", "domestic_animal", "animal"]


def test_errors_are_one_line_messages(classes_file, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("n02084071\nn99999999\n")
    result = hierarchy_cli("build", "--classes", bad, "--out", tmp_path / "t.json")
    assert result.returncode == 1
    assert result.stderr.startswith("error: 1 class id(s) are not WordNet 3.0 nouns: n99999999")
    assert "Traceback" not in result.stderr and not (tmp_path / "t.json").exists()

    result = hierarchy_cli("build", "--classes", classes_file, "--out", tmp_path / "t.json",
                           "--source", "is_a")
    assert (result.returncode, result.stderr) == (1, "error: --source is_a needs --is-a PATH "
                                                     "(ImageNet's wordnet.is_a.txt)\n")
    result = hierarchy_cli("show", tmp_path / "missing.json")
    assert result.returncode == 1 and "No such file" in result.stderr and "Traceback" not in result.stderr


def test_hierarchy_never_imports_torch():
    code = ("import sys, hierarchy, hierarchy.tree, hierarchy.isa, hierarchy.names, hierarchy.plot, "
            "hierarchy.__main__; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0
