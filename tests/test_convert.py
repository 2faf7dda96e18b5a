"""pipeline.convert: classes kept or dropped where they are read, validation split, damage kept local."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

import pipeline.convert as convert
from archive_fixtures import OTHER_WNID, WNID, class_members, jpeg, lying_class_tar, outer_tar, tar_bytes
from pipeline import near_duplicates as nd
from pipeline.archive import list_containers
from pipeline.convert import ConvertSettings, convert_folders, convert_tar_files, convert_tar_range
from pipeline.images import squish_resized_image
from pipeline.parts import train_order

SETTINGS = ConvertSettings(min_images=3, val_per_class=2, image_size=64)


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images handed to the image path."""
    seen = Counter()
    real = convert.convert_image

    def counting(data, size, quality):
        seen["images"] += 1
        return real(data, size, quality)
    monkeypatch.setattr(convert, "convert_image", counting)
    return seen


def convert_outer(tmp_path, class_tars, settings=SETTINGS, known=lambda w: True):
    path = outer_tar(tmp_path / "outer.tar", class_tars)
    return convert_tar_range(path, list_containers(path, "tar"), settings, known)


def samples(part, split=None):
    return [row for _, row, _ in part.samples if split in (None, row["split"])]


def test_small_and_unplaceable_classes_are_dropped_undecoded(tmp_path, decodes):
    part = convert_outer(tmp_path, [(f"{WNID}.tar", tar_bytes(class_members(WNID, 5))),
                                    (f"{OTHER_WNID}.tar", tar_bytes(class_members(OTHER_WNID, 2))),
                                    ("n99999999.tar", tar_bytes(class_members("n99999999", 6)))],
                         known=lambda w: w != "n99999999")
    rows = {c["wnid"]: c for c in part.classes}
    assert rows[WNID]["kept"] and rows[WNID]["n_images"] == 5
    assert rows[OTHER_WNID]["drop_reason"] == "too_few_images" and rows[OTHER_WNID]["n_images"] == 2
    assert rows["n99999999"]["drop_reason"] == "not_in_wordnet" and rows["n99999999"]["n_images"] == 6
    assert decodes["images"] == 5  # only the kept class's images were decoded
    assert {s["wnid"] for s in samples(part)} == {WNID}
    assert part.entries == 5 + 2 + 6


def test_validation_is_the_first_names_that_decoded_and_train_is_hash_ordered(tmp_path):
    members = class_members(WNID, 6)
    members[0] = (members[0][0], b"\xff\xd8\xff garbage")  # n01440764_1: first in name order, undecodable
    part = convert_outer(tmp_path, [(f"{WNID}.tar", tar_bytes(members))])
    val = sorted(s["member"] for s in samples(part, "validation"))
    names = sorted(n for n, _ in members)
    assert val == names[1:3]  # val_per_class=2 of those that decoded, in sorted name order
    assert [r["reason"] for r in part.rejects] == ["not_an_image"]
    for s in samples(part, "train"):
        assert s["order"] == train_order(SETTINGS.seed, s["key"])


@pytest.mark.parametrize("rule", ["first", "first_en_us", "random"])
def test_validation_samples_carry_the_variants_of_their_pixels(tmp_path, rule):
    members = class_members(WNID, 8)[::-1]  # the smallest names come last: kept pixels are replaced
    part = convert_outer(tmp_path, [(f"{WNID}.tar", tar_bytes(members))],
                         replace(SETTINGS, val_rule=rule, val_per_class=3))
    data = dict(members)
    assert sum(row["split"] == "validation" for _, row, _ in part.samples) == 3
    for _, row, jpg in part.samples:
        if row["split"] == "train":
            assert row["variants"] is None
        elif rule == "random":  # its positions are known only at the class's end: from the JPEG
            assert row["variants"] == nd.jpeg_eval_fingerprints(jpg)
        else:  # the pixels the convert decoded, kept while the member was among the first 3
            assert row["variants"] == nd.eval_fingerprints(squish_resized_image(data[row["member"]], 64)).tolist()


