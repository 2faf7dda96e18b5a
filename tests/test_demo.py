"""The synthetic ImageNet-21K-shaped archive: layout, classes, tree, images, bad members, CLI."""
from __future__ import annotations

import colorsys
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools import demo_archive as demo
from tools.demo_archive import (
    BAD_KINDS,
    CLASS_TABLE,
    EMPTY_CLASS_WNID,
    TAR_MTIME,
    TAR_OWNER,
    TAR_UID,
    UNKNOWN_WNID,
    make_archive,
    manifest_path,
)
from tools.demo_images import ROOT_HUES, assign_looks

ROOT = Path(__file__).resolve().parents[1]
STEM_RE = re.compile(r"^(n\d{8})_(\d+)$")
SMALL = 8  # classes in the small archives: 3 roots, levels 0-2, one dropped class
SMALL_ARGS = dict(num_classes=SMALL, seed=3, bad="all", large_images=0)


def read_entries(path: Path, format: str) -> dict[str | None, dict[str, bytes] | bytes]:
    """Everything in an archive: container name -> {member name: bytes}, or top-level file bytes."""
    entries: dict = {}
    if format in ("tar", "tar.gz"):
        with tarfile.open(path, "r:gz" if format == "tar.gz" else "r:") as outer:
            for info in outer:
                data = outer.extractfile(info).read()
                if info.name.endswith(".tar"):
                    with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                        entries[info.name] = {m.name: inner.extractfile(m).read() for m in inner}
                else:
                    entries[info.name] = data
    elif format == "tars-dir":
        for p in sorted(path.iterdir()):
            if p.suffix == ".tar":
                with tarfile.open(p) as inner:
                    entries[p.name] = {m.name: inner.extractfile(m).read() for m in inner}
            else:
                entries[p.name] = p.read_bytes()
    else:
        for p in sorted(path.iterdir()):
            entries[p.name] = {f.name: f.read_bytes() for f in p.iterdir()} if p.is_dir() else p.read_bytes()
    return entries


def good_images(archive) -> dict[str, bytes]:
    """stem -> JPEG bytes of every good image, whatever the format."""
    suffix = "" if archive.format == "folders-dir" else ".tar"
    entries = read_entries(archive.path, archive.format)
    return {
        stem: entries[wnid + suffix][stem + ".JPEG"]
        for wnid, stems in archive.classes.items() for stem in stems
    }


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def level_of(wnid: str) -> int:
    parents = {row.wnid: row.parent for row in CLASS_TABLE}
    level = 0
    while parents[wnid] is not None:
        wnid, level = parents[wnid], level + 1
    return level


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The default demo archive with every bad kind, as the fall11-style tar."""
    return make_archive(tmp_path_factory.mktemp("full") / "demo.tar", bad="all")


@pytest.fixture(scope="module")
def full_images(full) -> dict[str, bytes]:
    return good_images(full)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small archive (first 8 classes, every bad kind the format holds) in each format."""
    out = tmp_path_factory.mktemp("small")
    return {fmt: make_archive(out / f"demo.{fmt}", format=fmt, **SMALL_ARGS) for fmt in demo.FORMATS}


def test_class_table_is_a_closed_deep_tree_whose_prefixes_are_trees():
    wnids = [row.wnid for row in CLASS_TABLE]
    assert len(set(wnids)) == len(wnids)
    for i, row in enumerate(CLASS_TABLE):
        assert row.parent is None or row.parent in wnids[:i]  # parents first: every prefix is closed
        if not row.kept:
            assert all(other.parent != row.wnid for other in CLASS_TABLE)  # dropped classes are leaves
    kept = [row.wnid for row in CLASS_TABLE if row.kept]
    levels = defaultdict(list)
    for wnid in kept:
        levels[level_of(wnid)].append(wnid)
    assert len(kept) == 16 and len(CLASS_TABLE) - len(kept) == 5
    assert len(levels[0]) >= 3 and max(levels) >= 3
    assert all(len(levels[k]) >= 2 for k in range(4)), dict(levels)
    assert CLASS_TABLE[0].kept and {level_of(w) for w in wnids[:SMALL]} == {0, 1, 2}


