"""hierarchy.imagenet1k: ImageNet-1K's class list is timm's, read without importing timm or torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hierarchy import imagenet1k
from hierarchy.imagenet1k import ImageNet1kListMissing, imagenet1k_index, imagenet1k_wnids, read_wnid_list

ROOT = Path(__file__).resolve().parents[1]


def test_the_list_is_timms_imagenet_synsets_file(timm_info_dir):
    assert list(imagenet1k_wnids()) == (timm_info_dir / "imagenet_synsets.txt").read_text().split()
    assert len(set(imagenet1k_wnids())) == 1000
    assert imagenet1k_wnids()[0] == "n01440764" and imagenet1k_wnids()[999] == "n15075141"  # tench, toilet tissue
    assert imagenet1k_index(["n15075141", "n00015388", "n01443537", "n01440764", "n01440764"]) == {
        "n01440764": 0, "n01443537": 1, "n15075141": 999}


def test_the_list_is_read_without_importing_timm_or_torch():
    code = ("import sys; from hierarchy import SemanticTree; t = SemanticTree.from_parents(['n01440764'], {}); "
            "assert t.imagenet1k_index == {'n01440764': 0}; print(sorted(m for m in ('timm', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_without_timm_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(imagenet1k.importlib.util, "find_spec", lambda name: None)
    imagenet1k_wnids.cache_clear()
    try:
        with pytest.raises(ImageNet1kListMissing, match=r"timm package, which is not installed.*pip install 'timm"):
            imagenet1k_wnids()
    finally:
        imagenet1k_wnids.cache_clear()


def test_class_list_files(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# ImageNet-R\nn01443537 goldfish\n\nn01440764\n")
    assert read_wnid_list(path) == ["n01443537", "n01440764"]
    path.write_text("n01443537\ngoldfish\n")
    with pytest.raises(ValueError, match=r"list.txt:2: 'goldfish' is not a wnid"):
        read_wnid_list(path)
    path.write_text("n01443537\nn01443537\n")
    with pytest.raises(ValueError, match="n01443537 is listed twice"):
        read_wnid_list(path)
