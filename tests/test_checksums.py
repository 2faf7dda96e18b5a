"""pipeline.checksums: SHA256SUMS and _sizes.json of a real build, `python -m pipeline verify`, and
reruns that rewrite what was damaged, byte for byte."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildutil import ROOT, output_digest
from pipeline import build_dataset
from pipeline.checksums import DAMAGED_EXIT, manifest_text, read_manifest, verify, write_manifest
from tools.demo_archive import make_archive

PARAMS = dict(min_images=31, val_per_class=5, samples_per_shard=64, shard_tasks=2, convert_tasks=3)


def run_verify(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "verify", str(out), "--quiet", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def sha256sum_check(out: Path) -> subprocess.CompletedProcess:
    """The real coreutils tool, in the output dir."""
    return subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=out, capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive") / "demo.tar", format="tar", seed=0)


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory) -> dict[str, str]:
    return output_digest(build_dataset(demo.path, tmp_path_factory.mktemp("ref") / "ds", **PARAMS))


def fresh_build(demo, reference, tmp_path) -> Path:
    out = tmp_path / "ds"
    build_dataset(demo.path, out, **PARAMS)
    assert output_digest(out) == reference
    return out


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum not installed")
def test_the_manifest_is_what_sha256sum_checks_and_covers_every_output(demo, reference, tmp_path):
    out = fresh_build(demo, reference, tmp_path)
    check = sha256sum_check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    on_disk = {n for n in reference if n != "SHA256SUMS"}
    listed = [line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()]
    assert listed == sorted(on_disk) and len(on_disk) > 15
    assert all(reference[n] == h for n, h in (line.split("  ", 1)[::-1] for line in
                                              (out / "SHA256SUMS").read_text().splitlines()))
    sizes = json.loads((out / "_sizes.json").read_text())
    assert sizes["files"] == {n: (out / n).stat().st_size for n in on_disk - {"_sizes.json"}}
    assert sizes["total_bytes"] == sum(sizes["files"].values())
    # each shard's size and sha256 were recorded by its task as it wrote it
    entries = [e for p in sorted(out.glob("_work/**/group-*.json")) for e in json.loads(p.read_text())["shards"]]
    assert sorted(e["name"] for e in entries) == sorted(n for n in on_disk if n.endswith(".tar"))
    assert all(e["sha256"] == reference[e["name"]] and e["size"] == sizes["files"][e["name"]] for e in entries)
    ok = run_verify(out)
    total = sum((out / n).stat().st_size for n in on_disk)
    assert ok.returncode == 0 and ok.stdout.startswith(f"OK: {len(on_disk)} files, {total} bytes "), ok.stdout
    assert len(ok.stdout.splitlines()) == 1


def test_verify_names_the_damage_and_reruns_repair_it_byte_identical(demo, reference, tmp_path):
    out = fresh_build(demo, reference, tmp_path)
    shards = sorted(n for n in reference if n.endswith(".tar"))
    cut, flipped, deleted = shards[1], shards[4], shards[-1]  # a validation shard among them
    original = {n: (out / n).read_bytes() for n in (cut, flipped, deleted)}
    with open(out / cut, "r+b") as f:
        f.truncate(len(original[cut]) // 2)
    with open(out / flipped, "r+b") as f:
        f.seek(len(original[flipped]) // 2)
        f.write(bytes([original[flipped][len(original[flipped]) // 2] ^ 0xFF]))
    (out / deleted).unlink()

    damaged = run_verify(out)
    assert damaged.returncode == DAMAGED_EXIT, damaged.stdout + damaged.stderr
    assert sorted(damaged.stdout.splitlines()) == sorted([
        f"damaged: {cut} ({len(original[cut]) // 2} bytes, {len(original[cut])} recorded)",
        f"damaged: {flipped} (sha256 differs)", f"missing: {deleted}"])
    assert damaged.stderr.strip().splitlines()[-1].startswith("error: 3 of ")
    assert sha256sum_check(out).returncode != 0

    build_dataset(demo.path, out, **PARAMS)  # a size changed or a file missing: rewritten
    assert (out / cut).read_bytes() == original[cut] and (out / deleted).read_bytes() == original[deleted]
    again = run_verify(out)
    assert again.returncode == DAMAGED_EXIT and again.stdout.splitlines() == [f"damaged: {flipped} (sha256 differs)"]
    assert output_digest(out) == dict(reference, **{flipped: output_digest(out)[flipped]})

    removed = run_verify(out, "--remove-damaged")
    assert removed.returncode == DAMAGED_EXIT
    assert removed.stdout.splitlines() == [f"damaged: {flipped} (sha256 differs)", f"removed: {flipped}"]
    assert "rerun the build" in removed.stderr and not (out / flipped).exists()
    build_dataset(demo.path, out, **PARAMS)
    ok = run_verify(out)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: ") and len(ok.stdout.splitlines()) == 1, ok.stdout
    assert output_digest(out) == reference


def test_any_output_deleted_or_cut_short_is_rewritten(demo, reference, tmp_path):
    out = fresh_build(demo, reference, tmp_path)
    for name in ("_params.json", "_sizes.json", "semantic_tree.json"):
        (out / name).unlink()
    for name in ("labels.parquet", "README.md", "stats.json"):
        with open(out / name, "r+b") as f:
            f.truncate(10)
    assert run_verify(out).returncode == DAMAGED_EXIT
    build_dataset(demo.path, out, **PARAMS)
    assert output_digest(out) == reference
    (out / "SHA256SUMS").unlink()
    build_dataset(demo.path, out, **PARAMS)
    assert output_digest(out) == reference


def test_a_build_recorded_before_checksums_gets_its_manifest_by_hashing(demo, reference, tmp_path):
    """Shard summaries and an accounting without sizes and hashes (an older version's): a rerun
    writes the same manifest, hashing those shards, without writing any shard again."""
    out = fresh_build(demo, reference, tmp_path)
    for name in ("SHA256SUMS", "_sizes.json"):
        (out / name).unlink()
    for p in out.glob("_work/**/group-*.json"):
        summary = json.loads(p.read_text())
        for e in summary["shards"]:
            del e["size"], e["sha256"]
        p.write_text(json.dumps(summary))
    for p in out.glob("_work/**/accounting.json"):
        accounting = json.loads(p.read_text())
        del accounting["files"]
        p.write_text(json.dumps(accounting))
    no_manifest = run_verify(out)
    assert no_manifest.returncode == 2 and no_manifest.stdout == ""
    assert no_manifest.stderr.startswith("error: ") and "rerun the build" in no_manifest.stderr
    shard_mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/*.tar")}
    build_dataset(demo.path, out, **PARAMS)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.tar")} == shard_mtimes
    assert output_digest(out) == reference
    assert run_verify(out).returncode == 0


# ---- the module on its own ---------------------------------------------------------------------
def records(root: Path, files: dict[str, bytes]) -> dict[str, dict]:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()}


def test_manifest_format_is_sorted_and_deterministic(tmp_path):
    recs = records(tmp_path, {"b.json": b"{}", "train/x-1.tar": b"x" * 700, "a.parquet": b"PAR1"})
    write_manifest(tmp_path, recs)
    first = (tmp_path / "SHA256SUMS").read_bytes()
    write_manifest(tmp_path, dict(reversed(list(recs.items()))))
    assert (tmp_path / "SHA256SUMS").read_bytes() == first
    names = [line[66:] for line in first.decode().splitlines()]
    assert names == ["_sizes.json", "a.parquet", "b.json", "train/x-1.tar"]
    assert all(line[64:66] == "  " for line in first.decode().splitlines())
    with pytest.raises(ValueError):
        manifest_text({"a\nb": "0" * 64})
    report = verify(tmp_path, workers=2, progress=False)
    assert report.problems == [] and report.files == 4
    assert report.bytes == 2 + 700 + 4 + (tmp_path / "_sizes.json").stat().st_size


def test_an_unsafe_or_garbled_manifest_line_is_damage_not_a_path(tmp_path):
    recs = records(tmp_path, {"a.json": b"{}"})
    write_manifest(tmp_path, recs)
    text = (tmp_path / "SHA256SUMS").read_text()
    (tmp_path / "SHA256SUMS").write_text(text + "0" * 64 + "  ../outside\nnot a line\n")
    sums, problems = read_manifest(tmp_path)
    assert set(sums) == {"a.json", "_sizes.json"}
    assert [str(p) for p in problems] == ["damaged: SHA256SUMS (line 3 is not '<sha256>  <relative path>')",
                                          "damaged: SHA256SUMS (line 4 is not '<sha256>  <relative path>')"]


def test_damaged_sizes_file_is_not_trusted(tmp_path):
    recs = records(tmp_path, {"a.bin": b"a" * 100, "b.bin": b"b" * 50})
    write_manifest(tmp_path, recs)
    sizes = (tmp_path / "_sizes.json").read_text()
    (tmp_path / "_sizes.json").write_text(sizes.replace('"a.bin": 100', '"a.bin": 900'))
    report = verify(tmp_path, progress=False)
    assert [str(p) for p in report.problems] == ["damaged: _sizes.json (sha256 differs)"]


def test_verify_without_a_folder_or_manifest_exits_2(tmp_path):
    for target in (tmp_path / "nope", tmp_path):
        proc = run_verify(target)
        assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1
        assert proc.stderr.startswith("error: ")
    assert "SHA256SUMS" in proc.stderr and "rerun the build" in proc.stderr