def test_random_rule_is_seeded_per_class(tmp_path):
    tars = [(f"{WNID}.tar", tar_bytes(class_members(WNID, 8)))]
    picks = []
    for run, seed in enumerate((0, 0, 1)):
        settings = ConvertSettings(min_images=3, val_per_class=3, image_size=64, val_rule="random", seed=seed)
        (tmp_path / str(run)).mkdir()
        part = convert_outer(tmp_path / str(run), tars, settings)
        picks.append(sorted(s["member"] for s in samples(part, "validation")))
    assert picks[0] == picks[1] and len(picks[0]) == 3 and picks[0] != picks[2]


def test_bad_names_duplicates_and_empty_containers_are_rejects(tmp_path):
    members = class_members(WNID, 3) + [(f"{WNID}_2.JPEG", jpeg(2)), ("../evil.JPEG", jpeg(0)),
                                         (f"{WNID}_4.txt", b"x"), (f"{OTHER_WNID}_1.JPEG", jpeg(1))]
    part = convert_outer(tmp_path, [(f"{WNID}.tar", tar_bytes(members)), (f"{OTHER_WNID}.tar", tar_bytes([])),
                                    ("README.txt", b"hello")])
    reasons = sorted(r["reason"] for r in part.rejects)
    assert reasons == ["duplicate_key", "empty_class", "not_a_class_container", "not_an_image_name",
                       "unsafe_member_name", "wnid_mismatch"]
    assert part.entries == len(members) + 1 + 1  # every member, the empty class tar, README.txt
    assert len(samples(part)) == 3


def test_a_damaged_class_tar_keeps_the_images_before_the_damage(tmp_path):
    good = class_members(WNID, 40)
    damaged, offset = lying_class_tar(good)
    part = convert_outer(tmp_path, [(f"{WNID}.tar", damaged), (f"{OTHER_WNID}.tar", tar_bytes(class_members(OTHER_WNID, 4)))])
    assert Counter(s["wnid"] for s in samples(part)) == {WNID: 40, OTHER_WNID: 4}
    (tail,) = [r for r in part.rejects if r["wnid"] == WNID]
    assert tail["reason"] == "damaged_class_tar" and tail["member"] == f"{WNID}.tar"
    class_tar_start = 512  # the outer header before it: offsets are the archive's own
    assert f"byte {class_tar_start + offset}" in tail["detail"] and "40 member(s)" in tail["detail"]
    assert part.entries == 40 + 1 + 4


def test_class_tar_files_and_folders_give_the_same_samples(tmp_path):
    tars = tmp_path / "tars"
    folders = tmp_path / "folders"
    tars.mkdir()
    for wnid in (WNID, OTHER_WNID):
        (tars / f"{wnid}.tar").write_bytes(tar_bytes(class_members(wnid, 4)))
        (folders / wnid).mkdir(parents=True)
        for name, data in class_members(wnid, 4):
            (folders / wnid / name).write_bytes(data)
    (folders / WNID / "sub").mkdir()  # a directory inside a class folder: not a file
    by_tars = convert_tar_files(tars, list_containers(tars, "tars-dir"), SETTINGS, lambda w: True)
    by_folders = convert_folders(folders, list_containers(folders, "folders-dir"), SETTINGS, lambda w: True)
    rows = lambda part: sorted((r["key"], r["split"], jpg) for _, r, jpg in part.samples)  # noqa: E731
    assert rows(by_tars) == rows(by_folders) and len(rows(by_tars)) == 8
    assert [r["reason"] for r in by_folders.rejects] == ["not_a_file"]


def test_a_truncated_class_tar_file_keeps_what_precedes(tmp_path):
    tars = tmp_path / "tars"
    tars.mkdir()
    data = tar_bytes(class_members(WNID, 6))
    (tars / f"{WNID}.tar").write_bytes(data[: len(data.rstrip(b"\0")) - 2000])  # cut inside the 6th image
    part = convert_tar_files(tars, list_containers(tars, "tars-dir"), SETTINGS, lambda w: True)
    assert len(samples(part)) == 5
    assert [r["reason"] for r in part.rejects] == ["damaged_class_tar"]
