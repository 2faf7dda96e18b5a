"""Every private Luigi name the package uses, and nothing else (checked against Luigi 3.8.1).

Luigi has no public hook for three things the build needs, so this module reaches into its
internals, each in one function:

* ``luigi.interface._run`` — what ``luigi``'s command line calls to run once it has imported
  ``--module``; wrapped so the pipeline can check its parameters first and report its failures
  (:mod:`pipeline.luigi_command`);
* ``luigi.configuration.LuigiConfigParser._config_paths`` — the config files Luigi reads, in
  order; the package's defaults go first (:mod:`pipeline.luigi_config`);
* ``luigi.parameter.ChoiceParameter._choices`` — the allowed values, for a one-line error.

``tests/test_luigi_private.py`` fails with one line naming the name if an upgrade moves one
(:func:`missing_names`).
"""
from __future__ import annotations

CHECKED_AGAINST = "3.8.1"
NAMES = ("luigi.interface._run", "luigi.configuration.LuigiConfigParser._config_paths",
         "luigi.parameter.ChoiceParameter._choices")


def missing_names() -> list[str]:
    """The names of :data:`NAMES` the installed Luigi lacks (a ChoiceParameter's ``_choices`` is
    looked for on an instance)."""
    import luigi.interface
    from luigi.configuration import LuigiConfigParser
    from luigi.parameter import ChoiceParameter

    found = {
        NAMES[0]: callable(getattr(luigi.interface, "_run", None)),
        NAMES[1]: isinstance(getattr(LuigiConfigParser, "_config_paths", None), list),
        NAMES[2]: hasattr(ChoiceParameter(choices=("a", "b")), "_choices"),
    }
    return [name for name, ok in found.items() if not ok]


def wrap_command_run(wrapper, marker: str) -> bool:
    """Replace ``luigi.interface._run`` by ``wrapper(the original)``, once: False when it already
    is (``marker``: an attribute the wrapped function carries)."""
    import luigi.interface

    if getattr(luigi.interface._run, marker, False):
        return False
    wrapped = wrapper(luigi.interface._run)
    setattr(wrapped, marker, True)
    luigi.interface._run = wrapped
    return True


def command_run():
    """``luigi.interface._run`` as it is now (wrapped or not)."""
    import luigi.interface

    return luigi.interface._run


def config_paths() -> list[str]:
    """Luigi's list of config files, in reading order (later files win); edit it in place and
    call ``LuigiConfigParser.reload()``."""
    from luigi.configuration import LuigiConfigParser

    return LuigiConfigParser._config_paths


def parameter_choices(param):
    """The allowed values of a ChoiceParameter, as a collection (None for other parameters)."""
    return getattr(param, "_choices", None)