def test_wnids_are_real_official_classes_and_the_tree_matches_wordnet_and_is_a(shared_dir, timm_info_dir):
    from hierarchy.wordnet import is_known_wnid, lemma_name, synset_of, wnid_of

    official = set((timm_info_dir / "imagenet21k_miil_synsets.txt").read_text().split())
    is_a: dict[str, list[str]] = defaultdict(list)
    for line in (shared_dir / "reference" / "is_a.txt").read_text().splitlines():
        parent, child = line.split()
        is_a[child].append(parent)  # ImageNet's order: the released tree uses the last one

    def dag_ancestors(wnid):
        seen, stack = set(), [wnid]
        while stack:
            for parent in is_a.get(stack.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    chosen = {row.wnid for row in CLASS_TABLE}
    parents = {row.wnid: row.parent for row in CLASS_TABLE}
    for row in CLASS_TABLE:
        assert row.wnid in official and is_known_wnid(row.wnid)
        assert lemma_name(row.wnid) == row.name
        chain, p = [], row.parent
        while p is not None:
            chain.append(p)
            p = parents[p]
        synset = synset_of(row.wnid)
        hypernyms = {wnid_of(s) for s in synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())}
        assert hypernyms & chosen == set(chain), row.name
        assert dag_ancestors(row.wnid) & chosen == set(chain), row.name
        last_parent_chain, w = [], row.wnid
        while is_a.get(w):
            w = is_a[w][-1]
            if w in chosen:
                last_parent_chain.append(w)
        assert last_parent_chain == chain, row.name
    assert EMPTY_CLASS_WNID in official and EMPTY_CLASS_WNID not in chosen
    assert UNKNOWN_WNID not in official and not is_known_wnid(UNKNOWN_WNID)


def test_every_class_looks_different_even_in_grayscale():
    looks = assign_looks({row.wnid: row.parent for row in CLASS_TABLE})
    colour = {(l.hue, l.shape, l.stripe_angle, l.hatch, l.dot) for l in looks.values()}
    gray = {(l.shape, l.stripe_angle, l.hatch and l.hatch[1], l.dot is not None) for l in looks.values()}
    assert len(colour) == len(gray) == len(CLASS_TABLE)
    for row in CLASS_TABLE:  # root hue everywhere below a root; silhouette from level 1 down
        if row.parent is not None:
            assert looks[row.wnid].hue == looks[row.parent].hue
            if level_of(row.wnid) >= 2:
                assert looks[row.wnid].shape == looks[row.parent].shape


def test_full_archive_layout_names_and_counts(full):
    entries = read_entries(full.path, "tar")
    with tarfile.open(full.path) as outer:
        names = outer.getnames()
        assert names == sorted(names)
        for info in outer:
            owner = (info.uid, info.gid, info.uname, info.gname)
            assert info.mtime == TAR_MTIME and owner == (TAR_UID, TAR_UID, TAR_OWNER, TAR_OWNER)
    assert full.path.read_bytes()[257:265] == b"ustar  \x00"  # GNU tar headers
    assert full.wnids == sorted(row.wnid for row in CLASS_TABLE)
    for wnid in full.wnids:
        members = entries[f"{wnid}.tar"]
        good = sorted(name[:-5] for name in members if name[:-5] in full.classes[wnid])
        assert good == full.classes[wnid] and len(good) == full.class_sizes[wnid]
        numbers = [int(STEM_RE.match(stem).group(2)) for stem in good]
        assert all(STEM_RE.match(stem).group(1) == wnid for stem in good)
        assert sorted(numbers) != [int(STEM_RE.match(s).group(2)) for s in sorted(good)]  # _10 before _2
        assert list(members) != sorted(members)  # members in a fixed shuffled order, like ImageNet
        kept = next(row.kept for row in CLASS_TABLE if row.wnid == wnid)
        assert (36 <= len(good) <= 60) if kept else (8 <= len(good) <= 30)
    assert 800 <= sum(full.class_sizes.values()) <= 1000
    bad_by_container = defaultdict(set)
    for record in full.bad_members:
        bad_by_container[record.class_tar].add(record.member)
    for name, content in entries.items():
        if isinstance(content, dict):
            wnid = name[:-4]
            expected = {f"{s}.JPEG" for s in full.classes.get(wnid, [])} | bad_by_container[name] - {None}
            if wnid == UNKNOWN_WNID:
                expected = set(content)
            assert set(content) == expected, name
    extras = {f"{UNKNOWN_WNID}.tar", f"{EMPTY_CLASS_WNID}.tar", "README.txt"}
    assert set(entries) == {f"{w}.tar" for w in full.wnids} | extras


