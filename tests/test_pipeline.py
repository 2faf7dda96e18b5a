"""End to end: the demo archive (tar, tar.gz, tars-dir, folders-dir) through BuildImageNet21KP."""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import PipelineError, build_dataset
from tools.demo_archive import make_archive

PARAMS = dict(min_images=31, val_per_class=5, samples_per_shard=64, shard_tasks=2, convert_tasks=3)


def tree_files(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the work dir."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "_work" not in p.parts}


def read_shard(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tf:
        for m in tf:
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return samples


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive") / "demo.tar", format="tar", seed=0)


@pytest.fixture(scope="session")
def built(demo, tmp_path_factory) -> Path:
    return build_dataset(demo.path, tmp_path_factory.mktemp("out") / "ds", **PARAMS)


def test_kept_classes_and_exact_val_counts(demo, built):
    classes = pq.read_table(built / "classes.parquet").to_pylist()
    expected = sorted(w for w, keys in demo.classes.items() if len(keys) >= PARAMS["min_images"])
    assert [c["wnid"] for c in classes] == expected
    assert [c["class_index"] for c in classes] == list(range(len(expected)))
    for c in classes:
        assert c["n_val"] == PARAMS["val_per_class"]
        assert c["n_train"] == len(demo.classes[c["wnid"]]) - PARAMS["val_per_class"]
    counts = {r["wnid"]: r for r in pq.read_table(built / "class_counts.parquet").to_pylist()}
    for wnid, keys in demo.classes.items():
        assert counts[wnid]["kept"] == (len(keys) >= PARAMS["min_images"])
        if not counts[wnid]["kept"]:
            assert counts[wnid]["drop_reason"] == "too_few_images"


def test_validation_holds_the_first_names_in_sorted_order(demo, built):
    labels = pq.read_table(built / "labels.parquet").to_pylist()
    val = {}
    for r in labels:
        if r["split"] == "validation":
            val.setdefault(r["wnid"], []).append(r["key"])
    for wnid, keys in val.items():
        members = sorted(f"{k}.JPEG" for k in demo.classes[wnid])
        assert sorted(f"{k}.JPEG" for k in keys) == members[: PARAMS["val_per_class"]]


def test_every_image_is_accounted_for(demo, built):
    stats = json.loads((built / "stats.json").read_text())
    acc = stats["accounting"]
    assert acc["balanced"]
    assert acc["archive_entries"] == sum(len(k) for k in demo.classes.values())
    dropped = sum(len(k) for k in demo.classes.values() if len(k) < PARAMS["min_images"])
    assert acc["in_dropped_classes"] == dropped
    assert acc["in_shards"] == stats["samples"]["train"] + stats["samples"]["validation"]


def test_shards_hold_224_rgb_images_with_labels_of_their_source(demo, built):
    info = json.loads((built / "_info.json").read_text())
    classes = pq.read_table(built / "classes.parquet").to_pylist()
    tree = json.loads((built / "semantic_tree.json").read_text())
    index_of = {c["wnid"]: c["class_index"] for c in classes}
    seen = set()
    for split, spec in info["splits"].items():
        assert len(spec["filenames"]) == len(spec["shard_lengths"])
        for name, length in zip(spec["filenames"], spec["shard_lengths"]):
            samples = read_shard(built / name)
            assert len(samples) == length
            for key, fields in samples.items():
                assert sorted(fields) == ["cls", "jpg", "json"]
                img = Image.open(io.BytesIO(fields["jpg"]))
                img.load()
                assert img.size == (224, 224) and img.mode == "RGB"
                meta = json.loads(fields["json"])
                wnid = key.split("_")[0]
                assert meta["wnid"] == wnid and int(fields["cls"]) == index_of[wnid] == meta["class_index"]
                assert meta["semantic_chain"] == tree["class_tree_list"][index_of[wnid]]
                assert meta["width"] > 0 and meta["height"] > 0
                seen.add(key)
    assert len(seen) == info["splits"]["train"]["num_samples"] + info["splits"]["validation"]["num_samples"]
    lengths = info["splits"]["train"]["shard_lengths"]
    assert all(n == PARAMS["samples_per_shard"] for n in lengths[:-1]) and 0 < lengths[-1] <= PARAMS["samples_per_shard"]


def test_train_shards_are_mixed_across_classes(built):
    info = json.loads((built / "_info.json").read_text())
    for name in info["splits"]["train"]["filenames"]:
        wnids = Counter(k.split("_")[0] for k in read_shard(built / name))
        assert len(wnids) >= 3, f"{name} holds {dict(wnids)}"
    first_val = read_shard(built / info["splits"]["validation"]["filenames"][0])
    keys = list(first_val)
    assert keys == sorted(keys, key=lambda k: k.split("_")[0])  # validation in class order


def test_rerun_is_a_noop_and_fresh_build_is_byte_identical(demo, built, tmp_path):
    before = tree_files(built)
    mtimes = {p: p.stat().st_mtime_ns for p in built.rglob("*") if p.is_file()}
    build_dataset(demo.path, built, **PARAMS)
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*") if p.is_file()} == mtimes
    again = build_dataset(demo.path, tmp_path / "again", **PARAMS)
    assert tree_files(again) == before


def test_timm_and_webdataset_read_the_dataset(built):
    import timm.data
    import webdataset as wds

    info = json.loads((built / "_info.json").read_text())
    classes = {c["wnid"]: c["class_index"] for c in pq.read_table(built / "classes.parquet").to_pylist()}
    ds = timm.data.create_dataset("wds/imagenet21kp", root=str(built), split="validation", is_training=False)
    items = list(ds)
    assert len(items) == info["splits"]["validation"]["num_samples"]
    assert all(img.size == (224, 224) for img, _ in items)
    names = [str(built / n) for n in info["splits"]["train"]["filenames"]]
    n = 0
    for sample in wds.WebDataset(names, shardshuffle=False).decode("pil"):
        assert int(sample["cls"]) == classes[sample["__key__"].split("_")[0]]
        n += 1
    assert n == info["splits"]["train"]["num_samples"]


@pytest.mark.parametrize("layout", ["tar.gz", "tars-dir", "folders-dir"])
def test_other_layouts_give_the_same_dataset(layout, built, tmp_path):
    archive = make_archive(tmp_path / f"demo.{layout}", format=layout, seed=0)
    out = build_dataset(archive.path, tmp_path / "ds", **PARAMS)
    ref = tree_files(built)
    got = tree_files(out)
    for name in ref:
        if name.endswith(".tar") or name in ("labels.parquet", "classes.parquet", "semantic_tree.json", "_info.json"):
            assert got[name] == ref[name], name


def test_changed_parameters_never_mix_with_old_outputs(demo, built):
    with pytest.raises(PipelineError, match="image_size"):
        build_dataset(demo.path, built, **dict(PARAMS, image_size=128))


@pytest.mark.parametrize("layout", ["tar", "tar.gz"])
def test_truncated_archive_is_a_clear_error_naming_the_byte_offset(layout, demo, tmp_path):
    size = Path(demo.path).stat().st_size
    cut = make_archive(tmp_path / f"cut.{layout}", format=layout, seed=0, truncate_at=size * 2 // 3)
    with pytest.raises(PipelineError, match=r"truncated .*byte \d+"):
        build_dataset(cut.path, tmp_path / "ds", **PARAMS)


EXPECTED_REJECT = {  # demo bad kind -> reason in rejects.parquet
    "corrupt": "corrupt", "truncated": "truncated", "zero_byte": "empty", "non_image": "not_an_image",
    "bomb": "decompression_bomb", "path_traversal": "unsafe_member_name", "outer_junk": "not_a_class_container",
    "empty_class_tar": "empty_class",
}


def test_bad_members_are_rejected_with_reasons_and_nothing_escapes(tmp_path):
    archive = make_archive(tmp_path / "bad" / "demo.tar", format="tar", seed=1, bad="all")
    out = build_dataset(archive.path, tmp_path / "bad" / "ds", **PARAMS)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounting"]["balanced"]
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    by_member = {(r["member"]): r["reason"] for r in rejects}
    labels = {r["key"] for r in pq.read_table(out / "labels.parquet").to_pylist()}
    for bad in archive.bad_members:
        name = bad.member or bad.class_tar
        if bad.kind in EXPECTED_REJECT:
            assert by_member.get(name) == EXPECTED_REJECT[bad.kind], (bad, by_member.get(name))
        elif bad.kind in ("png_named_jpeg", "gif_named_jpeg"):  # decodable: converted, not rejected
            assert name.rsplit(".", 1)[0] in labels, bad
        elif bad.kind in ("non_image_name", "bad_name"):
            assert by_member.get(name) in ("bad_member_name", "not_an_image_name", "wnid_mismatch"), bad
    assert stats["dropped_classes"].get("not_in_wordnet", 0) == 1
    for kind in ("cmyk", "grayscale"):  # unusual but valid JPEGs are converted
        assert set(archive.special_images[kind]) <= labels | {k for w, ks in archive.classes.items()
                                                              if len(ks) < PARAMS["min_images"] for k in ks}
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "bad" not in p.relative_to(tmp_path).parts]
    assert outside == []


def test_a_member_stored_twice_is_kept_once_and_the_copy_rejected(tmp_path):
    wnid = "n01440764"
    img = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(img, "JPEG")
    archive = tmp_path / "tars"
    archive.mkdir()
    with tarfile.open(archive / f"{wnid}.tar", "w") as tf:
        for name in [f"{wnid}_{i}.JPEG" for i in range(1, 5)] + [f"{wnid}_2.JPEG"]:  # _2 stored twice
            ti = tarfile.TarInfo(name)
            ti.size = len(img.getvalue())
            tf.addfile(ti, io.BytesIO(img.getvalue()))
    out = build_dataset(archive, tmp_path / "ds", min_images=2, val_per_class=1, shard_tasks=1, convert_tasks=1)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounting"] == {"archive_entries": 5, "in_shards": 4, "rejected": 1, "in_dropped_classes": 0,
                                   "balanced": True}
    assert stats["rejects_by_reason"] == {"duplicate_key": 1}
    keys = sorted(r["key"] for r in pq.read_table(out / "labels.parquet").to_pylist())
    assert keys == [f"{wnid}_{i}" for i in range(1, 5)]


@pytest.mark.parametrize("layout", ["tar", "tar.gz", "tars-dir"])
def test_a_damaged_class_tar_loses_only_its_damaged_tail(layout, tmp_path):
    """A class tar whose last header claims bytes the file does not hold (a bad copy): the 40
    images before it are built as usual, the tail is one reject naming the byte offset."""
    from archive_fixtures import OTHER_WNID, WNID, class_members, lying_class_tar, outer_tar, tar_bytes

    damaged, offset = lying_class_tar(class_members(WNID, 40))
    class_tars = [(f"{WNID}.tar", damaged), (f"{OTHER_WNID}.tar", tar_bytes(class_members(OTHER_WNID, 12)))]
    if layout == "tars-dir":
        archive = tmp_path / "tars"
        archive.mkdir()
        for name, data in class_tars:
            (archive / name).write_bytes(data)
    else:
        archive = outer_tar(tmp_path / f"a.{layout}", class_tars, gz=layout == "tar.gz")
    out = build_dataset(archive, tmp_path / "ds", min_images=10, val_per_class=2, samples_per_shard=16)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounting"] == {"archive_entries": 40 + 1 + 12, "in_shards": 52, "rejected": 1,
                                   "in_dropped_classes": 0, "balanced": True}
    (tail,) = pq.read_table(out / "rejects.parquet").to_pylist()
    assert tail["reason"] == "damaged_class_tar" and tail["member"] == f"{WNID}.tar"
    assert re.search(r"byte \d+", tail["detail"]) and "40 member(s)" in tail["detail"]
    classes = {c["wnid"]: c for c in pq.read_table(out / "classes.parquet").to_pylist()}
    assert classes[WNID]["n_train"] + classes[WNID]["n_val"] == 40
