"""pipeline.preflight: parameter values and combinations refused with the reason."""
from __future__ import annotations

import json

from pipeline.preflight import parameter_problems
from pipeline.tasks import BuildImageNet21KP


def test_parameter_checks():
    defaults = {name: p.task_value("BuildImageNet21KP", name) for name, p in BuildImageNet21KP.get_params()
                if name not in ("archive", "output_dir")}
    assert parameter_problems(defaults) == []
    assert parameter_problems(dict(defaults, min_images=50)) == [
        "--min-images 50 with --val-per-class 50: a class with 50 images would give all of them to validation "
        "and none to training; --min-images must be larger than --val-per-class (the paper: --min-images 501 "
        "--val-per-class 50)"]
    assert parameter_problems(dict(defaults, jpeg_quality=0, image_size=5)) == [
        "--image-size 5: must be from 8 to 4096", "--jpeg-quality 0: must be from 1 to 100"]
    assert parameter_problems(dict(defaults, is_a_path="/x/is_a.txt")) == ["--is-a-path /x/is_a.txt: no such file"]
    assert parameter_problems(dict(defaults, tree_source="wordnet", is_a_path="/x/is_a.txt")) == [
        "--is-a-path is read only with --tree-source is_a (now wordnet); give both, or neither",
        "--is-a-path /x/is_a.txt: no such file"]


def test_a_release_claim_of_an_earlier_version_still_matches(tmp_path):
    from pipeline.preflight import PARAMS_FILE, claim_matches

    earlier = {"archive": "/a", "image_size": 224, "min_images": 501, "val_per_class": 50, "val_rule": "first"}
    (tmp_path / PARAMS_FILE).write_text(json.dumps(earlier))
    now = {"archive": "/a", "image_size": 224, "not_applicable": ["min_images", "val_per_class", "val_rule"]}
    assert claim_matches(tmp_path, now)
    assert not claim_matches(tmp_path, dict(now, image_size=256))  # (no outputs: the dir may be reused)


def test_a_damaged_claim_is_one_line_naming_the_repair(tmp_path):
    import pytest

    from pipeline.errors import OutputDirError
    from pipeline.preflight import PARAMS_FILE, claim_matches

    (tmp_path / PARAMS_FILE).write_bytes(b'{"archive": "/a", \xff')
    with pytest.raises(OutputDirError, match="is damaged .* --remove-damaged"):
        claim_matches(tmp_path, {"archive": "/a"})
