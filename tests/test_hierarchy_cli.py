"""`python -m hierarchy` as a real process: build, show, --plot, flag names and their former
aliases, Parquet class lists, errors (one line naming flag and file; exit 2 bad input, 5 no
WordNet); no torch import."""
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


def hierarchy_cli(*args: str, hash_seed: str = "0", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hierarchy", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONHASHSEED=hash_seed, **env))


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, *named: object) -> str:
    """The command failed with ``code`` and one ``error:`` line naming each of ``named``."""
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for name in map(str, named):
        assert name in result.stderr, (name, result.stderr)
    return result.stderr


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
    assert result.returncode == 2
    assert result.stderr.startswith("error: 1 class id(s) are not WordNet 3.0 nouns: n99999999")
    assert "Traceback" not in result.stderr and not (tmp_path / "t.json").exists()

    result = hierarchy_cli("build", "--classes", classes_file, "--out", tmp_path / "t.json",
                           "--source", "is_a")
    assert (result.returncode, result.stderr) == (2, "error: --tree-source is_a needs --is-a-path "
                                                     "(ImageNet's wordnet.is_a.txt)\n")
    result = hierarchy_cli("show", tmp_path / "missing.json")
    assert result.returncode == 2 and "No such file" in result.stderr and "Traceback" not in result.stderr


def test_hierarchy_never_imports_torch():
    code = ("import sys, hierarchy, hierarchy.tree, hierarchy.isa, hierarchy.names, hierarchy.plot, "
            "hierarchy.__main__; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0


def test_new_flag_names_and_former_aliases_build_the_same_tree(classes_file, tmp_path, shared_dir):
    reference = shared_dir / "reference"
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    built = hierarchy_cli("build", "--classes", classes_file, "--out", new, "--tree-source", "is_a",
                          "--is-a-path", reference / "is_a.txt", "--words-path", reference / "words.txt")
    assert built.returncode == 0, built.stderr
    built = hierarchy_cli("build", "--classes", classes_file, "--out", old, "--source=is_a",
                          f"--is-a={reference / 'is_a.txt'}", f"--words={reference / 'words.txt'}")
    assert built.returncode == 0, built.stderr
    assert new.read_bytes() == old.read_bytes() and json.loads(new.read_text())["source"] == "is_a"

    shown = hierarchy_cli("build", "--help").stdout
    assert all(f in shown for f in ("--tree-source", "--is-a-path", "--words-path"))
    assert not any(f"{f} " in shown for f in ("--source", "--is-a", "--words"))  # aliases hidden
    # errors name the new flags, whichever name was typed
    assert_one_error_line(hierarchy_cli("build", "--classes", classes_file, "--out", tmp_path / "t.json",
                                        "--source", "bogus"), 2, "--tree-source", "bogus")
    message = assert_one_error_line(hierarchy_cli("build", "--classes", classes_file, "--out",
                                                  tmp_path / "t.json", "--is-a", reference / "is_a.txt"),
                                    2, "--is-a-path", "--tree-source is_a")
    assert "--is-a " not in message and "--source" not in message


def test_parquet_class_list_with_a_wnid_column(classes_file, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    wnids = [line for line in CLASSES.splitlines() if not line.startswith("#")]
    table = tmp_path / "classes.parquet"  # the pipeline's columns
    pq.write_table(pa.table({"class_index": list(range(len(wnids))), "wnid": wnids,
                             "name": ["x"] * len(wnids)}), table)
    from_text, from_table = tmp_path / "text.json", tmp_path / "table.json"
    assert hierarchy_cli("build", "--classes", classes_file, "--out", from_text).returncode == 0
    built = hierarchy_cli("build", "--classes", table, "--out", from_table)
    assert built.returncode == 0, built.stderr
    assert from_table.read_bytes() == from_text.read_bytes()

    no_column, repeated = tmp_path / "counts.parquet", tmp_path / "labels.parquet"
    pq.write_table(pa.table({"key": ["a"], "class_index": [0]}), no_column)
    pq.write_table(pa.table({"wnid": ["n02084071", "n01503061", "n02084071"]}), repeated)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(table.read_bytes()[:40])
    out = tmp_path / "t.json"
    assert_one_error_line(hierarchy_cli("build", "--classes", no_column, "--out", out), 2,
                          f"--classes {no_column}: a Parquet table without a wnid column (columns: key, class_index")
    assert_one_error_line(hierarchy_cli("build", "--classes", repeated, "--out", out), 2,
                          f"--classes {repeated} row 3: n02084071 repeats row 1")
    assert_one_error_line(hierarchy_cli("build", "--classes", cut, "--out", out), 2,
                          f"--classes {cut}: not a readable Parquet table")
    assert not out.exists()


BAD_CLASS_LISTS = {  # file name: (content, what the error line says after "--classes PATH")
    "archive.tar.gz": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)), ": not a text file ("),
    "latin1.txt": ("n02084071\nn01503061 Dohle \xe4\n".encode("latin-1"), ": not a text file (bad UTF-8"),
    "empty.txt": (b"# only a comment\n\n   \n", ": no wnids (expected a text file of wnids, one per line"),
    "names.txt": (b"n02084071\ndog\n", ":2: expected a wnid (n + 8 digits, e.g. n01440764), got 'dog'"),
    "twice.txt": (b"n02084071\n# again\nn02084071 dog\n", ":3: n02084071 repeats line 1 (expected each class once)"),
}


@pytest.mark.parametrize("name", sorted(BAD_CLASS_LISTS))
def test_bad_class_list_is_one_line_naming_flag_and_file(name, tmp_path):
    content, says = BAD_CLASS_LISTS[name]
    classes, out = tmp_path / name, tmp_path / "new" / "t.json"
    classes.write_bytes(content)
    assert_one_error_line(hierarchy_cli("build", "--classes", classes, "--out", out), 2, f"--classes {classes}{says}")
    assert not out.parent.exists()  # nothing written, no folder created


