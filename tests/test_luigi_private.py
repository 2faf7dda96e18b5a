"""pipeline.luigi_private: every private Luigi name the package uses still exists in the Luigi installed."""
from __future__ import annotations

import luigi

from pipeline import luigi_private


def test_every_private_luigi_name_the_package_uses_is_still_there():
    missing = luigi_private.missing_names()
    assert not missing, (f"Luigi {luigi.__version__} moved {', '.join(missing)} (pipeline/luigi_private.py was "
                         f"checked against {luigi_private.CHECKED_AGAINST}): adapt that module")


def test_the_private_names_answer_what_the_package_asks():
    from luigi.parameter import ChoiceParameter

    assert luigi_private.parameter_choices(ChoiceParameter(choices=("first", "random"))) == {"first", "random"}
    assert luigi_private.parameter_choices(luigi.IntParameter()) is None
    assert all(isinstance(p, str) for p in luigi_private.config_paths())
