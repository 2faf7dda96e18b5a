"""The official processed download (imagenet21k_resized) as input: splits kept exactly, ready JPEGs
copied byte for byte, small classes dropped, folder and .tar.gz alike; and the two `first`
validation orders for the raw layouts."""
from __future__ import annotations

import io
import json
import locale
import os
import shutil
import subprocess
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from buildutil import output_digest
from pipeline import build_dataset
from pipeline.archive import ArchiveError, detect_layout, release_root
from pipeline.convert import ls_order_key
from tools.demo_release import make_release
from pipeline.jpeg_header import is_ready_jpeg

SMALL = dict(samples_per_shard=200, shard_tasks=2, convert_tasks=3)
NAMING_THE_ARCHIVE = {"stats.json", "_params.json", "README.md",  # they record its path and layout
                      "_sizes.json", "SHA256SUMS"}  # and so do their sizes and hashes


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release") / "imagenet21k_resized", orphan_val=True)


@pytest.fixture(scope="module")
def built(release, tmp_path_factory):
    return build_dataset(release.path, tmp_path_factory.mktemp("built") / "ds", **SMALL)


def shard_samples(out) -> dict[str, dict[str, bytes]]:
    """split -> key -> the sample's JPEG bytes, read from the shards."""
    found: dict[str, dict[str, bytes]] = {"train": {}, "validation": {}}
    for split in found:
        for shard in sorted((out / split).glob("*.tar")):
            with tarfile.open(shard) as tar:
                for member in tar:
                    if member.name.endswith(".jpg"):
                        found[split][member.name[:-4]] = tar.extractfile(member).read()
    return found


def stems(names) -> set[str]:
    return {n.rsplit(".", 1)[0] for n in names}


def test_the_layout_is_recognised_under_the_names_users_have(release, tmp_path):
    assert detect_layout(release.path) == "released"
    assert detect_layout(release.path.parent) == "released"  # the folder the .tar.gz was unpacked in
    short = make_release(tmp_path / "short", short_names=True)
    assert detect_layout(short.path) == "released" and release_root(short.path)[1] == {
        "train": "train", "validation": "val", "small": "small_classes"}
    gz = make_release(tmp_path / "imagenet21k_resized.tar.gz", compressed=True)
    assert detect_layout(gz.path) == "released.tar.gz"
    (short.path / "imagenet21k_train").mkdir()
    with pytest.raises(ArchiveError, match="holds both imagenet21k_train and train: keep one train folder"):
        detect_layout(short.path)


def test_the_splits_are_taken_as_given_and_ready_jpegs_copied(release, built):
    got = shard_samples(built)
    val_in = {f"{w}/{n}": b for w, files in release.files["validation"].items() for n, b in files.items()}
    orphan = sorted(release.files["small"])[0]  # has a val folder but no train folder
    expected_val = {k.split("/")[1].rsplit(".", 1)[0]: b for k, b in val_in.items() if not k.startswith(orphan)}
    assert set(got["validation"]) == set(expected_val)  # every val file (of a trained class), nothing else
    train_in = {n.rsplit(".", 1)[0]: b for files in release.files["train"].values() for n, b in files.items()}
    del train_in[release.corrupt.rsplit(".", 1)[0]]
    assert set(got["train"]) == set(train_in)
    special = stems(release.not_resized.values())
    for split, given in (("train", train_in), ("validation", expected_val)):
        for key, jpeg in got[split].items():
            if key in special:  # not a 224² baseline JPEG: squish-resized into one
                assert jpeg != given[key] and is_ready_jpeg(jpeg, 224)
            else:
                assert jpeg == given[key], key  # byte for byte
    stats = json.loads((built / "stats.json").read_text())
    assert stats["release"]["copied"] == len(got["train"]) + len(got["validation"]) - len(special)
    assert stats["release"]["resized"] == len(special) == 2
    assert stats["accounting"]["balanced"]


def test_small_classes_the_corrupt_file_and_a_val_only_class_are_accounted(release, built):
    counts = {r["wnid"]: r for r in pq.read_table(built / "class_counts.parquet").to_pylist()}
    for wnid, files in release.files["small"].items():
        assert counts[wnid]["drop_reason"] == "released_small_class" and counts[wnid]["n_images"] == len(files)
    classes = pq.read_table(built / "classes.parquet").column("wnid").to_pylist()
    assert classes == sorted(release.files["train"])  # the class list is the train folder's
    rejects = pq.read_table(built / "rejects.parquet").to_pylist()
    orphan = sorted(release.files["small"])[0]
    assert sorted((r["reason"], r["member"]) for r in rejects) == sorted(
        [("corrupt", f"imagenet21k_train/{release.corrupt.split('_')[0]}/{release.corrupt}")]
        + [("class_not_in_train_folder", f"imagenet21k_val/{orphan}/{n}") for n in release.files["validation"][orphan]])
    stats = json.loads((built / "stats.json").read_text())
    assert stats["dropped_classes"] == {"released_small_class": len(release.files["small"])}
    assert stats["release"]["val_order"] == {"classes": 16, "first": 15, "first_en_us": 16}
    vs_timm = stats["release"]["vs_timm_w21"]
    assert vs_timm["extra"] == 0 and vs_timm["extra_examples"] == []  # every demo class is a w21 class
    lists = json.loads((built / vs_timm["file"]).read_text())
    assert len(lists["missing"]) == vs_timm["missing"] > 10_000 - 16 and vs_timm["missing_examples"] == lists["missing"][:10]
    assert len((built / "stats.json").read_bytes()) < 20_000
    assert stats["parameters"]["not_applicable"] == ["min_images", "val_per_class", "val_rule"]
    assert not {"min_images", "val_per_class", "val_rule"} & set(stats["parameters"])
    params = json.loads((built / "_params.json").read_text())
    assert params["not_applicable"] == stats["parameters"]["not_applicable"] and "min_images" not in params
    card = (built / "README.md").read_text()
    assert "from the official processed ImageNet-21K-P" in card and "Semantic tree: `wordnet`" in card
    assert "| val_rule | (does not apply: the download's own split) |" in card


