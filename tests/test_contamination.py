"""pipeline.contamination in real builds: near-duplicates of evaluation images are left out (a folder,
a tar, a hash file from `python -m pipeline eval-hashes`), validation images with a near-duplicate
in train are reported or moved; real JPEGs, real archives, real processes."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageEnhance

from buildutil import ROOT, output_digest
from pipeline import build_dataset
from pipeline.contamination import EVAL_REASON
from pipeline.near_duplicates import DEFAULT_THRESHOLD, fingerprints_of_eval_set
from tools.demo_archive import make_archive

PARAMS = dict(min_images=31, val_per_class=5, samples_per_shard=64)


def transformed(data: bytes, how: int) -> bytes:
    """A near-duplicate of a JPEG: re-encoded, rescaled, cropped, lighter or gray."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    if how == 0:
        image = image.resize((w // 2, h // 2))
    elif how == 1:
        image = image.crop((w * 4 // 100, h * 4 // 100, w - w * 4 // 100, h - h * 4 // 100))
    elif how == 2:
        image = ImageEnhance.Brightness(image).enhance(1.08)
    else:
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=60)
    return out.getvalue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("near") / "demo", format="folders-dir", seed=11, num_classes=5)


@pytest.fixture(scope="module")
def eval_folder(archive, tmp_path_factory):
    """An evaluation set: near-duplicates of TAKEN train-or-val images of the archive, and
    images of another archive (not near-duplicates of any)."""
    folder = tmp_path_factory.mktemp("eval") / "val1k"
    other = make_archive(tmp_path_factory.mktemp("other") / "demo", format="folders-dir", seed=99, num_classes=2)
    wnid = sorted(archive.classes)[0]
    taken = archive.classes[wnid][10:14]
    (folder / "n99999999").mkdir(parents=True)
    for how, stem in enumerate(taken):
        data = (archive.path / wnid / f"{stem}.JPEG").read_bytes()
        (folder / "n99999999" / f"ILSVRC2012_val_{how:08d}.JPEG").write_bytes(transformed(data, how))
    for path in sorted(other.path.glob("*/*.JPEG"))[:20]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.JPEG").write_bytes(b"\xff\xd8 not a jpeg")
    return folder, [f"{s}" for s in taken]


@pytest.fixture(scope="module")
def clean(archive, tmp_path_factory):
    return build_dataset(archive.path, tmp_path_factory.mktemp("clean") / "out", **PARAMS)


def archive_fingerprints(root) -> dict[str, int]:
    """Every image's fingerprint, taken in the test the way the build takes it (for reference)."""
    from pipeline.images import squish_resized_image
    from pipeline.near_duplicates import fingerprint

    out = {}
    for path in sorted(root.glob("*/*.JPEG")):
        try:
            out[path.stem] = fingerprint(squish_resized_image(path.read_bytes(), 224))
        except Exception:  # the archive's deliberately broken images
            pass
    return out


def near(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def near_rejects(out) -> list[dict]:
    return [r for r in pq.read_table(out / "rejects.parquet").to_pylist() if r["reason"] == EVAL_REASON]


def test_an_evaluation_folder_leaves_its_near_duplicates_out(archive, eval_folder, clean, tmp_path):
    folder, taken = eval_folder
    out = build_dataset(archive.path, tmp_path / "out", eval_sets=str(folder), **PARAMS)
    rejected = near_rejects(out)
    kept = set(pq.read_table(clean / "labels.parquet").column("key").to_pylist())
    evals = fingerprints_of_eval_set(folder, variants=True).fingerprints.ravel().tolist()
    expected = {k for k, f in archive_fingerprints(archive.path).items()
                if k in kept and min(near(f, e) for e in evals) <= DEFAULT_THRESHOLD}
    assert set(taken) <= expected  # the transformed copies are found, and exactly what brute force finds
    assert sorted(r["key"] for r in rejected) == sorted(expected)
    assert all(r["detail"].startswith("val1k: n99999999/ILSVRC2012_val_") and "(distance " in r["detail"]
               for r in rejected if r["key"] in taken)
    labels = set(pq.read_table(out / "labels.parquet").column("key").to_pylist())
    assert labels == kept - expected
    stats = json.loads((out / "stats.json").read_text())
    assert stats["near_duplicates"]["near_duplicates_of_eval"] == {"val1k": len(expected)}
    assert stats["near_duplicates"]["eval_sets"]["val1k"]["unreadable"] == 1
    assert stats["accounting"]["balanced"]
    card = (out / "README.md").read_text()
    assert f"| val1k | 24 | 1 | {len(expected)} |" in card
    assert near_rejects(clean) == []


def test_a_hash_file_and_a_tar_give_the_same_build_as_the_folder(archive, eval_folder, tmp_path):
    folder, taken = eval_folder
    hashes = tmp_path / "val1k.parquet"
    made = subprocess.run([sys.executable, "-m", "pipeline", "eval-hashes", str(folder), "-o", str(hashes)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "24 fingerprints" in made.stdout and "1 image(s) unreadable" in made.stdout
    tar = tmp_path / "val1k.tar"
    with tarfile.open(tar, "w") as t:
        t.add(folder, arcname=".")
    keys = {}
    for source in (hashes, tar):
        out = build_dataset(archive.path, tmp_path / source.suffix[1:], eval_sets=str(source), **PARAMS)
        keys[source.suffix] = sorted(r["key"] for r in near_rejects(out))
    assert keys[".parquet"] == keys[".tar"] and set(taken) <= set(keys[".tar"])


def test_a_validation_image_copied_into_train_is_reported_then_moved(archive, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(archive.path, copy)
    wnid = sorted(archive.classes)[1]
    first_val, second_val = sorted(archive.classes[wnid])[:2]  # val_rule first: the first names are validation
    data = (copy / wnid / f"{first_val}.JPEG").read_bytes()
    (copy / wnid / f"{wnid}_999999.JPEG").write_bytes(transformed(data, 2))  # sorts after: a train image
    # 5 % cut off the left and the top: its centre fingerprint is far from the original's (asserted
    # below); the validation image's variants find it
    image = Image.open(copy / wnid / f"{second_val}.JPEG").convert("RGB")
    w, h = image.size
    image.crop((w // 20, h // 20, w, h)).save(copy / wnid / f"{wnid}_999998.JPEG", quality=90)
    reported = build_dataset(copy, tmp_path / "reported", **PARAMS)
    pairs = pq.read_table(reported / "val_near_duplicates.parquet").to_pylist()
    assert {(p["val_key"], p["train_key"]) for p in pairs} >= {(first_val, f"{wnid}_999999"),
                                                              (second_val, f"{wnid}_999998")}
    stats = json.loads((reported / "stats.json").read_text())["near_duplicates"]["val_with_train_near_duplicate"]
    assert stats["per_class"][wnid] >= 1 and stats["moved"] == 0
    moved = build_dataset(copy, tmp_path / "moved", val_near_duplicates="move", **PARAMS)
    split = {r["key"]: r["split"] for r in pq.read_table(moved / "labels.parquet").to_pylist()}
    assert split[first_val] == split[second_val] == "train"
    fingerprints = archive_fingerprints(copy)
    assert near(fingerprints[second_val], fingerprints[f"{wnid}_999998"]) > DEFAULT_THRESHOLD
    val = [k for k, s in split.items() if s == "validation"]
    train = [fingerprints[k] for k, s in split.items() if s == "train"]
    assert sum(k.startswith(wnid) for k in val) == PARAMS["val_per_class"]
    assert all(min(near(fingerprints[k], t) for t in train) > DEFAULT_THRESHOLD for k in val)  # held out
    moved_stats = json.loads((moved / "stats.json").read_text())["near_duplicates"]["val_with_train_near_duplicate"]
    assert moved_stats["moved"] == stats["images"]
    again = build_dataset(copy, tmp_path / "moved-again", val_near_duplicates="move", **PARAMS)
    assert output_digest(again) == output_digest(moved)  # deterministic


def test_changing_the_threshold_is_a_parameter_change(archive, clean):
    from pipeline.errors import OutputDirError

    with pytest.raises(OutputDirError, match="near_dup_distance"):
        build_dataset(archive.path, clean, near_dup_distance=4, **PARAMS)