def test_bad_members_are_really_bad(full):
    entries = read_entries(full.path, "tar")
    assert {r.kind for r in full.bad_members} == set(BAD_KINDS)
    kept = {row.wnid for row in CLASS_TABLE if row.kept}
    for record in full.bad_members:
        if record.kind == "outer_junk":
            assert record.class_tar is None and entries[record.member].startswith(b"Synthetic")
            continue
        content = entries[record.class_tar]
        if record.kind == "empty_class_tar":
            assert content == {} and record.class_tar == f"{EMPTY_CLASS_WNID}.tar"
            continue
        if record.kind == "unknown_wnid":
            assert record.class_tar == f"{UNKNOWN_WNID}.tar" and len(content) == demo.UNKNOWN_CLASS_IMAGES
            assert all(decoded(data).format == "JPEG" for data in content.values())
            continue
        assert record.class_tar[:-4] in kept
        data = content[record.member]
        if record.kind in ("corrupt", "truncated", "zero_byte", "non_image", "bomb"):
            assert record.stage == "decode"
            with pytest.raises((OSError, Image.DecompressionBombError)):
                decoded(data)
        if record.kind == "corrupt":
            assert data[:2] == b"\xff\xd8" and Image.open(io.BytesIO(data)).size[0] > 0  # headers parse
        elif record.kind == "zero_byte":
            assert data == b""
        elif record.kind == "bomb":
            assert len(data) < 5000
            with pytest.raises(Image.DecompressionBombError):
                Image.open(io.BytesIO(data))
        elif record.kind == "png_named_jpeg":
            image = decoded(data)
            assert record.member.endswith(".JPEG") and image.format == "PNG" and image.mode == "RGBA"
        elif record.kind == "gif_named_jpeg":
            assert record.member.endswith(".JPEG") and decoded(data).format == "GIF"
        elif record.kind == "non_image_name":
            assert not record.member.endswith(".JPEG")
        elif record.kind == "path_traversal":
            assert record.member.startswith(("../", "/")) and decoded(data).format == "JPEG"
        elif record.kind == "bad_name":
            stem = record.member[:-5]
            match = STEM_RE.match(stem)
            assert match is None or match.group(1) != record.class_tar[:-4]
    names = {r.member for r in full.bad_members if r.kind == "path_traversal"}
    assert any(n.startswith("../") for n in names) and any(n.startswith("/abs/") for n in names)


def test_modes_and_sizes_vary(full, full_images):
    headers = {stem: Image.open(io.BytesIO(data)) for stem, data in full_images.items()}
    assert all(image.format == "JPEG" for image in headers.values())
    modes = {stem: image.mode for stem, image in headers.items()}
    assert sorted(s for s, m in modes.items() if m == "L") == full.special_images["grayscale"]
    assert sorted(s for s, m in modes.items() if m == "CMYK") == full.special_images["cmyk"]
    assert len(full.special_images["grayscale"]) >= 3 and len(full.special_images["cmyk"]) >= 3
    assert sum(m == "RGB" for m in modes.values()) > 0.95 * len(modes)
    kept = {row.wnid for row in CLASS_TABLE if row.kept}
    special = [s for stems in full.special_images.values() for s in stems]
    assert all(s.split("_")[0] in kept for s in special)
    sizes = {stem: image.size for stem, image in headers.items()}
    large = sorted(s for s, size in sizes.items() if max(size) > 1500)
    assert large == full.special_images["large"] and len(large) == 3
    others = [size for s, size in sizes.items() if s not in large]
    assert all(160 <= side <= 640 for size in others for side in size)
    assert sum(min(size) < 224 for size in others) >= 20
    assert len({round(w / h, 1) for w, h in others}) >= 10
    assert sum(w > h for w, h in others) >= 50 and sum(w < h for w, h in others) >= 50


def test_class_signal_root_colour_in_every_colour_image(full, full_images):
    """The background border of every RGB image is in its root's hue family."""
    roots = [row.wnid for row in CLASS_TABLE if row.parent is None]
    looks = assign_looks({row.wnid: row.parent for row in CLASS_TABLE})
    parents = {row.wnid: row.parent for row in CLASS_TABLE}
    means = defaultdict(list)
    misses = 0
    for stem, data in full_images.items():
        image = Image.open(io.BytesIO(data))
        if image.mode != "RGB":
            continue
        image.draft("RGB", (112, 112))  # decode at 1/2..1/8 scale: the signal must survive it
        root = stem.split("_")[0]
        while parents[root] is not None:
            root = parents[root]
        pixels = np.asarray(image.resize((224, 224)).resize((64, 64)), dtype=float)
        border = np.concatenate([pixels[:3].reshape(-1, 3), pixels[-3:].reshape(-1, 3)])
        hue = colorsys.rgb_to_hsv(*(border.mean(axis=0) / 255))[0]
        misses += min(abs(hue - looks[root].hue), 1 - abs(hue - looks[root].hue)) > 0.12
        means[root].append(pixels.reshape(-1, 3).mean(axis=0))
    assert misses <= 0.03 * len(full_images)
    centres = {root: np.mean(v, axis=0) for root, v in means.items()}
    for a in roots:
        for b in roots:
            if a < b:
                assert np.linalg.norm(centres[a] - centres[b]) > 40, (a, b, centres[a], centres[b])
    assert sorted(looks[r].hue for r in roots) == sorted(ROOT_HUES[: len(roots)])


