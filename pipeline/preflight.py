"""Checks a build makes before any work: parameter values and combinations, the output dir's
claim, WordNet. Each problem is refused with the reason and the fix (:mod:`pipeline.errors`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from hierarchy.atomic import TEMP_MARK
from hierarchy.command_line import flag
from pipeline.errors import OutputDirError, ParameterError
from pipeline.output_lock import LOCK_FILE

PARAMS_FILE = "_params.json"
#: What a paper-faithful build uses, quoted in the messages.
PAPER = "the paper: --min-images 501 --val-per-class 50"


def parameter_problems(p: dict) -> list[str]:
    """What is wrong with a build's parameter values (``BuildImageNet21KP`` names), if anything."""
    problems = []
    for name, low, high in (("min_images", 1, None), ("val_per_class", 0, None), ("samples_per_shard", 1, None),
                            ("image_size", 8, 4096), ("jpeg_quality", 1, 100), ("convert_tasks", 0, None),
                            ("shard_tasks", 0, None), ("gzip_processes", 0, None), ("gzip_part_mb", 1, None),
                            ("near_dup_distance", 0, 31)):
        value = p[name]
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            problems.append(f"{flag(name)} {value}: must be {bounds}")
    if not problems and p["min_images"] <= p["val_per_class"]:
        problems.append(
            f"--min-images {p['min_images']} with --val-per-class {p['val_per_class']}: a class with "
            f"{p['min_images']} images would give all of them to validation and none to training; "
            f"--min-images must be larger than --val-per-class ({PAPER})")
    if p["tree_source"] == "is_a" and not p["is_a_path"]:
        problems.append("--tree-source is_a needs --is-a-path (ImageNet's wordnet.is_a.txt)")
    if p["tree_source"] == "wordnet" and p["is_a_path"]:
        problems.append(f"--is-a-path is read only with --tree-source is_a (now {p['tree_source']}); "
                        "give both, or neither")
    for name in ("is_a_path", "words_path"):
        if p[name] and not os.path.isfile(p[name]):
            problems.append(f"{flag(name)} {p[name]}: no such file")
    for source in (s.strip() for s in p["eval_sets"].split(",") if s.strip()):
        if not os.path.exists(source):
            problems.append(f"--eval-sets {source}: no such folder or file")
    return problems


def check_parameters(p: dict) -> None:
    """Raise :class:`ParameterError` listing every problem of :func:`parameter_problems`."""
    problems = parameter_problems(p)
    if problems:
        raise ParameterError("; ".join(problems))


def holds_outputs(output_dir) -> bool:
    """True when the dir holds anything a build writes besides its claim and its work dir."""
    out = Path(output_dir)
    for entry in out.iterdir():
        if entry.name in (PARAMS_FILE, "_work", LOCK_FILE) or TEMP_MARK in entry.name:
            continue
        if entry.is_file() or any(p.is_file() for p in entry.rglob("*")):
            return True
    return False


def claim_matches(output_dir, expected: dict, added_later: dict | None = None) -> bool:
    """Whether ``output_dir`` is claimed by a build with ``expected`` parameters.

    False when it is unclaimed, or claimed by a build that produced nothing (it may be reused);
    raises :class:`OutputDirError` when it holds outputs of a build with other parameters.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--output-dir {output_dir} is a file, not a folder")
    path = out / PARAMS_FILE
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())
    except ValueError:
        raise OutputDirError(f"{path} is damaged (not JSON): `python -m pipeline verify {output_dir} "
                             "--remove-damaged`, then rerun") from None
    expected = json.loads(json.dumps(expected))
    for name, default in (added_later or {}).items():  # a claim from before the parameter existed
        recorded.setdefault(name, default)
    for name in expected.get("not_applicable", []):  # recorded by earlier versions: ignored either way
        recorded.pop(name, None)
    if "not_applicable" in expected:
        recorded.setdefault("not_applicable", expected["not_applicable"])
    if recorded == expected:
        return True
    if not holds_outputs(out):
        return False
    changed = sorted(k for k in set(recorded) | set(expected) if recorded.get(k) != expected.get(k))
    raise OutputDirError(f"{output_dir} holds a build made with other parameters ({', '.join(changed)} "
                         "differ); use a new --output-dir, or delete the old one")


def check_wordnet() -> None:
    """Raise hierarchy's ``WordNetMissing`` (with the fix) when WordNet 3.0 is not installed:
    both tree sources place wnids with it."""
    from hierarchy.wordnet import wordnet_root

    wordnet_root()