def test_missing_or_malformed_input_files(classes_file, tmp_path, shared_dir):
    reference, out, missing = shared_dir / "reference", tmp_path / "t.json", tmp_path / "missing.txt"
    is_a = ("--tree-source", "is_a", "--is-a-path")

    def build(*args):
        return hierarchy_cli("build", "--out", out, *args)

    assert_one_error_line(build("--classes", missing), 2, f"--classes {missing}: No such file (expected")
    assert_one_error_line(build("--classes", tmp_path), 2, f"--classes {tmp_path}: a folder, not a file")
    assert_one_error_line(build("--classes", classes_file, *is_a, missing), 2,
                          f"--is-a-path {missing}: No such file (expected ImageNet's wordnet.is_a.txt")
    assert_one_error_line(build("--classes", classes_file, "--words-path", missing), 2,
                          f"--words-path {missing}: No such file (expected ImageNet's words.txt")
    png = tmp_path / "words.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    assert_one_error_line(build("--classes", classes_file, "--words-path", png), 2,
                          f"--words-path {png}: not a text file")

    bad_is_a, bad_words, few_words = tmp_path / "is_a.txt", tmp_path / "words.txt", tmp_path / "few.txt"
    bad_is_a.write_text("n00015388 n01317541\nn01317541\n")
    bad_words.write_text("n02084071 dog\n")
    few_words.write_text("n02084071\tdog, domestic dog\n")
    assert_one_error_line(build("--classes", classes_file, *is_a, bad_is_a), 2,
                          f"--is-a-path {bad_is_a}:2: expected 'parent child', got 'n01317541'")
    assert_one_error_line(build("--classes", classes_file, "--words-path", bad_words), 2,
                          f"--words-path {bad_words}:1: expected 'wnid<TAB>lemmas'")
    assert_one_error_line(build("--classes", classes_file, "--words-path", few_words), 2,
                          f"--words-path {few_words}: no entry for 12 class id(s) of --classes {classes_file}")

    unknown = tmp_path / "unknown.txt"
    unknown.write_text("n02084071\nn99999999\nn01503061\nn99999998\n")
    assert_one_error_line(build("--classes", unknown, *is_a, reference / "is_a.txt"), 2,
                          f"2 class id(s) are neither in {reference / 'is_a.txt'} nor WordNet 3.0 nouns: "
                          f"n99999999, n99999998 (--classes {unknown} lines 2, 4;")
    assert not out.exists()


def test_out_into_a_missing_folder_is_created_and_said(classes_file, tmp_path):
    out = tmp_path / "trees" / "v1" / "tree.json"
    built = hierarchy_cli("build", "--classes", classes_file, "--out", out)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith(f"created folder {out.parent}\nwrote {out} in ")
    assert json.loads(out.read_text())["source"] == "wordnet"
    again = hierarchy_cli("build", "--classes", classes_file, "--out", out)
    assert again.returncode == 0 and "created folder" not in again.stdout

    assert_one_error_line(hierarchy_cli("build", "--classes", classes_file, "--out", out.parent), 2,
                          f"--out {out.parent}: a folder; expected the path of the tree JSON")
    assert_one_error_line(hierarchy_cli("build", "--classes", classes_file, "--out", classes_file / "t.json"),
                          2, f"--out {classes_file / 't.json'}: {classes_file} is a file, not a folder")


def test_show_errors_name_the_tree_file(classes_file, tmp_path):
    tree, png = tmp_path / "tree.json", tmp_path / "plots" / "levels.png"
    assert hierarchy_cli("build", "--classes", classes_file, "--out", tree).returncode == 0
    shown = hierarchy_cli("show", tree, "--plot", png)
    assert shown.returncode == 0, shown.stderr
    assert f"created folder {png.parent}\nwrote {png}\n" in shown.stdout and png.is_file()

    expected = "expected a tree JSON written by 'python -m hierarchy build'"
    not_json, wrong_shape, binary = tmp_path / "notes.json", tmp_path / "shape.json", tmp_path / "tree.png"
    not_json.write_text("levels: 12\n")
    wrong_shape.write_text(json.dumps({key: 1 for key in json.loads(tree.read_text())}))
    binary.write_bytes(png.read_bytes())
    assert_one_error_line(hierarchy_cli("show", tmp_path / "gone.json"), 2, tmp_path / "gone.json", expected)
    assert_one_error_line(hierarchy_cli("show", not_json), 2, f"{not_json} is not JSON", expected)
    assert_one_error_line(hierarchy_cli("show", wrong_shape), 2, f"{wrong_shape}: not a semantic tree file", expected)
    assert_one_error_line(hierarchy_cli("show", binary), 2, f"{binary}: not a text file", expected)
    assert_one_error_line(hierarchy_cli("show", tmp_path), 2, f"{tmp_path}: a folder, not a file")
    assert_one_error_line(hierarchy_cli("show", tree, "--plot", png.parent), 2,
                          f"--plot {png.parent}: a folder; expected the path of the PNG")


def test_wordnet_missing_keeps_its_message_and_exits_5(classes_file, tmp_path):
    result = hierarchy_cli("build", "--classes", classes_file, "--out", tmp_path / "t.json",
                           IMAGENET21KP_NLTK_DATA=str(tmp_path))
    assert_one_error_line(result, 5, "error: WordNet 3.0 for nltk was not found (looked in: "
                                     f"{tmp_path / 'corpora' / 'wordnet'}). Fix: run `make env`")
    assert not (tmp_path / "t.json").exists()