def test_same_seed_gives_identical_bytes_and_gz_is_the_same_tar(small, tmp_path):
    gz = small["tar.gz"].path.read_bytes()
    assert gz[3] == 0 and gz[4:8] == b"\0\0\0\0"  # no file name, mtime 0
    assert gzip.decompress(gz) == small["tar"].path.read_bytes()  # two builds, the same tar
    again = make_archive(tmp_path / "again.tar.gz", format="tar.gz", **SMALL_ARGS)
    assert again.path.read_bytes() == gz
    reference = small["tar.gz"]
    assert again.to_json().replace(str(again.path), "") == reference.to_json().replace(str(reference.path), "")
    other = make_archive(tmp_path / "other.tar", num_classes=1, seed=4)
    first = CLASS_TABLE[0].wnid
    assert other.classes[first] != small["tar"].classes[first]


def test_every_format_holds_the_same_images(small):
    reference = good_images(small["tar"])
    assert len(reference) == sum(small["tar"].class_sizes.values())
    for fmt in ("tar.gz", "tars-dir", "folders-dir"):
        assert small[fmt].classes == small["tar"].classes
        assert good_images(small[fmt]) == reference, fmt
    for fmt, archive in small.items():
        entries = read_entries(archive.path, fmt)
        for record in archive.bad_members:
            if record.class_tar is None:
                assert record.member in entries, (fmt, record)
            elif record.member is not None:
                assert record.member in entries[record.class_tar], (fmt, record)
    folders = read_entries(small["folders-dir"].path, "folders-dir")
    tars = read_entries(small["tars-dir"].path, "tars-dir")
    assert {n for n in folders if n != "README.txt"} == {n[:-4] for n in tars if n != "README.txt"}
    assert folders[EMPTY_CLASS_WNID] == {}
    assert "path_traversal" not in {r.kind for r in small["folders-dir"].bad_members}
    assert {r.kind for r in small["tars-dir"].bad_members} == set(BAD_KINDS)


def test_prefix_of_the_table_keeps_images(small, full):
    images = good_images(small["tar"])
    assert small["tar"].wnids == sorted(row.wnid for row in CLASS_TABLE[:SMALL])
    assert set(small["tar"].parents) == set(small["tar"].wnids)
    assert all(p is None or p in small["tar"].wnids for p in small["tar"].parents.values())
    assert len(images) > 200


def test_truncate_at_cuts_the_outer_archive(tmp_path):
    archive = make_archive(tmp_path / "cut.tar.gz", format="tar.gz", num_classes=2, truncate_at=10_000)
    assert archive.path.stat().st_size == 10_000 and archive.truncated_at == 10_000
    assert json.loads(archive.to_json())["truncated_at"] == 10_000
    with pytest.raises(ValueError, match="truncate_at"):
        make_archive(tmp_path / "cut", format="tars-dir", num_classes=2, truncate_at=10_000)
    with pytest.raises(ValueError, match="not below"):
        make_archive(tmp_path / "cut2.tar", num_classes=1, truncate_at=10**9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz"]  # no temp files left


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown bad kind 'corupt'"):
        make_archive(tmp_path / "a.tar", bad=["corupt"])
    with pytest.raises(ValueError, match="cannot hold bad kind 'path_traversal'"):
        make_archive(tmp_path / "a", format="folders-dir", bad=["path_traversal"])
    with pytest.raises(ValueError, match="unknown format"):
        make_archive(tmp_path / "a.zip", format="zip")
    with pytest.raises(ValueError, match="num_classes must be 1..21"):
        make_archive(tmp_path / "a.tar", num_classes=0)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo archive"):
        make_archive(tmp_path / "precious", format="tars-dir", num_classes=1)
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "keep me"
    first = make_archive(tmp_path / "dir", format="folders-dir", num_classes=1)
    again = make_archive(tmp_path / "dir", format="folders-dir", num_classes=1, seed=1)  # replaces a demo dir
    assert sorted(p.name for p in again.path.iterdir()) == [CLASS_TABLE[0].wnid]
    assert first.classes != again.classes


def test_cli_writes_the_archive_and_its_manifest(tmp_path):
    out = tmp_path / "cli" / "demo.tar.gz"
    cmd = [sys.executable, "-m", "tools.demo_archive", "make-archive", str(out), "--format", "tar.gz",
           "--classes", "3", "--seed", "5", "--bad", "zero_byte,outer_junk", "--large-images", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    manifest = json.loads(manifest_path(out).read_text())
    api = make_archive(tmp_path / "api.tar.gz", format="tar.gz", num_classes=3, seed=5,
                       bad=["zero_byte", "outer_junk"], large_images=1)
    assert api.path.read_bytes() == out.read_bytes()  # deterministic across processes
    assert manifest == dict(json.loads(api.to_json()), path=str(out))
    assert [b["kind"] for b in manifest["bad_members"]] == ["zero_byte", "outer_junk"]
    failed = subprocess.run(cmd[:5] + ["--bad", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 2 and "unknown bad kind 'nope'" in failed.stderr
    assert "Traceback" not in failed.stderr