def test_the_tar_gz_in_place_gives_the_same_dataset_and_a_rerun_redoes_nothing(release, built, tmp_path):
    gz = make_release(tmp_path / "imagenet21k_resized.tar.gz", compressed=True, orphan_val=True).path
    out = build_dataset(gz, tmp_path / "ds", gzip_part_mb=1, **SMALL)
    same = lambda digest: {k: v for k, v in digest.items() if k not in NAMING_THE_ARCHIVE}  # noqa: E731
    assert same(output_digest(out)) == same(output_digest(built))
    parts = sorted(out.glob("_work/**/part-0*.json"))
    assert len(parts) > 3
    # as if killed mid-stream: the parts after the second gone, and everything made from the parts
    kept = {p: p.stat().st_mtime_ns for p in parts[:2]}
    for p in parts[2:]:
        for f in p.parent.glob(p.name.replace(".json", ".*")):
            f.unlink()
    for p in list(out.iterdir()):
        if p.name not in ("_work", "_params.json"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in out.glob("_work/**/convert-gz.json"):
        for plan in p.parent.glob("plan-*"):
            shutil.rmtree(plan)
        p.unlink()
    build_dataset(gz, out, gzip_part_mb=1, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # not converted again
    assert same(output_digest(out)) == same(output_digest(built))


def test_a_rerun_and_a_second_build_are_byte_identical(release, built, tmp_path):
    digest = output_digest(built)
    build_dataset(release.path, built, **SMALL)
    assert output_digest(built) == digest
    again = build_dataset(release.path, tmp_path / "again", **SMALL)
    same = lambda d: {k: v for k, v in d.items() if k not in NAMING_THE_ARCHIVE}  # noqa: E731
    assert same(output_digest(again)) == same(digest)


# ---- the raw layouts' two `first` orders -------------------------------------------------------

MIXED = ["n01440764_1000.JPEG", "n01440764_10000.JPEG", "n01440764_10001.JPEG", "n01440764_10002.JPEG",
         "n01440764_2.JPEG", "n01440764_100.JPEG", "n01440764_99.JPEG"]


def test_ls_order_key_lists_like_ls_under_en_us():
    bytewise = sorted(MIXED)
    assert bytewise[:4] == ["n01440764_100.JPEG", "n01440764_1000.JPEG", "n01440764_10000.JPEG", "n01440764_10001.JPEG"]
    assert sorted(MIXED, key=ls_order_key)[:4] == ["n01440764_10000.JPEG", "n01440764_10001.JPEG",
                                                   "n01440764_10002.JPEG", "n01440764_1000.JPEG"]
    # (as glibc's en_US.UTF-8 strxfrm orders them: punctuation last, then lowercase before uppercase)
    assert sorted(["a.JPEG", "A.jpeg", "a.jpeg", "a_b.JPEG", "ab.JPEG"], key=ls_order_key) == [
        "a_b.JPEG", "ab.JPEG", "a.jpeg", "a.JPEG", "A.jpeg"]


def en_us_available() -> bool:
    try:
        locale.setlocale(locale.LC_COLLATE, "en_US.UTF-8")
        return True
    except locale.Error:
        return False
    finally:
        locale.setlocale(locale.LC_COLLATE, "C")


@pytest.mark.skipif(not en_us_available(), reason="the en_US.UTF-8 locale is not installed here")
def test_ls_order_key_matches_the_real_ls(tmp_path):
    names = MIXED + [f"n01440764_{n}.JPEG" for n in (1, 10, 11, 101, 110, 1100, 11000, 5, 50, 500, 5000)]
    for name in names:
        (tmp_path / name).touch()
    listed = subprocess.run(["ls", "-1"], cwd=tmp_path, env=dict(os.environ, LC_ALL="en_US.UTF-8"),
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == sorted(names, key=ls_order_key)


@pytest.mark.parametrize("rule, val", [("first", ["n01440764_100", "n01440764_1000", "n01440764_10000"]),
                                       ("first_en_us", ["n01440764_10000", "n01440764_10001", "n01440764_10002"])])
def test_the_raw_layouts_pick_val_images_by_either_order(rule, val, tmp_path):
    folder = tmp_path / "archive" / "n01440764"
    folder.mkdir(parents=True)
    for i, name in enumerate(MIXED):
        image = io.BytesIO()
        Image.new("RGB", (64, 48), (10 * i, 100, 200)).save(image, "JPEG")
        (folder / name).write_bytes(image.getvalue())
    out = build_dataset(tmp_path / "archive", tmp_path / "ds", min_images=4, val_per_class=3, val_rule=rule,
                        shard_tasks=1, convert_tasks=1)
    labels = pq.read_table(out / "labels.parquet").to_pylist()
    assert sorted(r["key"] for r in labels if r["split"] == "validation") == val
